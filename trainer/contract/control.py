"""Requests to a running trainer: "save now" and "sample now" (no torch).

The app and the trainer share nothing but the run folder, so a request is a file: the app
writes ``RUN_DIR/control/<action>`` (atomically) and the trainer, between two steps, takes
every waiting request (deleting its file) and acts on it. A file survives the app closing, so
a request made just before an SSH drop is still honoured. Stopping is not a request: it is
SIGTERM, which also reaches a trainer that is busy loading or caching.
"""

from __future__ import annotations

import time
from pathlib import Path

from trainer.contract.fileio import atomic_write_text

ACTIONS = ("save", "sample")
"""What a running trainer can be asked to do between steps."""


def control_dir(run_root: Path) -> Path:
    """The folder a run's requests are written to."""
    return Path(run_root) / "control"


def request(run_root: Path, action: str) -> Path:
    """Ask the trainer of ``run_root`` to ``action`` after its current step; return the request file."""
    if action not in ACTIONS:
        raise ValueError(f"unknown request {action!r}; expected one of {', '.join(ACTIONS)}")
    path = control_dir(run_root) / action
    atomic_write_text(path, f"{time.time():.3f}\n")
    return path


def take_requests(run_root: Path) -> list[str]:
    """The waiting requests, in ``ACTIONS`` order, each removed so it is acted on once."""
    folder = control_dir(run_root)
    taken = []
    for action in ACTIONS:
        path = folder / action
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        taken.append(action)
    return taken


def pending(run_root: Path) -> list[str]:
    """The requests written but not yet taken (for showing "save requested…")."""
    folder = control_dir(run_root)
    return [action for action in ACTIONS if (folder / action).exists()]
