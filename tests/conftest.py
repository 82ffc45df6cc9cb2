"""Shared fixtures: tiny models built offline once per session, datasets and configs per test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.shared_once import once

# No test may reach the network: the hub is told so, and nothing here names a hub model.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# With one pytest worker per core (pytest-xdist), torch in each worker and in each trainer it starts
# must keep to one thread, or the workers' OpenMP threads fight over the cores and every step crawls.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Keep the latent cache of every run the tests start out of the user's home."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))


@pytest.fixture(autouse=True)
def _private_run_registry(tmp_path_factory, monkeypatch):
    """Give every test its own registry of runs, so no test sees another's (or the user's) runs."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg-state")))


def _tiny(tmp_path_factory, arch: str) -> Path:
    def build(folder: Path) -> None:
        # Built in a child process so the test process itself stays free of torch where it matters.
        subprocess.run([sys.executable, "-m", "trainer.tools.tiny", str(folder / f"tiny-{arch}"), "--arch", arch],
                       check=True, stdin=subprocess.DEVNULL, capture_output=True)
    return once(tmp_path_factory, f"tiny-{arch}", build) / f"tiny-{arch}"


@pytest.fixture(scope="session")
def tiny_sd15(tmp_path_factory) -> Path:
    """A tiny SD1.5-architecture diffusers folder (read-only: copy it before changing it)."""
    return _tiny(tmp_path_factory, "sd15")


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory) -> Path:
    """A tiny SDXL-architecture diffusers folder (read-only: copy it before changing it)."""
    return _tiny(tmp_path_factory, "sdxl")


@pytest.fixture
def dataset(tmp_path) -> Path:
    """The demo's twelve captioned mascot images in a fresh folder."""
    from loratui.demo import write_dataset

    folder = tmp_path / "dataset"
    write_dataset(folder)
    return folder


def write_config(folder: Path, base_model: Path, images: Path, **sections) -> Path:
    """Write a small, fast config (128 px, a handful of steps) with per-section overrides."""
    from trainer.contract.config.schema import from_dict, validate
    from trainer.contract.config.toml_io import dumps

    base = {
        "model": {"base": str(base_model)},
        "dataset": {"path": str(images), "trigger_word": "zkmascot", "repeats": 1, "resolution": 128},
        "optimizer": {"name": "adamw", "unet_lr": 1e-3, "text_encoder_lr": 1e-3},
        "scheduler": {"name": "constant"},
        "training": {"epochs": 1, "batch_size": 2},
        "output": {"name": "test", "dir": str(folder / "runs"), "save_every_n_epochs": 0},
    }
    for section, values in sections.items():
        base.setdefault(section, {}).update(values)
    config, problems = from_dict(base)
    problems += validate(config)
    assert not problems, problems
    path = folder / "config.toml"
    path.write_text(dumps(config))
    return path


@pytest.fixture
def make_config(tmp_path):
    """Factory: ``make_config(model, images_folder, training={"epochs": 2})`` → config path."""
    def make(base_model: Path, images: Path, **sections) -> Path:
        return write_config(tmp_path, base_model, images, **sections)
    return make


@pytest.fixture
def copy_model(tmp_path):
    """Factory: a private, writable copy of a tiny model folder."""
    def copy(source: Path) -> Path:
        target = tmp_path / ("model-" + source.name)
        shutil.copytree(source, target)
        return target
    return copy
