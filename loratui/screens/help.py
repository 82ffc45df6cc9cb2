"""Context help (F9 anywhere, ? outside text fields): the keys of the screen in front, read from its
bindings, and the guide's troubleshooting."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Markdown

NOTES = {
    "checklist": "- **Enter** on an item: go where it is fixed (a setting, or the dataset)\n"
                 "- **↑ / ↓**: move between items\n",
    "setup": "- **Tab / shift+Tab**: next and previous setting · **Enter** opens a list · **Space** flips a switch\n"
             "- The line at the bottom says what the focused setting does\n",
    "dataset": "- **Enter** on a problem: open its image and caption · **Enter** on an image: edit its caption\n",
    "train": "- **Enter** in the config field loads that config\n",
}
"""What the bindings cannot say: keys that widgets handle themselves, per screen."""

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
    """Every key of the screen it was opened from (read from its bindings, so the list is always the
    app's), the app-wide keys, then the guide's troubleshooting."""

    BINDINGS = [Binding("escape,q,question_mark,f9", "dismiss", "Close", id="close-help")]

    def __init__(self, screen: Screen, mode: str) -> None:
        super().__init__()
        self.for_screen = screen
        """The screen whose keys are shown."""
        self.mode = mode
        """The app's mode (checklist, dataset, setup or train)."""

    def compose(self) -> ComposeResult:
        from loratui.commands import screen_title

        app = self.app
        title = screen_title(self.for_screen)
        keys = key_lines(app, getattr(type(self.for_screen), "BINDINGS", []))
        notes = NOTES.get(self.mode, "") if not isinstance(self.for_screen, ModalScreen) else ""
        common = key_lines(app, [b for b in type(app).BINDINGS if b.action != "help"])
        with VerticalScroll(id="help"):
            yield Markdown(f"## Keys: {title}\n{keys}{notes}\n## Everywhere\n"
                           f"- **F9** (or **?** outside a text field): this help · **ctrl+p**: every command, "
                           f"searchable\n{common}\n## Troubleshooting\n{TROUBLESHOOTING}")


def key_lines(app, bindings) -> str:
    """One Markdown line per binding: its key, what it does, and its longer help when it has one."""
    lines = []
    for binding in bindings:
        if not binding.description:
            continue
        more = f": {binding.tooltip}" if binding.tooltip else ""
        lines.append(f"- **{app.get_key_display(binding)}** {binding.description}{more}\n")
    return "".join(lines)
