"""The run panel: phase, progress bar, step, loss, speed and time left."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, ProgressBar, Static

from loratui.runs.state import RunState, progress_line

PHASE_TITLES = {"starting": "Starting", "loading": "Loading model", "caching": "Caching latents",
                "training": "Training", "sampling": "Drawing samples", "done": "Finished", "stopped": "Stopped", "failed": "Failed"}


class RunStatus(Vertical):
    """Shows one run's ``RunState``; call ``show`` whenever the state changes."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.state = RunState()
        """The state last shown (the screen owns updates; this is for reading)."""
        self.border_title = "No run yet"

    def compose(self) -> ComposeResult:
        with Horizontal(id="run-line"):
            yield ProgressBar(total=None, show_eta=False, id="run-progress")
        yield Label("Press s to start training.", id="run-text", markup=False)
        yield Static("", id="run-message", markup=False)

    def show(self, state: RunState) -> None:
        """Redraw from ``state``."""
        self.state = state
        self.border_title = PHASE_TITLES.get(state.phase, state.phase)
        bar = self.query_one("#run-progress", ProgressBar)
        if state.total_steps:
            bar.update(total=state.total_steps, progress=state.step)
        self.query_one("#run-text", Label).update(progress_line(state))
        detail = state.message
        if state.phase == "failed" and state.advice:
            detail = f"{state.error_message}\n{state.advice}"
        self.query_one("#run-message", Static).update(detail)
        self.set_class(state.phase == "failed", "-failed")
        self.set_class(state.phase == "done", "-done")
