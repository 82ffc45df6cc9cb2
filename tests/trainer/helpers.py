"""Running the real trainer on tiny models, as the app does: a child process and a run folder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.trainer import warm_trainer
from trainer.contract import faults
from trainer.contract.config.toml_io import load_config
from trainer.contract.events import read_events
from trainer.contract.rundir import RunPaths, create_run_dir

TRAINED_SD15_SETTINGS = {
    "network": {"type": "lora", "dim": 4, "alpha": 2.0, "conv_dim": 4, "conv_alpha": 2.0},
    "optimizer": {"name": "adamw", "unet_lr": 5e-3, "text_encoder_lr": 5e-3},
    "training": {"epochs": 2},
    "output": {"save_every_n_epochs": 1},
}
"""The shared run's settings (over ``write_config``'s): a LoRA on both text encoder and UNet, two
epochs with a checkpoint after the first, so its files show what a first save and a last one carry."""


def new_run(config_path: Path, overrides=()) -> RunPaths:
    config, problems = load_config(config_path, overrides)
    assert not problems, problems
    return create_run_dir(config)


def train(config_path: Path, overrides=(), timeout: float = 240) -> tuple[RunPaths, list[dict], int]:
    """Train to the end; return the run, its events and the exit status.

    The trainer is a fork of a process that has imported torch already (``warm_trainer``), unless
    this test's environment changes what a fresh interpreter would import; then it is a fresh one.
    """
    run = new_run(config_path, overrides)
    if warm_trainer.usable():
        status = warm_trainer.run_trainer(run.root, run.log, timeout)
        return run, read_events(run.events), status
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


def start_trainer(run: RunPaths, *extra: str, fault: str | None = None) -> subprocess.Popen:
    """Start the trainer on ``run`` (output appended to its log), with ``fault`` armed or none at all."""
    env = {k: v for k, v in os.environ.items() if k != faults.ENV_VAR}
    # On a small shared machine OpenMP's spinning threads make each tiny step about ten times slower.
    env.setdefault("OMP_NUM_THREADS", "1")
    if fault:
        env[faults.ENV_VAR] = fault
    with open(run.log, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "trainer", str(run.root), *extra], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, env=env)


def finish_trainer(process: subprocess.Popen, timeout: float = 240) -> int:
    """Wait for a started trainer's exit status; one still running after ``timeout`` is killed."""
    try:
        return process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _ups(tensors: dict, prefix: str) -> dict:
    """The ``lora_up`` weights whose names start with ``prefix`` (``lora_unet_``, ``lora_te``)."""
    return {k: t for k, t in tensors.items() if k.startswith(prefix) and k.endswith(".lora_up.weight")}


def _untouched(ups: dict) -> list[str]:
    # Every lora_up starts at exactly zero, so one that is still all zero never received an update.
    return sorted(k for k, t in ups.items() if not t.float().abs().max() > 0)


def unreachable_prefix(model: Path, arch: str) -> str:
    """The name prefix of the adapters no gradient can reach ("" when there are none).

    SDXL conditions on the *penultimate* layer of its first text encoder (and takes its pooled
    embedding from the second one), so that encoder's last layer reaches nothing: its adapters,
    if the network has them, keep their zero start (sd-scripts saves them the same way).
    """
    if arch != "sdxl":
        return ""
    import json
    layers = json.loads((Path(model) / "text_encoder" / "config.json").read_text())["num_hidden_layers"]
    return f"lora_te1_text_model_encoder_layers_{layers - 1}_"


def assert_every_adapter_trained(tensors: dict, model: Path, arch: str, text_encoder: bool) -> None:
    """Every UNet ``lora_up`` moved, and with ``text_encoder`` every text-encoder one a gradient can reach,
    under each prefix the architecture has (``lora_te_``, or ``lora_te1_`` and ``lora_te2_``)."""
    import torch
    assert all(torch.isfinite(t.float()).all() for t in tensors.values())
    unet = _ups(tensors, "lora_unet_")
    assert unet and _untouched(unet) == []
    prefixes = ["lora_te_"] if arch == "sd15" else ["lora_te1_", "lora_te2_"]
    if not text_encoder:
        assert not _ups(tensors, "lora_te"), "the text encoder was not trained but the file holds its weights"
        return
    unreachable = unreachable_prefix(model, arch)
    for prefix in prefixes:
        te = _ups(tensors, prefix)
        assert te, f"the text encoder was trained but the file holds no {prefix} weights"
        never = {k for k in te if unreachable and k.startswith(unreachable)}
        # Those get no gradient by design: had they moved, the UNet would be conditioned on the wrong layer.
        assert _untouched({k: te[k] for k in never}) == sorted(never)
        assert _untouched({k: t for k, t in te.items() if k not in never}) == [], prefix
