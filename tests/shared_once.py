"""Build a read-only test input once per test session, however many pytest-xdist workers share it.

pytest-xdist gives each worker its own session, so a session fixture would be built once per
worker: the tiny models and a trained run twice on two cores, for nothing. ``once`` builds into
a folder every worker of this run can see, under a file lock: the first worker to ask builds, the
others wait and reuse it. Without xdist it is an ordinary session-scoped build.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

DONE = ".built"
"""Written last, so a folder without it is a build that failed midway (and is built again)."""


def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder all workers of this pytest run share (this session's own one without xdist)."""
    base = tmp_path_factory.getbasetemp()
    # Under xdist each worker's base is ``pytest-N/popen-gwK``; ``pytest-N`` is this run's alone.
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """``build(folder)`` the first time any worker asks for ``name``; return the built folder.

    What comes back is shared: treat it as read-only (copy it before changing anything).
    """
    root = shared_root(tmp_path_factory) / "shared"
    root.mkdir(exist_ok=True)
    folder = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this worker dies
        if not (folder / DONE).exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            (folder / DONE).touch()
    return folder
