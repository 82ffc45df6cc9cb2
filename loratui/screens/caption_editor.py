"""The dataset screen's caption editor: one image's caption, new or existing, with unsaved drafts kept.

The editor only holds text; writing goes through the dataset screen (``trainer.contract.caption_store``,
backed up first, undone with ``u``). What a save means is decided here, by :func:`plan_save`, so the
screen and the tests share one rule:

- text in the editor writes the caption file, creating it when the image had none;
- an empty editor on an image that has a caption file deletes that file, after asking (the file is
  backed up first and ``u`` brings it back);
- an empty editor on an image without a caption, or text that is already on disk, changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.widgets import TextArea


def caption_target(image: Path, caption_path: Path | None, extension: str) -> Path:
    """The caption file of an image: its existing one, else where the trainer looks for it."""
    return caption_path if caption_path is not None else image.with_suffix(extension)


@dataclass(frozen=True)
class SavePlan:
    """What ctrl+s in the caption editor does."""

    kind: str
    """"write" (create or change the file), "delete" (remove it, after asking) or "nothing"."""
    text: str | None
    """The text to write; None for a deletion or nothing."""
    action: str
    """The change in words: the backup's record, the notice after it, or why nothing happens."""


def plan_save(target: Path, text: str, on_disk: str | None) -> SavePlan:
    """What saving ``text`` to ``target`` does, given its text on disk (None: there is no file).

    Tags are compared as written, after trimming the text's ends, so saving an untouched caption is
    "nothing" and never rewrites the file.
    """
    text = text.strip()
    if text:
        if on_disk is not None and text == on_disk.strip():
            return SavePlan("nothing", None, f"Nothing to save: {target.name} already says that.")
        verb = "edit" if on_disk is not None else "create"
        return SavePlan("write", text, f"{verb} the caption {target.name}")
    if on_disk is None:
        return SavePlan("nothing", None, f"Nothing to save: the editor is empty and {target.name} does not exist. "
                                         "Type the caption, then ctrl+s creates it.")
    return SavePlan("delete", None, f"delete the caption {target.name}")


class CaptionEditor(TextArea):
    """A text area for one caption file, which may not exist yet.

    ``show`` puts an image's caption in it with the cursor at the end (where new tags go). Text typed
    and not saved is kept: a rescan of the same image leaves it alone, and moving to another image
    keeps it as a draft that comes back when that image is shown again. The border says which file
    it is, whether it exists yet, and whether the text on screen is saved.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("", soft_wrap=True, **kwargs)
        self.target: Path | None = None
        """The caption file the text belongs to (it may not exist yet)."""
        self.on_disk: str | None = None
        """Its text as last read (None: there is no file)."""
        self.drafts: dict[Path, str] = {}
        """Unsaved text of other captions, kept while another image is shown."""

    @property
    def unsaved(self) -> bool:
        """Whether the text on screen differs from the file (a missing file reads as empty)."""
        return self.target is not None and self.text.strip() != (self.on_disk or "").strip()

    def show(self, target: Path | None, on_disk: str | None) -> None:
        """Show the caption ``target`` whose file holds ``on_disk`` (None: no file), or nothing."""
        if self.target is not None and target != self.target and self.unsaved:
            self.drafts[self.target] = self.text
        if target is not None and target == self.target and self.unsaved:
            text = self.text  # a rescan while typing: what is typed stays
        else:
            text = self.drafts.pop(target, None) if target is not None else None
            if text is None:
                text = (on_disk or "").rstrip()
        moved = target != self.target
        self.target, self.on_disk = target, on_disk
        self.read_only = target is None
        if text != self.text:
            self.load_text(text)
            moved = True
        if moved:
            # New tags go at the end of a caption: the cursor waits there.
            self.move_cursor(self.document.end)
        self._update_titles()

    def forget_draft(self) -> None:
        """Drop the draft of the caption on screen (after it was saved, or deleted)."""
        if self.target is not None:
            self.drafts.pop(self.target, None)

    def on_text_area_changed(self) -> None:
        self._update_titles()

    def _update_titles(self) -> None:
        if self.target is None:
            self.border_title, self.border_subtitle = "no image", ""
            return
        self.border_title = self.target.name + ("" if self.on_disk is not None else " (new)")
        self.border_subtitle = "not saved: ctrl+s" if self.unsaved else ""
