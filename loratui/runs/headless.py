"""Training without the app: a progress line in the terminal (``loratui train``, ``loratui demo --headless``).

The trainer runs as an ordinary child here. Ctrl-C reaches both processes: the trainer finishes
its step, saves and stops; this side keeps reporting until it has. A second Ctrl-C stops the
trainer without saving.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import TextIO

from loratui.runs.launch import start_foreground
from loratui.runs.state import RunState, describe_event, progress_line
from trainer.contract.events import LineTail, parse_event
from trainer.contract.rundir import RunPaths

POLL_SECONDS = 0.2


class ProgressPrinter:
    """Writes progress to a stream: one redrawn line on a terminal, occasional lines otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.interactive = stream.isatty()
        self._last_line = ""
        self._last_print = 0.0

    def log(self, text: str) -> None:
        """A line that stays (a checkpoint, a warning)."""
        if self.interactive and self._last_line:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self._last_line = ""
        self.stream.flush()

    def progress(self, text: str, force: bool = False) -> None:
        """The current progress; redrawn in place on a terminal, every 10 s in a log file."""
        if self.interactive:
            self.stream.write("\r\033[K" + text)
            self._last_line = text
            self.stream.flush()
        elif force or time.monotonic() - self._last_print >= 10:
            self.log(text)
            self._last_print = time.monotonic()

    def finish(self) -> None:
        if self.interactive and self._last_line:
            self.stream.write("\n")
            self.stream.flush()
            self._last_line = ""


def follow(run: RunPaths, process: subprocess.Popen, stream: TextIO = sys.stderr, offset: int = 0) -> RunState:
    """Report a running trainer's events (from ``offset`` in the events file) until it exits."""
    printer = ProgressPrinter(stream)
    tail = LineTail(run.events, offset=offset)
    state = RunState()
    stop_sent = False
    while True:
        try:
            exited = process.poll() is not None
            for event in filter(None, map(parse_event, tail.read_lines())):
                state.apply(event)
                line = describe_event(event, state)
                if line:
                    printer.log(line)
            if exited:
                break
            # Off a terminal, only training progress is worth a periodic line.
            if state.phase == "training" or (printer.interactive and not state.finished):
                printer.progress(progress_line(state))
            time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            # The terminal sent SIGINT to the trainer as well; it stops after this step.
            printer.log("Stopping after the current step and saving… (Ctrl-C again to stop without saving)"
                        if not stop_sent else "Stopping now, without saving.")
            stop_sent = True
    printer.finish()
    if not state.finished:
        # The trainer died without a final event (killed, or crashed before it could write one).
        state.phase = "failed"
        state.error_message = f"the trainer exited with status {process.returncode}; see {run.log}"
        printer.log(f"error: {state.error_message}")
    return state


def train_in_foreground(run: RunPaths, stream: TextIO = sys.stderr, resume: bool = False) -> RunState:
    """Start the trainer for ``run`` (or resume it) and follow it to the end."""
    # A resumed run's history is already known: report only what this process adds.
    offset = LineTail.end_of(run.events)
    process = start_foreground(run, resume)
    try:
        return follow(run, process, stream, offset)
    finally:
        if process.poll() is None:
            process.wait()
