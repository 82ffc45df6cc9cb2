"""The loratui Textual app."""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.binding import Binding

from loratui.screens import TrainScreen
from loratui.themes import LORATUI_THEME, STYLESHEET


class LoraTuiApp(App):
    """Train a LoRA from the terminal: load a config, start the trainer, watch it run."""

    TITLE = "loratui"
    CSS_PATH = STYLESHEET
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", id="quit", priority=True)]
    """App-wide keys; each screen adds its own."""

    def __init__(self, config_path: Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__()
        self.config_path = config_path
        """The config opened at start, if any."""
        self.overrides = list(overrides)
        """``--set`` overrides applied to every config this app loads."""

    def on_mount(self) -> None:
        self.register_theme(LORATUI_THEME)
        self.theme = LORATUI_THEME.name
        self.push_screen(TrainScreen(self.config_path, self.overrides))
