"""Stopping a run on request, and the errors a user sees instead of tracebacks."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from tests.trainer.helpers import new_run, of_type, train, wait_for
from trainer.contract.events import read_events

pytestmark = pytest.mark.slow



@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_finishes_the_step_saves_and_exits_cleanly(signum, tiny_sd15, dataset, make_config):
    config = make_config(tiny_sd15, dataset, training={"epochs": 50, "batch_size": 1})
    run = new_run(config)
    with open(run.log, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "trainer", str(run.root)], stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: len(of_type(read_events(run.events), "step")) >= 3)
        # A second trainer on the same run folder is refused instead of interleaving events.
        second = subprocess.run([sys.executable, "-m", "trainer", str(run.root)], capture_output=True, text=True,
                                stdin=subprocess.DEVNULL, timeout=60)
        assert second.returncode == 2 and "already being trained" in second.stderr
        process.send_signal(signum)
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
    events = read_events(run.events)
    stopped = events[-1]
    assert stopped["type"] == "stopped" and stopped["reason"] == signal.Signals(signum).name
    steps = of_type(events, "step")
    assert stopped["step"] == steps[-1]["step"] < steps[-1]["total_steps"]
    saved = load_file(stopped["checkpoint"])
    assert any(k.startswith("lora_unet_") for k in saved)
    assert not run.pid.exists()


def test_a_diverging_run_stops_with_advice(tiny_sd15, dataset, make_config, copy_model):
    # Fault injection: a model whose output layer holds a NaN makes every loss NaN, as a
    # diverged run would. The trainer must stop within a few steps and say what to do.
    from safetensors.torch import save_file

    poisoned = copy_model(tiny_sd15)
    weights_file = poisoned / "unet" / "diffusion_pytorch_model.safetensors"
    weights = load_file(weights_file)
    weights["conv_out.bias"][0] = float("nan")
    save_file(weights, weights_file)
    config = make_config(poisoned, dataset, training={"epochs": 30, "batch_size": 1})
    run, events, status = train(config)
    assert status == 1
    error = events[-1]
    assert error["type"] == "error" and error["code"] == "nan"
    assert "learning rate" in error["advice"]
    steps = of_type(events, "step")
    assert 1 <= len(steps) <= 3 and all(step["loss"] is None for step in steps)


def test_an_unloadable_model_is_one_error_event(tmp_path, dataset, make_config, tiny_sd15, copy_model):
    broken = copy_model(tiny_sd15)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"garbage")
    config = make_config(broken, dataset)
    run, events, status = train(config)
    assert status == 1
    assert [e["type"] for e in events if e["type"] in ("error", "done", "stopped")] == ["error"]
    assert events[-1]["code"] == "model"
    assert str(broken) in events[-1]["message"]


def test_a_stop_while_images_are_encoded_ends_at_once_without_training(tiny_sd15, tmp_path, make_config):
    from PIL import Image

    data = tmp_path / "many"
    data.mkdir()
    for index in range(600):
        Image.new("RGB", (128, 128), (index % 256, 80, 160)).save(data / f"{index:04d}.png")
    run = new_run(make_config(tiny_sd15, data))
    with open(run.log, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "trainer", str(run.root)], stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: any(e.get("phase") == "caching" for e in read_events(run.events)))
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
    events = read_events(run.events)
    assert events[-1]["type"] == "stopped" and events[-1]["step"] == 0 and events[-1]["checkpoint"] is None
    assert of_type(events, "step") == [] and of_type(events, "start") == []
    caching = [e for e in events if e.get("phase") == "caching"]
    assert caching[-1]["current"] < 600
