"""Real training runs on tiny SD1.5 and SDXL models, and the files they write.

Each run trains in a child process exactly as the app starts it; the LoRA it saves must load
into diffusers, change the pipeline's output, and match our own network's output.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from tests.trainer.helpers import TRAINED_SD15_SETTINGS, of_type, train

pytestmark = pytest.mark.slow


def _latents(pipe, prompt="zkmascot, red scarf"):
    generator = torch.Generator().manual_seed(0)
    return pipe(prompt, num_inference_steps=2, output_type="latent", generator=generator, height=64, width=64,
                guidance_scale=1.0).images


def _pipeline(model):
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(params=["sd15", "sdxl"])
def arch_model(request, tiny_sd15, tiny_sdxl):
    return request.param, (tiny_sd15 if request.param == "sd15" else tiny_sdxl)


@pytest.mark.parametrize("network", ["lora", "locon"])
def test_trained_lora_loads_in_diffusers_and_changes_the_output(arch_model, network, dataset, make_config, request):
    arch, model = arch_model
    if (arch, network) == ("sd15", "lora"):  # the shared run is this case, trained for two epochs
        shared = request.getfixturevalue("trained_sd15")
        run, events, status = shared.run, shared.events, shared.status
    else:
        run, events, status = train(make_config(model, dataset, optimizer=TRAINED_SD15_SETTINGS["optimizer"],
                                                network={**TRAINED_SD15_SETTINGS["network"], "type": network}))
    assert status == 0, run.log.read_text()[-3000:]

    # The promised step count is the performed one.
    (start,) = of_type(events, "start")
    steps = of_type(events, "step")
    assert start["total_steps"] == len(steps) == steps[-1]["step"] == of_type(events, "done")[0]["step"]
    assert start["arch"] == arch
    assert events[-1]["type"] == "done"

    lora = run.final_lora("test")
    tensors = load_file(lora)
    prefixes = {k.split("_")[1] for k in tensors}
    assert prefixes == {"unet", "te"} if arch == "sd15" else {"unet", "te1", "te2"}
    if arch == "sd15":
        assert any(k.startswith("lora_te_text_model_encoder_layers_0_self_attn_q_proj") for k in tensors)
        assert any(k.startswith("lora_unet_down_blocks_0_attentions_0_") for k in tensors)
    else:
        assert any(k.startswith("lora_unet_input_blocks_") for k in tensors)
        assert any(k.startswith("lora_te2_text_model_encoder_layers_") for k in tensors)
    assert all(k.endswith((".lora_down.weight", ".lora_up.weight", ".alpha")) for k in tensors)
    has_3x3 = any(t.ndim == 4 and t.shape[-1] == 3 for t in tensors.values())
    assert has_3x3 == (network == "locon")
    alphas = {float(t) for k, t in tensors.items() if k.endswith(".alpha")}
    assert alphas == {2.0}
    assert all(t.dtype == torch.float16 for t in tensors.values())

    with safe_open(str(lora), "pt") as handle:
        meta = handle.metadata()
    assert meta["ss_network_dim"] == "4" and meta["ss_network_alpha"] == "2.0"
    assert meta["ss_base_model_version"] == ("sd_v1" if arch == "sd15" else "sdxl_base_v1-0")
    assert meta["ss_steps"] == str(len(steps))
    assert "zkmascot" in json.loads(meta["ss_tag_frequency"])["dataset"]
    assert all(isinstance(v, str) for v in meta.values())

    # diffusers loads it, the output changes, and it equals our own network's output.
    pipe = _pipeline(model)
    base = _latents(pipe)
    pipe.load_lora_weights(str(lora.parent), weight_name=lora.name)  # the folder-and-name form every version takes
    loaded = _latents(pipe)
    assert (loaded - base).abs().max() > 1e-3

    from trainer.networks.lora import LoRANetwork, NetworkSpec

    ours = _pipeline(model)
    encoders = [ours.text_encoder] + ([ours.text_encoder_2] if arch == "sdxl" else [])
    spec = NetworkSpec(4, 2.0, 4 if network == "locon" else 0, 2.0)
    network_module = LoRANetwork(ours.unet, encoders, arch, spec, train_text_encoders=True)
    network_module.load_kohya_state_dict(tensors)
    network_module.attach()
    assert torch.allclose(_latents(ours), loaded, atol=1e-4)


def test_unet_only_when_text_encoder_lr_is_zero(tiny_sd15, dataset, make_config):
    config = make_config(tiny_sd15, dataset, optimizer={"text_encoder_lr": 0.0})
    run, events, status = train(config)
    assert status == 0
    assert all(k.startswith("lora_unet_") for k in load_file(run.final_lora("test")))


def test_checkpoints_every_n_epochs_keep_the_last_k(tiny_sd15, dataset, make_config):
    config = make_config(tiny_sd15, dataset, training={"epochs": 4, "batch_size": 4},
                         output={"save_every_n_epochs": 1, "keep_last_n_checkpoints": 2})
    run, events, status = train(config)
    assert status == 0
    assert [e["epoch"] for e in of_type(events, "checkpoint")] == [1, 2, 3]
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["test-e0002.safetensors", "test-e0003.safetensors"]
    assert [e["epoch"] for e in of_type(events, "epoch")] == [1, 2, 3, 4]


def test_repeat_folders_buckets_and_skipped_images_keep_the_count_exact(tiny_sd15, tmp_path, make_config):
    from PIL import Image

    data = tmp_path / "uneven"
    (data / "3_wide").mkdir(parents=True)
    for index in range(3):
        Image.new("RGB", (128, 128), (index * 40, 90, 200)).save(data / f"square{index}.png")
        Image.new("RGB", (256, 128), (200, index * 40, 90)).save(data / "3_wide" / f"wide{index}.jpg")
        (data / f"square{index}.txt").write_text("red, square")
    (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    Image.new("RGBA", (128, 128), (0, 0, 0, 0)).save(data / "transparent.png")
    Image.new("I;16", (128, 128), 30000).save(data / "sixteen_bit.png")
    config = make_config(tiny_sd15, data, training={"batch_size": 4, "epochs": 2})
    run, events, status = train(config)
    assert status == 0, run.log.read_text()[-2000:]
    (start,) = of_type(events, "start")
    assert start["images"] == 8
    # Squares: 3 + transparent + 16-bit = 5 samples → 2 batches; wide: 3 images × 3 repeats = 9 → 3 batches.
    assert start["batches_per_epoch"] == 5 and start["total_steps"] == 10 == len(of_type(events, "step"))
    warnings = of_type(events, "warning")
    assert [w["code"] for w in warnings] == ["image_skipped"] and "broken.png" in warnings[0]["message"]
