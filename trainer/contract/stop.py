"""Stopping a child process gracefully (the trainer, a tagging job): signals set a flag it checks.

SIGTERM or Ctrl-C asks for a stop, which the process honours at its next safe point (after a
step, between images) so its work is saved; a second one means "now". SIGHUP is ignored: a
dropped SSH link must never end the work, even if the process was started without setsid.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass


@dataclass
class StopRequest:
    """Set from a signal handler; the work looks at it at each safe point."""

    requested: bool = False
    reason: str = ""
    """The signal's name (``SIGTERM``, ``SIGINT``)."""


def install_stop_handlers(stop: StopRequest, echo_seconds: float = 0.0) -> None:
    """Route SIGTERM and SIGINT to ``stop`` (a second one raises KeyboardInterrupt); ignore SIGHUP.

    A repeat within ``echo_seconds`` of the first signal counts as the same request: a trainer
    under ``accelerate launch`` gets Ctrl-C once from the terminal and once more from the launcher,
    which passes every signal it receives on to its trainers.
    """
    first = 0.0

    def request_stop(signum, frame):
        nonlocal first
        if stop.requested:  # a second Ctrl-C means "now"
            if time.monotonic() - first < echo_seconds:
                return
            raise KeyboardInterrupt
        stop.requested = True
        stop.reason = signal.Signals(signum).name
        first = time.monotonic()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
