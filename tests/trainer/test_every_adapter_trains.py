"""Every adapter the file holds was trained: UNet and each text encoder, with and without gradient checkpointing.

A run whose text-encoder adapters never get a gradient still finishes, its loss still falls (the
UNet learns), and its file looks like any other, full of zeros where the text encoder's update
should be. transformers 4.x's reentrant checkpointing did exactly that (0 of 24 text-encoder
LoRA tensors moved on a tiny CLIP). Every ``lora_up`` starts at zero, so one that is non-zero
after training got an update; this checks every one of them, under every prefix the
architecture has (``lora_unet_``, ``lora_te_`` or ``lora_te1_``/``lora_te2_``).
"""

from __future__ import annotations

import pytest
from safetensors.torch import load_file

from tests.trainer.helpers import TRAINED_SD15_SETTINGS, assert_every_adapter_trained, train

CASES = [("sd15", False), ("sd15", True), ("sdxl", False), ("sdxl", True)]


@pytest.mark.parametrize("arch,checkpointing", CASES,
                         ids=[f"{a}-{'checkpointing' if c else 'plain'}" for a, c in CASES])
def test_every_lora_up_of_every_prefix_is_trained(request, dataset, make_config, arch, checkpointing):
    model = request.getfixturevalue(f"tiny_{arch}")
    if (arch, checkpointing) == ("sd15", False):  # the shared run is this case
        shared = request.getfixturevalue("trained_sd15")
        run, status = shared.run, shared.status
    else:
        run, _, status = train(make_config(model, dataset, optimizer=TRAINED_SD15_SETTINGS["optimizer"],
                                           training={"gradient_checkpointing": checkpointing}))
    assert status == 0, run.log.read_text()[-3000:]
    assert_every_adapter_trained(load_file(run.final_lora("test")), model, arch, text_encoder=True)


def test_with_no_text_encoder_rate_the_file_holds_only_unet_adapters(tiny_sdxl, dataset, make_config):
    run, _, status = train(make_config(tiny_sdxl, dataset, optimizer={"text_encoder_lr": 0},
                                       training={"gradient_checkpointing": True}))
    assert status == 0, run.log.read_text()[-3000:]
    assert_every_adapter_trained(load_file(run.final_lora("test")), tiny_sdxl, "sdxl", text_encoder=False)
