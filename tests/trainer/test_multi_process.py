"""Training with several processes (``training.num_processes``), on a CPU with the gloo backend.

The run is started with the same command line the app uses, so this covers the launcher
(``accelerate launch``), the process group, the sharing of batches and rank 0 alone writing.
"""

from __future__ import annotations

import os
import subprocess

import pytest
import torch
from safetensors.torch import load_file

from loratui.runs.launch import trainer_command
from tests.trainer.helpers import new_run, of_type
from trainer.contract.events import read_events

pytestmark = pytest.mark.slow


def test_two_processes_train_one_lora(tiny_sd15, dataset, make_config):
    config = make_config(tiny_sd15, dataset, training={"num_processes": 2, "epochs": 2, "batch_size": 1},
                         optimizer={"name": "adamw", "unet_lr": 5e-3, "text_encoder_lr": 0.0},
                         output={"save_every_n_epochs": 1, "sample_every_n_epochs": 0})
    run = new_run(config)
    command = trainer_command(run)
    assert "trainer.launcher" in command and "--num_processes" in command
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(run.log, "wb") as log:
        status = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=run.root, env=env, timeout=400).returncode
    assert status == 0, run.log.read_text()[-4000:]
    events = read_events(run.events)

    # One process reported: one start, one done, and the promised steps are the performed ones.
    (start,) = of_type(events, "start")
    (done,) = of_type(events, "done")
    steps = of_type(events, "step")
    assert start["total_steps"] == len(steps) == done["step"] > 0
    assert [e["step"] for e in steps] == list(range(1, len(steps) + 1))
    # Each process trains on half of each epoch's batches.
    assert start["batches_per_epoch"] == start["samples_per_epoch"] // 2
    assert not of_type(events, "error")

    # Exactly one final LoRA (and one checkpoint per epoch but the last), with trained, non-zero weights.
    finals = sorted(run.root.glob("*.safetensors"))
    assert finals == [run.final_lora("test")], finals
    weights = load_file(str(finals[0]))
    assert weights and any(t.float().abs().sum() > 0 for t in weights.values())
    ups = [t for k, t in weights.items() if "lora_up" in k]
    assert ups and any(torch.count_nonzero(t) for t in ups)  # lora_up starts at zero: it was trained
    assert len(list(run.checkpoints.glob("*.safetensors"))) == 1
    assert not run.pid.exists()


def test_stopping_the_launcher_stops_every_process_with_a_checkpoint(tiny_sd15, dataset, make_config):
    import signal

    from tests.trainer.helpers import wait_for

    config = make_config(tiny_sd15, dataset, training={"num_processes": 2, "epochs": 50, "batch_size": 1},
                         optimizer={"name": "adamw", "unet_lr": 5e-3, "text_encoder_lr": 0.0})
    run = new_run(config)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(run.log, "wb") as log:
        process = subprocess.Popen(trainer_command(run), stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, cwd=run.root, env=env)
        try:
            assert wait_for(lambda: run.events.exists() and of_type(read_events(run.events), "step"), 300), \
                run.log.read_text()[-4000:]
            # The pid the run records is the launcher's: the process the app sends SIGTERM to.
            assert int(run.pid.read_text().split()[0]) == process.pid
            process.send_signal(signal.SIGTERM)
            status = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
    events = read_events(run.events)
    assert status == 0, run.log.read_text()[-4000:]
    (stopped,) = of_type(events, "stopped")
    assert stopped["checkpoint"] and os.path.exists(stopped["checkpoint"])
    assert run.resume_state.is_file()
    assert not of_type(events, "done") and not of_type(events, "error")
