"""Mixed precision on a GPU: skipped on machines without CUDA (bench/gpu_figures.py runs the same paths)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tests.trainer.helpers import of_type, train

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


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
    tensors = load_file(run.final_lora("test"))
    assert any(t.abs().max() > 0 for k, t in tensors.items() if k.endswith("lora_up.weight"))
