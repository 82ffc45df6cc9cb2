"""Save, discard or stay: asked when the app would close with settings not yet saved."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static


class UnsavedChangesScreen(ModalScreen[str | None]):
    """Dismissed with ``"save"`` (s), ``"discard"`` (d), or None to stay (c, Esc, or Enter on the focused Stay)."""

    BINDINGS = [
        Binding("s", "answer('save')", "Save", id="unsaved-save"),
        Binding("d", "answer('discard')", "Discard", id="unsaved-discard"),
        Binding("c,escape", "answer(None)", "Stay", id="unsaved-stay"),
    ]

    def __init__(self, path: str, changed: list[str]) -> None:
        super().__init__()
        self.path = path
        self.changed = changed

    def compose(self) -> ComposeResult:
        shown = ", ".join(self.changed[:6]) + (f" and {len(self.changed) - 6} more" if len(self.changed) > 6 else "")
        with Vertical(id="confirm"):
            yield Label(f"Save your changes to {self.path} before quitting?", id="confirm-question", markup=False)
            yield Static(f"Changed: {shown}." if shown else "", id="confirm-detail", markup=False)
            with Horizontal(id="confirm-buttons"):
                yield Button("Save (s)", variant="primary", id="save")
                yield Button("Discard (d)", variant="error", id="discard")
                yield Button("Stay (c)", id="stay")

    def on_mount(self) -> None:
        # Enter pressed out of habit loses nothing.
        self.query_one("#stay", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "stay" else event.button.id)

    def action_answer(self, choice: str | None) -> None:
        self.dismiss(choice)
