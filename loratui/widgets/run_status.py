"""The run panel: phase, progress bar, training time, time left, step, loss and speed.

Events arrive when the trainer has something to say, which can be minutes apart (sampling, saving,
a slow step), so the clock on the bar's line is redrawn on a timer of its own: it keeps running while
the run does. Every line is fitted to the panel's width by leaving out whole figures, never by cutting
one ("ETA 23:0" would read as a different time).
"""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, ProgressBar, Static

from loratui.runs.state import RunState, clock_figures, fit_figures, fit_text, step_figures

PHASE_TITLES = {"starting": "Starting", "loading": "Loading model", "caching": "Caching latents",
                "training": "Training", "sampling": "Drawing samples", "done": "Finished", "stopped": "Stopped",
                "failed": "Failed"}
"""The panel's title for each phase of a run."""
CLOCK_SECONDS = 1.0
"""How often the training-time clock is redrawn between events."""
IDLE_TEXT = "Press s to start training."
"""What the panel says before any run is followed."""


class RunStatus(Vertical):
    """Shows one run's ``RunState``; call ``show`` whenever the state changes."""

    DEFAULT_CSS = """
    RunStatus #run-line {
        height: 1;
    }
    RunStatus #run-progress {
        width: 1fr;
    }
    RunStatus #run-progress Bar {
        width: 1fr;
    }
    RunStatus #run-clock {
        width: auto;
        padding-left: 2;
    }
    RunStatus #run-text {
        width: 1fr;
    }
    RunStatus #run-message.-empty {
        display: none;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.state = RunState()
        """The state last shown (the screen owns updates; this is for reading)."""
        self.following = False
        """False until the first ``show``: before it the panel only says how to start a run."""
        self.border_title = "No run yet"

    def compose(self) -> ComposeResult:
        with Horizontal(id="run-line"):
            yield ProgressBar(total=None, show_eta=False, id="run-progress")
            yield Label("", id="run-clock", markup=False)
        yield Label(IDLE_TEXT, id="run-text", markup=False)
        yield Static("", id="run-message", markup=False, classes="-empty")

    def on_mount(self) -> None:
        self.set_interval(CLOCK_SECONDS, self._tick)

    def show(self, state: RunState) -> None:
        """Redraw from ``state``."""
        self.state = state
        self.following = True
        self.border_title = title_of(state)
        bar = self.query_one("#run-progress", ProgressBar)
        if state.total_steps:
            bar.update(total=state.total_steps, progress=state.step)
        else:
            # A new run has no plan yet: the bar must not keep the last run's 100 %.
            bar.update(total=None, progress=0)
        self._draw_lines()
        message = self.query_one("#run-message", Static)
        detail = message_of(state)
        message.update(detail)
        message.set_class(not detail, "-empty")
        self.set_class(state.phase == "failed", "-failed")
        self.set_class(state.phase == "done", "-done")

    @property
    def text(self) -> str:
        """The step line as shown (for reading)."""
        return str(self.query_one("#run-text", Label).render())

    @property
    def clock(self) -> str:
        """The clock as shown: training time and time left (for reading)."""
        return str(self.query_one("#run-clock", Label).render())

    def on_resize(self) -> None:
        if self.following:
            self._draw_lines()

    def _tick(self) -> None:
        # Only a run that is still going has a clock that moves.
        if self.following and not self.state.finished and self.state.started is not None:
            self._draw_clock()

    def _draw_lines(self) -> None:
        width = self.content_size.width or None
        state = self.state
        if state.phase in ("starting", "loading", "caching"):
            text = fit_text(state.message or "Starting…", width)
        else:
            text = fit_figures(step_figures(state), width)
        self.query_one("#run-text", Label).update(text)
        self._draw_clock()

    def _draw_clock(self) -> None:
        # The clock shares its line with the bar, which needs some room to mean anything.
        width = max(self.content_size.width - 20, 12) if self.content_size.width else None
        self.query_one("#run-clock", Label).update(fit_figures(clock_figures(self.state, time.time()), width))


def title_of(state: RunState) -> str:
    """The panel's title: the phase, how far sampling is, and what the run computes on."""
    title = PHASE_TITLES.get(state.phase, state.phase)
    progress = state.sample_progress
    if progress is not None:
        title = f"Drawing sample {progress[0]}/{progress[1]}"
    if state.device and not state.finished:
        title += f" · {state.device}" + (f", {state.precision}" if state.precision else "")
    return title


def message_of(state: RunState) -> str:
    """The line under the figures: what ended the run and what to do. Empty while it runs (the plan is
    on the screen already, and a line that comes and goes would shift everything under it)."""
    if state.phase == "failed":
        return f"{state.error_message}\n{state.advice}".strip()
    if state.finished:
        return state.message
    return ""
