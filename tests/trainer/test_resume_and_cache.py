"""Resuming a stopped run, and reusing encoded images across runs."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from tests.trainer.helpers import new_run, of_type, train
from trainer.contract.events import read_events
from trainer.contract.rundir import RunPaths

pytestmark = pytest.mark.slow


def _run_trainer(run, *extra, stop_after_step=None):
    with open(run.log, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "trainer", str(run.root), *extra], stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        if stop_after_step is not None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and len(of_type(read_events(run.events), "step")) < stop_after_step:
                time.sleep(0.05)
            process.send_signal(signal.SIGTERM)
        return process.wait(timeout=240)
    finally:
        process.kill()


def test_a_stopped_and_resumed_run_equals_an_uninterrupted_one(tiny_sd15, dataset, make_config):
    config = make_config(tiny_sd15, dataset, training={"epochs": 3, "batch_size": 2},
                         dataset={"flip": True, "caption_dropout": 0.2},
                         output={"save_every_n_epochs": 1})
    whole, whole_events, status = train(config)
    assert status == 0

    run = new_run(config)
    assert _run_trainer(run, stop_after_step=8) == 0
    stopped = read_events(run.events)[-1]
    assert stopped["type"] == "stopped" and stopped["step"] < 18
    assert _run_trainer(run, "--resume") == 0
    events = read_events(run.events)
    assert events[-1]["type"] == "done"
    # One events file, one loss curve: steps 1..N exactly once, the same losses as the whole run.
    steps = of_type(events, "step")
    assert [s["step"] for s in steps] == list(range(1, 19))
    assert [s["loss"] for s in steps] == pytest.approx([s["loss"] for s in of_type(whole_events, "step")], rel=1e-5)
    resumed_start = of_type(events, "start")[-1]
    assert resumed_start["resumed_from_step"] == stopped["step"]
    final, reference = load_file(run.final_lora("test")), load_file(whole.final_lora("test"))
    assert final.keys() == reference.keys()
    assert all(torch.equal(final[k], reference[k]) for k in final)


def test_resume_after_a_hard_kill_continues_from_the_last_checkpoint(tiny_sd15, dataset, make_config):
    config = make_config(tiny_sd15, dataset, training={"epochs": 4, "batch_size": 4}, output={"save_every_n_epochs": 1})
    run = new_run(config)
    with open(run.log, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "trainer", str(run.root)], stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not of_type(read_events(run.events), "checkpoint"):
        time.sleep(0.05)
    process.kill()  # no chance to save anything more
    process.wait()
    checkpoint_step = of_type(read_events(run.events), "checkpoint")[0]["step"]
    assert _run_trainer(run, "--resume") == 0
    events = read_events(run.events)
    assert events[-1]["type"] == "done" and events[-1]["step"] == 12
    resumed = events[[i for i, e in enumerate(events) if e["type"] == "start"][-1]:]
    assert of_type(resumed, "step")[0]["step"] == checkpoint_step + 1


def test_resume_is_refused_plainly_when_there_is_nothing_to_resume(tiny_sd15, dataset, make_config, trained_sd15,
                                                                     tmp_path):
    config = make_config(tiny_sd15, dataset)
    run = new_run(config)
    assert _run_trainer(run, "--resume") == 1
    error = read_events(run.events)[-1]
    assert error["type"] == "error" and error["code"] == "resume" and "no saved state" in error["message"]
    finished = RunPaths(tmp_path / trained_sd15.run.root.name)  # a copy: the shared run stays as it was
    shutil.copytree(trained_sd15.run.root, finished.root)
    assert _run_trainer(finished, "--resume") == 2
    assert "already finished" in read_events(finished.events)[-1]["message"]


def test_a_second_run_reuses_the_encoded_images(tiny_sd15, dataset, make_config, tmp_path):
    config = make_config(tiny_sd15, dataset, dataset={"cache_dir": str(tmp_path / "cache")})
    _, first, _ = train(config)
    _, second, _ = train(config)
    ready = [[e for e in events if e.get("message", "").startswith("Images ready")][0]["message"]
             for events in (first, second)]
    assert ready == ["Images ready: 12 encoded, 0 from the cache", "Images ready: 0 encoded, 12 from the cache"]
    # Cached latents are the ones a fresh encoding gives: the runs are identical.
    assert [s["loss"] for s in of_type(first, "step")] == [s["loss"] for s in of_type(second, "step")]
    # Another training size means other buckets: nothing stale is read.
    _, third, _ = train(config, ["dataset.resolution=64"])
    assert "12 encoded, 0 from the cache" in [e for e in third if e.get("message", "").startswith("Images ready")][0]["message"]


def test_frozen_text_encoders_with_fixed_captions_are_encoded_once(tiny_sdxl, dataset, make_config):
    config = make_config(tiny_sdxl, dataset, optimizer={"text_encoder_lr": 0.0},
                         dataset={"shuffle_captions": False, "caption_dropout": 0.5})
    run, events, status = train(config)
    assert status == 0, run.log.read_text()[-2000:]
    assert of_type(events, "start")[0]["text_encoder_outputs_cached"] is True
    shuffled, shuffled_events, _ = train(config, ["dataset.shuffle_captions=true"])
    assert of_type(shuffled_events, "start")[0]["text_encoder_outputs_cached"] is False
