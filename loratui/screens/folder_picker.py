"""Pick a folder from a tree (the dataset screen's ctrl+o)."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DirectoryTree, Label


class FoldersOnly(DirectoryTree):
    """A directory tree that lists folders, not files (hidden ones left out)."""

    def filter_paths(self, paths):
        return [p for p in paths if not p.name.startswith(".") and _is_dir(p)]


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # unreadable or a broken link: not offered
        return False


class FolderPickerScreen(ModalScreen[Path | None]):
    """Dismissed with the folder chosen (Enter on it, or s for the highlighted one), or None."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="cancel-pick"),
        Binding("s", "choose", "Use this folder", id="choose-folder"),
        Binding("backspace", "up", "Parent folder", id="parent-folder"),
    ]

    def __init__(self, start: Path) -> None:
        super().__init__()
        start = Path(start).expanduser()
        while not _is_dir(start) and start != start.parent:
            start = start.parent
        self.start = start.resolve()

    def compose(self) -> ComposeResult:
        with Vertical(id="folder-picker"):
            yield Label("Choose the dataset folder: arrows move, Enter opens, s uses the highlighted folder, "
                        "Backspace goes up, Esc cancels.", markup=False)
            yield FoldersOnly(self.start, id="folder-tree")

    def on_mount(self) -> None:
        self.query_one(FoldersOnly).focus()

    @on(DirectoryTree.DirectorySelected)
    def _opened(self, event: DirectoryTree.DirectorySelected) -> None:
        event.stop()  # Enter only opens a folder; s chooses, so a tree can be explored first

    def action_choose(self) -> None:
        node = self.query_one(FoldersOnly).cursor_node
        self.dismiss(Path(node.data.path) if node is not None and node.data is not None else self.start)

    def action_up(self) -> None:
        tree = self.query_one(FoldersOnly)
        parent = Path(tree.path).resolve().parent
        tree.path = parent

    def action_cancel(self) -> None:
        self.dismiss(None)
