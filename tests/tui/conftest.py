"""Fixtures for the app's Pilot and snapshot tests."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from textual.widgets import Input
from textual.worker import WorkerState

from loratui.demo import write_dataset
from trainer.contract.config.schema import Config, with_value
from trainer.contract.config.toml_io import save_config


def assessed(app) -> bool:
    """True once the app's config has an up-to-date assessment."""
    workspace = app.workspace
    return workspace.assessment is not None and workspace.assessed_version == workspace.version


async def until(pilot, predicate, timeout: float = 30.0) -> bool:
    """Let the app run until ``predicate()`` holds (or the timeout passes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await pilot.pause(0.05)
    return False


LONG_LIVED_WORKERS = {"follow"}
"""Worker groups that live as long as what they watch (a run being followed), never "finished"."""


async def settled(pilot, timeout: float = 30.0) -> None:
    """Let the app finish what the last key set off: its workers, then the messages they posted.

    "Nothing happened" is only worth asserting once the work that could make it happen has ended;
    a fixed pause guesses how long that takes, and on a loaded machine it guesses wrong.
    """
    app = pilot.app
    while True:
        await pilot.pause()
        busy = [worker for worker in app.workers if worker.group not in LONG_LIVED_WORKERS
                and worker.state in (WorkerState.PENDING, WorkerState.RUNNING)]
        if not busy:
            return
        await asyncio.wait_for(app.workers.wait_for_complete(busy), timeout)


async def steady_cursors(pilot) -> None:
    """Stop every input's cursor blinking and show it only where the focus is, for snapshots.

    A blink timer tick that lands between focusing and the screenshot would otherwise decide
    whether the cursor shows (it did, on a CI machine).
    """
    # The screen's inputs: with modes, the active screen is not under app.query's reach.
    for box in pilot.app.screen.query(Input):
        box.cursor_blink = False
    await pilot.pause(0.2)
    for box in pilot.app.screen.query(Input):
        box._cursor_visible = box.has_focus  # Textual keeps this private; no public way to pin it
    await pilot.pause(0.1)


@pytest.fixture
def light_workspace(tmp_path) -> Path:
    """A workspace the app can assess without torch: a model folder with only its index, 12 images.

    Paths in the config are relative, as a user writes them, so screens show the same text in
    every test run (the snapshot tests rely on it).
    """
    (tmp_path / "model" / "unet").mkdir(parents=True)
    (tmp_path / "model" / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    write_dataset(tmp_path / "dataset")
    config = with_value(Config(), "model.base", "model")
    config = with_value(config, "dataset.path", "dataset")
    config = with_value(config, "dataset.trigger_word", "zkmascot")
    path = tmp_path / "loratui.toml"
    save_config(config, path)
    return path
