"""Following a run from its folder: the work the monitor does off the UI thread (no Textual, no torch).

A ``RunFollower`` tails ``events.jsonl`` and ``trainer.log`` and folds what it reads into the
run's state, its bounded loss history and the red-flag watch. Each ``poll`` returns one
``FollowBatch``: the lines to log, a snapshot of the state, the red flags raised since the last
poll and, when the history grew, the plot series. The UI thread only ever sees batches, so a
trainer writing a thousand events a second costs the UI one message per poll, and attaching
to a run with a million steps of history replays it here, in bounded chunks.
"""

from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass, field

from loratui.monitor.loss_history import LossHistory, Series
from loratui.monitor.red_flags import RedFlag, RedFlagWatch, RunFacts
from loratui.runs.registry import last_lines
from loratui.runs.state import RunState, describe_event
from trainer.contract.events import LineTail, parse_event
from trainer.contract.rundir import RunPaths, pid_alive, read_pid

MAX_LINES_PER_POLL = 2000
"""Log lines handed to the UI per poll; a long replay keeps only its most recent lines."""
CHUNKS_PER_POLL = 8
"""1 MiB chunks of events read per poll: a long history is replayed over several polls, so the
screen shows the run filling in instead of nothing until the whole file is read."""
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def clean_output_line(line: str) -> str:
    """A raw trainer output line made fit for the Log: colours removed, progress-bar redraws collapsed."""
    segments = [s for s in line.split("\r") if s.strip()]
    return _ANSI.sub("", segments[-1] if segments else "")


@dataclass
class FollowBatch:
    """What one poll found."""

    state: RunState
    log_lines: list[str] = field(default_factory=list)
    flags: list[RedFlag] = field(default_factory=list)
    series: Series | None = None
    """The plot series, when the loss history changed since the last poll."""
    exited: bool = False
    """True once the training process is gone and its files are read to the end."""
    caught_up: bool = True
    """False while a long history is still being replayed: poll again at once."""

    @property
    def empty(self) -> bool:
        return not self.log_lines and not self.flags and self.series is None and not self.exited


class RunFollower:
    """Reads one run's files as they grow; call ``poll`` from a worker thread."""

    def __init__(self, run: RunPaths, events_offset: int = 0, log_offset: int = 0,
                 state: RunState | None = None, history: LossHistory | None = None,
                 watch: RedFlagWatch | None = None) -> None:
        self.run = run
        self.state = state or RunState()
        self.history = history or LossHistory()
        self.watch = watch or RedFlagWatch()
        self.plot_width = 120
        """Points the plot series is downsampled to (the UI sets it from the plot's size)."""
        self._events = LineTail(run.events, offset=events_offset)
        self._log = LineTail(run.log, offset=log_offset)
        self._pid: int | None = None

    def _alive(self) -> bool:
        # The pid file appears a moment after the run folder, and a resumed run has a new process.
        if self._pid is None or not pid_alive(self._pid):
            self._pid = read_pid(self.run)
        return self._pid is not None and pid_alive(self._pid)

    def poll(self) -> FollowBatch:
        """Read everything new; the state, history and flags move on accordingly."""
        alive = self._alive()
        lines: deque[str] = deque(maxlen=MAX_LINES_PER_POLL)
        for raw in self._log.read_lines():
            text = clean_output_line(raw)
            if text:
                lines.append(f"│ {text}")
        grew = False
        caught_up = True
        for count, chunk in enumerate(self._events.iter_chunks(), start=1):
            for line in chunk:
                event = parse_event(line)
                if event is None:
                    continue
                self.state.apply(event)
                if event["type"] == "step":
                    self.history.add(event.get("step", 0), event.get("loss"), event.get("lr"))
                    grew = True
                else:
                    if event["type"] == "validation":
                        self.history.add_validation(event.get("step", 0), event.get("loss"))
                        grew = True
                    text = describe_event(event, self.state)
                    if text:
                        lines.append(text)
            if count >= CHUNKS_PER_POLL:
                caught_up = False
                break
        exited = caught_up and not alive and not self._starting()
        if exited and not self.state.finished:
            self.state.phase = "failed"
            self.state.error_message = "The trainer stopped without a final event (killed, or it crashed)."
            self.state.advice = f"Its last output is in {self.run.log}."
            lines.append(f"error: {self.state.error_message} {self.state.advice}")
            lines.extend(f"│ {text}" for text in last_lines(self.run.log, 5))
        flags = self.watch.update(self.history, self._facts())
        for flag in flags:
            lines.append(f"red flag: {flag.title} — {flag.advice}")
        series = self.history.series(self.plot_width) if grew else None
        return FollowBatch(self.state.snapshot(), list(lines), flags, series, exited, caught_up)

    def _starting(self) -> bool:
        # A folder that was just made may have neither a pid nor events for a moment.
        if self.state.updated is not None or self._pid is not None:
            return False
        try:
            return time.time() - self.run.config.stat().st_mtime < 10
        except OSError:
            return False

    def _facts(self) -> RunFacts:
        state = self.state
        return RunFacts(step=state.step, total_steps=state.total_steps, seconds_per_step=state.seconds_per_step,
                        device=state.device, error_code=state.error_code)
