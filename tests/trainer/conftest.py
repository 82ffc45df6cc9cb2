"""One finished training run, shared by the tests that only read what a run wrote."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.shared_once import once
from tests.trainer.helpers import TRAINED_SD15_SETTINGS, train
from trainer.contract.events import read_events
from trainer.contract.rundir import RunPaths


@dataclass(frozen=True)
class TrainedRun:
    """A run trained to the end, read-only: copy ``run.root`` before resuming or changing it."""

    run: RunPaths
    events: list[dict]
    status: int


@pytest.fixture(scope="session")
def trained_sd15(tmp_path_factory, tiny_sd15) -> TrainedRun:
    """The demo dataset trained on the tiny SD1.5 with ``TRAINED_SD15_SETTINGS``, once per test run."""
    from loratui.demo import write_dataset

    def build(folder: Path) -> None:
        write_dataset(folder / "dataset")
        run, _, status = train(write_config(folder, tiny_sd15, folder / "dataset", **TRAINED_SD15_SETTINGS))
        (folder / "run.json").write_text(json.dumps({"root": str(run.root), "status": status}))

    built = json.loads((once(tmp_path_factory, "trained-sd15", build) / "run.json").read_text())
    run = RunPaths(Path(built["root"]))
    return TrainedRun(run, read_events(run.events), built["status"])
