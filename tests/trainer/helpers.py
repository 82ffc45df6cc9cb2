"""Running the real trainer on tiny models, as the app does: a child process and a run folder."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from trainer.config_toml import load_config
from trainer.events import read_events
from trainer.rundir import RunPaths, create_run_dir


def new_run(config_path: Path, overrides=()) -> RunPaths:
    config, problems = load_config(config_path, overrides)
    assert not problems, problems
    return create_run_dir(config)


def train(config_path: Path, overrides=(), timeout: float = 240) -> tuple[RunPaths, list[dict], int]:
    """Train to the end; return the run, its events and the exit status."""
    run = new_run(config_path, overrides)
    with open(run.log, "wb") as log:
        status = subprocess.run([sys.executable, "-m", "trainer", str(run.root)], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, timeout=timeout).returncode
    return run, read_events(run.events), status


def of_type(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["type"] == kind]


def wait_for(predicate, timeout: float = 120.0, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
