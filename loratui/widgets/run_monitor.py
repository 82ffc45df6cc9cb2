"""The run monitor: progress, red flags, loss plot, live log and samples of one run.

Reading the run happens in a thread worker (``RunFollower.poll``), which posts one
``RunMonitor.Polled`` message per poll that found something; the plot is rendered in another
thread worker at most once a second, and only when the history changed. Nothing here touches the trainer
except through its run folder, so the monitor can come and go while the run goes on.
"""

from __future__ import annotations

import time
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Log, Static, TabbedContent, Tabs, TabPane
from textual.worker import get_current_worker

from loratui.monitor.loss_history import Series
from loratui.monitor.plot import colours_from_theme, render_loss_plot
from loratui.monitor.red_flags import RedFlag
from loratui.runs.follower import FollowBatch, RunFollower
from loratui.runs.state import RunState
from loratui.widgets.loss_plot import LossPlot
from loratui.widgets.run_status import RunStatus
from loratui.widgets.sample_view import SampleView, sample_prompt_text
from trainer.contract.rundir import RunPaths

POLL_SECONDS = 0.25
PLOT_INTERVAL = 1.0
"""Seconds between plot redraws at most (plotext's cost grows with the points, not the size)."""
LOG_LINES = 5000
TABS = ("tab-loss", "tab-log", "tab-samples")


class RunMonitor(Vertical):
    """Follows one run folder; ``follow`` starts (or switches to) a run."""

    class Polled(Message):
        """What one poll of the followed run found (sent from the follow worker to the monitor)."""

        def __init__(self, follower: RunFollower, batch: FollowBatch) -> None:
            super().__init__()
            self.follower = follower
            """The follower that polled: a batch from one the monitor no longer uses is dropped."""
            self.batch = batch

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.run: RunPaths | None = None
        """The run being followed."""
        self.state = RunState()
        """The followed run's latest known state."""
        self.flags: list[RedFlag] = []
        """Red flags raised for this run, oldest first."""
        self.follower: RunFollower | None = None
        self._series: Series | None = None
        self._series_dirty = False
        self._shown_samples: tuple[str, ...] = ()
        self._plots = 0  # number of the newest plot asked for: an older worker's plot is dropped

    def compose(self) -> ComposeResult:
        yield RunStatus(id="run-status")
        yield Static("", id="red-flags", markup=False)
        # Each tab's key in its title: the footer has no room for all three.
        with TabbedContent(initial="tab-log", id="monitor-tabs"):
            with TabPane("Loss (p)", id="tab-loss"):
                yield LossPlot(id="loss-plot")
            with TabPane("Log (l)", id="tab-log"):
                yield RunLog(max_lines=LOG_LINES, id="log")
            with TabPane("Samples (v)", id="tab-samples"):
                yield SampleView(id="samples")

    def on_mount(self) -> None:
        self.query_one("#red-flags").display = False
        self.set_interval(PLOT_INTERVAL, self._maybe_redraw_plot)

    @property
    def log(self) -> RunLog:
        """The run's log widget."""
        return self.query_one("#log", RunLog)

    @property
    def active_tab(self) -> str:
        """The id of the tab on show (one of ``TABS``)."""
        return self.query_one(TabbedContent).active

    def write(self, text: str) -> None:
        """Add a line of the app's own to the log (a start, a request)."""
        self.log.write_line(f"{time.strftime('%H:%M:%S')} {text}")

    def show_tab(self, tab: str) -> None:
        """Switch to one of ``TABS``."""
        tabs = self.query_one(TabbedContent)
        tabs.active = tab
        # Keep the focus inside the monitor: a focus lost with a hidden tab would fall to the
        # config path box, which would then swallow the screen's letter keys.
        strip = tabs.query_one(Tabs)
        if tab == "tab-log":
            self.log.focus()
        elif strip.display:
            strip.focus()
        else:
            self.screen.set_focus(None)  # zoomed: the tab strip is hidden, and nothing hidden may hold the focus

    # Following ------------------------------------------------------------------------------

    def follow(self, run: RunPaths) -> None:
        """Follow ``run`` from the start of its history (a new run, or one attached to)."""
        self.run = run
        self.follower = RunFollower(run)
        # Nothing of the run followed before may show: its batches and plots still on their way are
        # recognised by their follower and number, and dropped.
        self.state = RunState()
        self.flags = []
        self._series, self._series_dirty, self._shown_samples = None, False, ()
        self._plots += 1
        self.log.clear()
        self.log.following = True
        self._show_flags()
        self.query_one(LossPlot).show_waiting()
        self.query_one(SampleView).show_images([], "")
        self._start_following()

    def continue_from(self, events_offset: int, log_offset: int) -> None:
        """Go on following the same run from these file offsets (a resumed run's new process).

        The history before the offsets is already on screen, so the new follower keeps the
        state, loss history and red-flag watch and reads only what the new process adds.
        """
        previous = self.follower
        if previous is None:
            return
        # The stop (or failure) is over: until the new process reports, the run is starting again.
        state = previous.state
        state.phase, state.message = "starting", "Resuming…"
        self.follower = RunFollower(previous.run, events_offset, log_offset, state, previous.history,
                                    previous.watch)
        self.state = state.snapshot()
        self._start_following()

    def _start_following(self) -> None:
        self.follower.plot_width = max(20, self.query_one(LossPlot).size.width)
        self.query_one(RunStatus).show(self.state)
        self._follow(self.follower)

    @work(thread=True, exclusive=True, group="follow", exit_on_error=False)
    def _follow(self, follower: RunFollower) -> None:
        """Poll the run's files until its process is gone, posting what each poll finds."""
        worker = get_current_worker()
        while not worker.is_cancelled:
            batch = follower.poll()
            if not batch.empty:
                self.post_message(self.Polled(follower, batch))
            if batch.exited:
                return
            if batch.caught_up:
                time.sleep(POLL_SECONDS)

    def on_run_monitor_polled(self, message: Polled) -> None:
        batch = message.batch
        if self.follower is None or message.follower is not self.follower:
            return  # from a run followed before (or before a resume): its news is not this run's
        self.log.add_lines(batch.log_lines)
        self.state = batch.state
        self.query_one(RunStatus).show(batch.state)
        if batch.flags:
            self.flags.extend(batch.flags)
            self._show_flags()
            for flag in batch.flags:
                self.app.notify(f"{flag.title}: {flag.advice}", title="Red flag", severity="warning", timeout=15)
        if batch.series is not None:
            self._series, self._series_dirty = batch.series, True
        self._show_samples(batch.state)
        # Footer keys depend on the run's phase (stop while it runs, resume once it stopped).
        self.screen.refresh_bindings()

    def _show_flags(self) -> None:
        banner = self.query_one("#red-flags", Static)
        banner.display = bool(self.flags)
        banner.update("\n".join(f"⚑ {flag.title} (step {flag.step}): {flag.advice}" for flag in self.flags))

    def _show_samples(self, state: RunState) -> None:
        paths = tuple(str(event.get("path")) for event in state.samples if event.get("path"))
        if not paths or paths == self._shown_samples:
            return
        self._shown_samples = paths
        newest = state.samples[-1]
        # Left to right: each prompt at each strength, as the trainer draws them (pNN-wS.S.png).
        strengths = ", ".join(f"{event.get('strength', 1.0):.1f}" for event in state.samples)
        prompts = list(dict.fromkeys(sample_prompt_text(event) for event in state.samples))
        caption = f"step {newest.get('step')} · strength {strengths} · " + " | ".join(prompts)
        self.query_one(SampleView).show_images([Path(p) for p in paths], caption, names=False)

    # Plot -----------------------------------------------------------------------------------

    def on_resize(self) -> None:
        if self.follower is not None:
            self.follower.plot_width = max(20, self.query_one(LossPlot).size.width)
        self._series_dirty = self._series is not None
        # At once rather than at the next tick: a zoom should not show a stretched old plot for a second.
        self.call_after_refresh(self._maybe_redraw_plot)

    def _maybe_redraw_plot(self) -> None:
        if not self._series_dirty or self._series is None:
            return
        plot = self.query_one(LossPlot)
        if plot.size.width < 2 or plot.size.height < 2:
            return  # not laid out yet (or on a hidden tab): redraw once it is shown
        self._series_dirty = False
        colours = colours_from_theme(self.app.current_theme)
        self._plots += 1
        title = self.run.root.name if self.run is not None else ""
        self._render_plot(self._series, plot.size.width, plot.size.height, colours, title, self._plots)

    @work(thread=True, exclusive=True, group="plot", exit_on_error=False)
    def _render_plot(self, series: Series, width: int, height: int, colours, title: str, number: int) -> None:
        text = render_loss_plot(series.steps, series.loss, series.smoothed, series.lr, width, height, colours,
                                title=title, validation_steps=series.validation_steps,
                                validation_loss=series.validation_loss)
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._show_plot, text, number)

    def _show_plot(self, text, number: int) -> None:
        if number == self._plots:  # else a newer plot (or another run) was asked for meanwhile
            self.query_one(LossPlot).show(text)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        # A plot drawn while its tab was hidden had no size; draw it now at the real one.
        if event.pane.id == "tab-loss" and self._series is not None:
            self._series_dirty = True
            self.call_after_refresh(self._maybe_redraw_plot)


class RunLog(Log):
    """The run's log, which keeps its newest lines in view unless the reader scrolled up to read.

    Textual's ``Log`` follows new lines only while it is scrolled to the very end, and a change of
    its height (a status line appearing when the run ends, a red-flag banner, a tab shown again)
    leaves it short of the end without anyone scrolling: from then on it would stop following.
    Here "following" changes only when the scroll position itself moves.
    """

    following = True
    """True while the newest lines are kept in view (False once the reader scrolls up; the end key,
    or scrolling back down to the end, turns it on again)."""

    def add_lines(self, lines: list[str]) -> None:
        """Append ``lines``, then show the end if the log is following."""
        if lines:
            self.write_lines(lines, scroll_end=False)
            self._keep_end()

    def write_line(self, line: str, scroll_end: bool | None = None) -> Log:
        """Append one line (the app's own notes), then show the end if the log is following."""
        result = super().write_line(line, scroll_end=False)
        self._keep_end()
        return result

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        # Moving up because the widget grew (the end came closer) keeps following; only a position
        # short of the end, reached by scrolling, means the reader is looking back.
        self.following = new_value >= self.max_scroll_y

    def on_resize(self) -> None:
        self._keep_end()

    def _keep_end(self) -> None:
        if self.following and self.size.height > 0:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
