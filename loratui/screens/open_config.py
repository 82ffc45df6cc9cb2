"""A small prompt for the path of a config to open (ctrl+o on the settings screen)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


class OpenConfigScreen(ModalScreen[str | None]):
    """Ask for a config path; dismissed with the path, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="cancel-open")]

    def __init__(self, current: str = "") -> None:
        super().__init__()
        self.current = current
        """The path shown to start with (the open file's)."""

    def compose(self) -> ComposeResult:
        with Vertical(id="open-config"):
            yield Label("Open a config (TOML); Enter opens it, Esc cancels.")
            yield Input(self.current, placeholder="path/to/loratui.toml", id="open-path")

    @on(Input.Submitted, "#open-path")
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
