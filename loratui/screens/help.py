"""Context help on `?`: the keys of the current screen and the guide's troubleshooting."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

KEYS = {
    "checklist": "- **Enter** on an item: open the setting that fixes it\n",
    "setup": ("- **ctrl+f**: apply the fix shown under the focused setting\n- **ctrl+s**: save the config "
              "(the first save keeps the old file as `.bak`)\n- **ctrl+o**: open another config\n"
              "- **ctrl+t**: start training\n"
              "- **F5**: show every setting (advanced) or the proven ones only\n- **Tab / shift+Tab**: next "
              "and previous setting\n"),
    "dataset": ("- **ctrl+o**: pick the dataset folder · **ctrl+r**: scan it again\n"
                "- **1 / 2 / 3**: problems · images with their captions · tag table\n"
                "- **Enter** on a problem: open its image and caption · **Enter** on an image: edit its caption, "
                "**ctrl+s** saves it, **Esc** leaves the editor\n"
                "- **t**: trigger word first in every caption · **d** / **e**: remove / replace the highlighted tag "
                "everywhere · **m**: remove repeated tags · **o**: sort tags\n"
                "- **w**: auto-caption (WD14 or BLIP) · **k**: stop it\n"
                "- **u**: undo the last caption change (every change is backed up first)\n"),
    "train": ("- **s**: start training · **x**: stop (asks first; it saves) · **r**: resume a stopped run\n"
              "- **c**: save a checkpoint now · **g**: draw sample images now\n"
              "- **p / l / v**: loss plot · log · sample images · **a**: every run, to follow one\n"
              "- **ctrl+r**: read the config file again · **Esc**: leave the config-path field\n"),
}

TROUBLESHOOTING = """\
### Training is too slow
Use the AdamW8bit optimizer, turn on gradient checkpointing only if memory is short (it costs
about a third more time), and lower the resolution only as a last resort.

### The results look bad
Read your captions first: garbage in, garbage out. Then lower the learning rate and train
longer, and add variety to the dataset.

### Out of GPU memory
Batch size 1, gradient checkpointing on, AdamW8bit, and a lower resolution, in that order.

### Training finishes too fast
More epochs or repeats: aim for 500 steps or more. The setup screen shows the exact count.

### Red flags while training
- Loss not falling after about 100 steps: lower the learning rate.
- Loss swinging wildly: the batch or the learning rate is too high.
- A run that ends in minutes is probably too short.
"""


class HelpScreen(ModalScreen[None]):
    """Keys for the current screen, then the guide's troubleshooting."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close", id="close-help")]

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        """The screen the help was asked from."""

    def compose(self) -> ComposeResult:
        keys = KEYS.get(self.mode, "")
        common = ("- **F1** checklist · **F2** dataset · **F3** settings · **F4** train · **F6** inspect a LoRA file · "
                  "**ctrl+p** command palette · "
                  "**ctrl+q** quit\n")
        with VerticalScroll(id="help"):
            yield Markdown(f"## Keys\n{keys}{common}\n## Troubleshooting\n{TROUBLESHOOTING}")
