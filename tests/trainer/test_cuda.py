"""Mixed precision and the other CUDA-only paths: skipped on machines without CUDA (bench/gpu_acceptance.py runs them).

The CPU suite trains in fp32 and never reaches what only a GPU does: autocast to bf16/fp16, the
fp16 loss scaler, bitsandbytes' CUDA kernels, checkpointing under autocast, sampling at SDXL's
size. Each test here trains a tiny model in a child process as the app does and checks what a
user would see go wrong: weights that never moved, a black sample, a resume that forgets its
loss scale, an out-of-memory that ends in a traceback.
"""

from __future__ import annotations

import math
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from tests.trainer.helpers import (assert_every_adapter_trained, finish_trainer, new_run, of_type, start_trainer,
                                   train, wait_for)
from trainer.contract.errors import OOM_ADVICE
from trainer.contract.events import read_events
from trainer.sampling import STRENGTHS

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

# Rank 128 makes every LoRA tensor of both tiny models reach bitsandbytes' min_8bit_size (4096
# elements); at the default rank 8 nearly all are smaller, and AdamW8bit keeps 32-bit moments for those.
WIDE = {"dim": 128, "alpha": 64.0}


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_mixed_precision_trains_and_saves_fp32_trained_weights(arch, precision, tiny_sd15, tiny_sdxl, dataset,
                                                               make_config):
    model = tiny_sd15 if arch == "sd15" else tiny_sdxl
    run, events, status = train(make_config(model, dataset, training={"mixed_precision": precision, "epochs": 2}))
    assert status == 0, run.log.read_text()[-2000:]
    start = of_type(events, "start")[0]
    assert start["precision"] == precision and start["device"] != "cpu"
    steps = of_type(events, "step")
    assert all(s["loss"] is not None for s in steps)
    assert steps[-1]["vram_peak_gib"] > 0 and steps[-1]["vram_total_gib"] > 1
    assert_every_adapter_trained(load_file(run.final_lora("test")), model, arch, text_encoder=True)


# Helpers ----------------------------------------------------------------------------------------------

def _log(run) -> str:
    return run.log.read_text(errors="replace")[-3000:]


def _started_on_gpu(events: list[dict], precision: str) -> dict:
    """The run's (first) start event, after checking it really computed on the GPU in ``precision``."""
    start = of_type(events, "start")[0]
    assert start["device"] != "cpu" and start["precision"] == precision, start
    return start


def _all_losses_finite(steps: list[dict]) -> bool:
    # The event writer turns a NaN or infinite loss into null.
    return bool(steps) and all(s["loss"] is not None and math.isfinite(s["loss"]) for s in steps)


def _tensors(value):
    """Every tensor inside a nested optimizer state (bitsandbytes nests its quantized state in a dict)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


# 8-bit AdamW, the default optimizer ------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_adamw8bit_in_bf16_trains_every_unet_lora(arch, tiny_sd15, tiny_sdxl, dataset, make_config):
    # The optimizer most users train with runs bitsandbytes' CUDA kernels, which no CPU test reaches.
    model = tiny_sd15 if arch == "sd15" else tiny_sdxl
    config = make_config(model, dataset, network=WIDE, optimizer={"name": "adamw8bit"},
                         training={"mixed_precision": "bf16", "epochs": 2}, output={"save_every_n_epochs": 1})
    run, events, status = train(config)
    assert status == 0, _log(run)
    _started_on_gpu(events, "bf16")
    assert events[-1]["type"] == "done"
    assert _all_losses_finite(of_type(events, "step"))
    assert_every_adapter_trained(load_file(run.final_lora("test")), model, arch, text_encoder=False)
    # The state saved with the epoch-1 checkpoint: every weight's moments really are 8-bit.
    state = torch.load(run.resume_state, map_location="cpu", weights_only=True)
    moments = list(state["optimizer"]["state"].values())
    assert moments and all(any(t.dtype == torch.uint8 for t in _tensors(m)) for m in moments)


def test_fused_backward_pass_with_adamw8bit_in_bf16_trains_every_lora(tiny_sd15, dataset, make_config):
    # bitsandbytes stepped one weight at a time from gradient hooks, inside the backward pass.
    config = make_config(tiny_sd15, dataset, network=WIDE, optimizer={"name": "adamw8bit"},
                         training={"mixed_precision": "bf16", "batch_size": 1, "fused_backward_pass": True})
    run, events, status = train(config)
    assert status == 0, _log(run)
    start = _started_on_gpu(events, "bf16")
    steps = of_type(events, "step")
    assert len(steps) == start["total_steps"] == 12 and _all_losses_finite(steps)
    assert events[-1]["type"] == "done"
    assert_every_adapter_trained(load_file(run.final_lora("test")), tiny_sd15, "sd15", text_encoder=True)


# Gradient checkpointing with the text encoder trained ----------------------------------------------

@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_gradient_checkpointing_still_trains_the_text_encoder(arch, tiny_sd15, tiny_sdxl, dataset, make_config):
    # Reentrant checkpointing behind frozen embeddings silently gives text-encoder LoRAs no gradient
    # (stack notes, 2026-12-04); the loss still falls, so only the weights show it.
    model = tiny_sd15 if arch == "sd15" else tiny_sdxl
    config = make_config(model, dataset, optimizer={"text_encoder_lr": 1e-3},
                         training={"mixed_precision": "bf16", "gradient_checkpointing": True, "epochs": 2})
    run, events, status = train(config)
    assert status == 0, _log(run)
    start = _started_on_gpu(events, "bf16")
    assert start["text_encoder_outputs_cached"] is False
    assert events[-1]["type"] == "done"
    assert_every_adapter_trained(load_file(run.final_lora("test")), model, arch, text_encoder=True)


# Samples at SDXL's own size ----------------------------------------------------------------------------

def test_sdxl_samples_at_1024_are_real_images(tiny_sdxl, dataset, make_config):
    # A NaN anywhere on the way (the bf16 UNet over 128×128 latents, the latents' dtype, the decode;
    # the real SDXL VAE overflows in fp16 at this size) ends as a black or flat PNG, not as an error.
    prompts = ["zkmascot, red scarf"]
    config = make_config(tiny_sdxl, dataset, dataset={"resolution": 1024},
                         training={"mixed_precision": "bf16", "epochs": 1, "batch_size": 4},
                         output={"sample_every_n_epochs": 1, "sample_steps": 4, "sample_prompts": prompts})
    run, events, status = train(config)
    assert status == 0, _log(run)
    assert _started_on_gpu(events, "bf16")["resolution"] == 1024
    assert [e for e in of_type(events, "warning") if e["code"] == "sample_failed"] == []
    samples = of_type(events, "sample")
    assert [(e["prompt"], e["strength"]) for e in samples] == [(p, s) for p in prompts for s in STRENGTHS]
    for event in samples:
        with Image.open(event["path"]) as image:
            assert image.format == "PNG" and image.size == (1024, 1024)
            pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
        assert pixels.std() > 2.0, f"{event['path']} is one flat colour"
        assert pixels.mean() > 2.0, f"{event['path']} is black"
    assert events[-1]["type"] == "done"


# fp16: stop, resume, and the loss scaler ------------------------------------------------------------

def test_an_fp16_run_stopped_and_resumed_keeps_its_loss_scaler(tiny_sd15, dataset, make_config):
    # 3 steps an epoch, 120 in all: long enough that the stop lands early; a checkpoint (with its
    # resume state) every 10 epochs, so the resumed run saves its scaler again before it ends.
    config = make_config(tiny_sd15, dataset, training={"mixed_precision": "fp16", "epochs": 40, "batch_size": 4},
                         output={"save_every_n_epochs": 10})
    run = new_run(config)
    process = start_trainer(run)
    try:
        assert wait_for(lambda: len(of_type(read_events(run.events), "step")) >= 3, timeout=180, interval=0.02), \
            _log(run)
        assert process.poll() is None, "the run ended before it could be stopped"
        process.send_signal(signal.SIGTERM)
        assert finish_trainer(process, timeout=120) == 0, _log(run)
    finally:
        if process.poll() is None:  # a failed wait above: end the trainer, keep that failure's message
            process.kill()
            process.wait()
    events = read_events(run.events)
    _started_on_gpu(events, "fp16")
    stopped = events[-1]
    assert stopped["type"] == "stopped" and stopped["reason"] == "SIGTERM", stopped
    total = stopped["total_steps"]
    assert stopped["step"] == of_type(events, "step")[-1]["step"] < total

    # The state saved with the stop holds the GradScaler's state, with a usable scale.
    state = torch.load(run.resume_state, map_location="cpu", weights_only=True)
    assert state["progress"]["step"] == stopped["step"]
    scaler = state["scaler"]
    assert isinstance(scaler, dict) and {"scale", "_growth_tracker", "growth_interval"} <= set(scaler), scaler
    assert math.isfinite(scaler["scale"]) and scaler["scale"] > 0
    # A fresh scaler starts at 2**16 with a growth tracker of 0, as an undisturbed one likely still is
    # here: mark the saved one instead, so the resumed run can only carry the mark on if it loads it.
    assert scaler["growth_interval"] > 1000 + total
    marked = {**scaler, "scale": 1024.0, "_growth_tracker": 1000}
    torch.save({**state, "scaler": marked}, run.resume_state)

    before = len(events)
    assert finish_trainer(start_trainer(run, "--resume")) == 0, _log(run)
    events = read_events(run.events)
    resumed = events[before:]
    assert _started_on_gpu(resumed, "fp16")["resumed_from_step"] == stopped["step"]
    # One loss curve: every step exactly once, in order, across both processes.
    assert [s["step"] for s in of_type(events, "step")] == list(range(1, total + 1))
    assert resumed[-1]["type"] == "done" and resumed[-1]["step"] == total
    assert _all_losses_finite(of_type(events, "step"))

    # The resumed run's last epoch checkpoint saved the scaler it trained with: the marked one, moved
    # on by the steps since. No growth is possible within growth_interval steps, and each overflow
    # (possible in fp16 whatever the GPU) halves the scale and restarts the tracker.
    epoch_checkpoints = [e for e in of_type(resumed, "checkpoint") if e["reason"] == "epoch"]
    assert epoch_checkpoints, "the resumed run saved no checkpoint: the stop came too late to test the scaler"
    saved = epoch_checkpoints[-1]
    state = torch.load(run.resume_state, map_location="cpu", weights_only=True)
    assert state["progress"]["step"] == saved["step"] > stopped["step"]
    after = state["scaler"]
    assert 0 < after["scale"] <= 1024.0, after
    if after["scale"] == 1024.0:  # no overflow since the resume: the tracker went on counting from the mark
        assert after["_growth_tracker"] == 1000 + saved["step"] - stopped["step"], after
    assert_every_adapter_trained(load_file(run.final_lora("test")), tiny_sd15, "sd15", text_encoder=True)


# Out of GPU memory ---------------------------------------------------------------------------------

def test_an_out_of_memory_on_cuda_is_one_clear_error(tiny_sd15, dataset, make_config):
    config = make_config(tiny_sd15, dataset, training={"mixed_precision": "bf16", "epochs": 2})
    run = new_run(config)
    status = finish_trainer(start_trainer(run, fault="oom@step:2"))
    events = read_events(run.events)
    assert status == 1, _log(run)
    _started_on_gpu(events, "bf16")
    assert [e["type"] for e in events if e["type"] in ("error", "stopped", "done")] == ["error"]
    error = events[-1]
    assert error["type"] == "error" and error["code"] == "oom", error
    assert error["message"].startswith("CUDA out of memory. Tried to allocate")
    assert error["advice"] == OOM_ADVICE
    # One line for the user; the traceback goes to trainer.log only.
    assert "\n" not in error["message"] and "Traceback" not in error["message"] and 'File "' not in error["message"]
    log = run.log.read_text(errors="replace")
    assert "Traceback" in log and "OutOfMemoryError" in log
    assert [s["step"] for s in of_type(events, "step")] == [1]
    assert not run.pid.exists()
    assert not Path(run.final_lora("test")).exists()
