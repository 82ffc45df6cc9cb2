"""``loratui resize`` on real LoRA/LoCon files of the tiny SD1.5 and SDXL models.

The files are built as the trainer builds and saves its networks (``build_network``, ``save_lora``
with ``training_metadata``), with weights chosen so the expected result is known:

- every module's update ΔW of rank 2 inside a rank-8 LoCon: resized to dim 2 it must be the same
  update, per module by the UIs' rule (alpha / rank), and the same model output through diffusers'
  ``load_lora_weights`` and the A1111 and ComfyUI merges (``tests/trainer/ui_merge.py``);
- random full-rank updates: ``--fro 0.99`` must keep, per module, the fewest directions that hold
  99 % of ΔW's Frobenius norm, counted here with a plain SVD of the whole ΔW.

The command runs as a user runs it (``resize_main``, which starts ``python -m trainer.resize``).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from loratui.cli.resize import resize_main  # noqa: E402
from tests.trainer.ui_merge import _by_layer, delta_weight, merge_file  # noqa: E402
from trainer.contract.config.schema import from_dict, validate  # noqa: E402
from trainer.contract.resize_plan import dim_for_size, lora_shapes, size_after  # noqa: E402

ALPHA, CONV_ALPHA = 3.0, 5.0
"""Odd alphas (scales 3/8 and 5/8), so a resize that lost the alpha/rank ratio would show."""


@functools.lru_cache(maxsize=2)
def _loaded(base: str, arch: str):
    from trainer.models import load_base_model
    return load_base_model(base, arch, torch.float32, torch.device("cpu"))


def _fresh(base, arch: str):
    """A tiny base model of its own (a copy: loading one from disk each time is what made this test slow)."""
    return copy.deepcopy(_loaded(str(base), arch))


def _save(tmp_path, base, arch: str, weights, precision: str, extra_meta=None):
    """A rank-8 LoCon on the tiny model with ``weights(network)`` applied, saved as the loop saves it."""
    from trainer.checkpoint import save_lora, training_metadata
    from trainer.networks import build_network

    config, problems = from_dict({
        "model": {"base": str(base)}, "dataset": {"path": str(tmp_path)},
        "network": {"type": "locon", "dim": 8, "alpha": ALPHA, "conv_dim": 8, "conv_alpha": CONV_ALPHA},
        "output": {"save_precision": precision}})
    assert not problems + validate(config)
    model = _fresh(base, arch)
    network = build_network(config.network, model.unet, model.text_encoders, arch, True)
    weights(network)
    metadata = training_metadata(config, arch, resolution=128, images=12, total_steps=1, batches_per_epoch=1,
                                 tag_frequency={}, started_at=0.0, session_id="1")
    metadata.update(extra_meta or {})
    return save_lora(tmp_path / "big.safetensors", network, metadata, epoch=1, step=1, precision=precision)


def _rank_two(network) -> None:
    """Every module's ΔW of rank 2: ``lora_up`` is (out × 2)(2 × 8), ``lora_down`` random."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for lora in network.all_loras():
            up, down = lora.lora_up.weight, lora.lora_down.weight
            inner = torch.randn(up.shape[0], 2, generator=generator) @ torch.randn(2, up.shape[1], generator=generator)
            up.copy_(0.05 * inner.reshape(up.shape))
            down.copy_(0.3 * torch.randn(down.shape, generator=generator))


def _full_rank(network) -> None:
    """Full-rank updates whose singular values fall off (as trained ones do), so a norm share picks varied ranks."""
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for lora in network.all_loras():
            up, down = lora.lora_up.weight, lora.lora_down.weight
            falloff = 0.6 ** torch.arange(down.shape[0], dtype=torch.float32)
            up.copy_(0.2 * torch.randn(up.shape, generator=generator))
            down.copy_(0.2 * torch.randn(down.shape, generator=generator) * falloff.reshape(-1, *[1] * (down.dim() - 1)))


def _deltas(tensors: dict) -> dict:
    """Each module's ΔW as A1111 and ComfyUI rebuild it (alpha / rank from ``lora_down``), as a matrix, in fp64."""
    result = {}
    for name, parts in _by_layer(tensors).items():
        parts = {k: v.double() for k, v in parts.items()}
        up = parts["lora_up.weight"]
        result[name] = delta_weight(parts, torch.Size([up.shape[0], parts["lora_down.weight"][0].numel()]))
    return result


def _resize(path, out, *flags) -> dict:
    code = resize_main([str(path), "--out", str(out), "--format", "json", *flags])
    assert code == 0
    return out


def _outputs(model, arch: str) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    config = model.unet.config
    latents = torch.randn(1, 4, 8, 8, generator=generator)
    context = torch.randn(1, 77, config.cross_attention_dim, generator=generator)
    added = None
    if arch == "sdxl":
        pooled = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
        added = {"text_embeds": torch.randn(1, pooled, generator=generator),
                 "time_ids": torch.tensor([[64., 64, 0, 0, 64, 64]])}
    ids = torch.randint(0, 500, (1, 77), generator=generator)
    with torch.no_grad():
        unet = model.unet(latents, 500, encoder_hidden_states=context, added_cond_kwargs=added).sample
        return torch.cat([unet.flatten()] + [encoder(ids)[0].flatten() for encoder in model.text_encoders])


def _pipeline_latents(base, loras) -> list:
    """The latents of a tiny pipeline without a LoRA, then with each of ``loras`` loaded by diffusers."""
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(base)
    pipe.set_progress_bar_config(disable=True)
    results = []
    for lora in [None, *loras]:
        if lora is not None:
            pipe.unload_lora_weights()
            pipe.load_lora_weights(str(lora.parent), weight_name=lora.name)
        results.append(pipe("zkmascot, red scarf", num_inference_steps=2, output_type="latent", height=64, width=64,
                            guidance_scale=1.0, generator=torch.Generator().manual_seed(0)).images)
    return results


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_a_rank_two_locon_resized_to_dim_two_applies_the_same_update_everywhere(request, tmp_path, arch):
    base = request.getfixturevalue(f"tiny_{arch}")
    stale = {"sshs_model_hash": "0" * 64, "sshs_legacy_hash": "00000000"}
    source = _save(tmp_path, base, arch, _rank_two, "fp32", stale)
    out = _resize(source, tmp_path / "small.safetensors", "--dim", "2")
    old, new = load_file(str(source)), load_file(str(out))
    assert set(old) == set(new)

    # Per module, the update the UIs apply is the same to float32 precision, at rank 2 with alpha/rank kept.
    old_deltas, new_deltas = _deltas(old), _deltas(new)
    for name, before in old_deltas.items():
        after = new_deltas[name]
        assert (after - before).norm() <= 1e-5 * before.norm(), name
        assert new[f"{name}.lora_down.weight"].shape[0] == 2
        conv = new[f"{name}.lora_down.weight"].dim() == 4 and new[f"{name}.lora_down.weight"].shape[-1] == 3
        assert float(new[f"{name}.alpha"]) == pytest.approx((CONV_ALPHA if conv else ALPHA) / 8 * 2)
    assert any(t.dim() == 4 and t.shape[-1] == 3 for t in new.values())  # the 3×3 LoCon convs were resized too

    # The metadata: new dim and alpha, the resize recorded as sd-scripts records it, the rest kept, hashes redone.
    with safe_open(str(source), "pt") as handle:
        old_meta = handle.metadata()
    with safe_open(str(out), "pt") as handle:
        meta = handle.metadata()
    assert meta["ss_network_dim"] == "2" and meta["ss_network_alpha"] == str(ALPHA / 4)
    assert json.loads(meta["ss_network_args"]) == {"conv_dim": "2", "conv_alpha": str(CONV_ALPHA / 4)}
    assert meta["ss_training_comment"] == f"dimension is resized from 8 to 2; {old_meta['ss_training_comment']}"
    changed = {"ss_network_dim", "ss_network_alpha", "ss_network_args", "ss_training_comment", "sshs_model_hash",
               "sshs_legacy_hash"}
    assert {k: v for k, v in meta.items() if k not in changed} == {k: v for k, v in old_meta.items()
                                                                   if k not in changed}
    raw = out.read_bytes()
    assert meta["sshs_model_hash"] == hashlib.sha256(raw[8 + int.from_bytes(raw[:8], "little"):]).hexdigest()
    assert meta["sshs_legacy_hash"] != stale["sshs_legacy_hash"]

    # A1111's and ComfyUI's merges give the model the same output with either file, and a changed one.
    plain = _outputs(_fresh(base, arch), arch)
    for ui in ("a1111", "comfyui"):
        outputs = []
        for tensors in (old, new):
            model = _fresh(base, arch)
            merge_file(model, tensors, arch, ui)
            outputs.append(_outputs(model, arch))
        scale = plain.abs().max()
        assert (outputs[0] - plain).abs().max() > 1e-3 * scale
        assert torch.allclose(outputs[0], outputs[1], atol=1e-5 * scale, rtol=1e-5), ui

    # diffusers loads the resized file and generates what the original gives.
    plain, with_old, with_new = _pipeline_latents(base, [source, out])
    assert (with_old - plain).abs().max() > 1e-3
    assert torch.allclose(with_old, with_new, atol=1e-4)


def test_fro_keeps_the_fewest_directions_that_hold_the_share_of_each_modules_norm(request, tmp_path):
    base = request.getfixturevalue("tiny_sd15")
    source = _save(tmp_path, base, "sd15", _full_rank, "fp16")
    out = _resize(source, tmp_path / "fro.safetensors", "--fro", "0.99")
    old, new = _deltas(load_file(str(source))), _deltas(load_file(str(out)))
    tensors = load_file(str(out))
    ranks = set()
    for name, before in old.items():
        singular = torch.linalg.svdvals(before)  # the whole ΔW, decomposed plainly
        share = torch.sqrt(torch.cumsum(singular ** 2, 0) / (singular ** 2).sum())
        expected = int((share < 0.99).sum()) + 1
        rank = tensors[f"{name}.lora_down.weight"].shape[0]
        ranks.add(rank)
        assert rank == min(expected, 8), name
        after = new[name]
        # The kept norm is at least 99 %; what is lost is at most √(1 − 0.99²), fp16 rounding aside.
        assert after.norm() >= (0.99 - 2e-3) * before.norm(), name
        assert (after - before).norm() <= (math.sqrt(1 - 0.99 ** 2) + 2e-3) * before.norm(), name
    assert len(ranks) > 1 and max(ranks) < 8  # per-module ranks, below the original
    with safe_open(str(out), "pt") as handle:
        meta = handle.metadata()
    assert meta["ss_network_dim"] == meta["ss_network_alpha"] == "Dynamic"
    assert meta["ss_training_comment"].startswith("Dynamic resize with sv_fro: 0.99 from 8")


def test_the_size_planned_from_the_shapes_is_the_size_written(request, tmp_path):
    """The inspector's dim comes from ``dim_for_size``; the file it predicts is the file resize writes."""
    base = request.getfixturevalue("tiny_sdxl")
    source = _save(tmp_path, base, "sdxl", _full_rank, "fp16")
    with safe_open(str(source), "pt") as handle:
        sizes = {"F16": 2, "F32": 4}
        shapes = {k: (tuple(handle.get_slice(k).get_shape()), sizes[handle.get_slice(k).get_dtype()])
                  for k in handle.keys()}
    found = lora_shapes(source, shapes)
    total = source.stat().st_size
    high = total // 2
    dim = dim_for_size(found, total, 0, high)
    assert dim is not None and 1 <= dim < 8
    assert size_after(found, total, dim) <= high < size_after(found, total, dim + 1)
    out = _resize(source, tmp_path / "half.safetensors", "--dim", str(dim))
    assert abs(out.stat().st_size - size_after(found, total, dim)) <= 1000  # only the header's text differs


def test_an_alpha_the_file_dtype_cannot_hold_is_folded_into_the_factors(tmp_path):
    """fp16 cannot hold 2/3: the factors carry the rounding, so the applied update stays exact."""
    generator = torch.Generator().manual_seed(0)
    up = torch.randn(40, 2, generator=generator) @ torch.randn(2, 3, generator=generator)
    tensors = {"lora_unet_x.lora_up.weight": up, "lora_unet_x.lora_down.weight": torch.randn(3, 24, generator=generator),
               "lora_unet_x.alpha": torch.tensor(1.0, dtype=torch.float16)}
    save_file(tensors, str(tmp_path / "odd.safetensors"))
    out = _resize(tmp_path / "odd.safetensors", tmp_path / "odd2.safetensors", "--dim", "2")
    new = load_file(str(out))
    assert float(new["lora_unet_x.alpha"]) != 2 / 3  # rounded by fp16 …
    before, after = _deltas(tensors)["lora_unet_x"], _deltas(new)["lora_unet_x"]
    assert (after - before).norm() <= 1e-6 * before.norm()  # … and the update is exact all the same


def test_the_resize_process_refuses_on_its_own_as_the_command_does(tmp_path):
    """Run directly (``python -m trainer.resize``), it checks the file too: a LoHa is refused with exit status 2."""
    loha = {f"lora_unet_x.{k}": torch.ones(4, 8) for k in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")}
    save_file(loha, str(tmp_path / "loha.safetensors"))
    done = subprocess.run([sys.executable, "-m", "trainer.resize", str(tmp_path / "loha.safetensors"), "--dim", "2",
                           "--out", str(tmp_path / "x.safetensors")], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "LoHa" in done.stderr and "LoRA and LoCon only" in done.stderr
    assert not (tmp_path / "x.safetensors").exists()


def test_conv_dim_gives_the_3x3_layers_their_own_rank(tmp_path):
    """``--dim 3 --conv-dim 1``: linear layers at 3, the LoCon's 3×3 convolution at 1, each the best cut of its ΔW."""
    generator = torch.Generator().manual_seed(1)
    tensors = {"lora_unet_a.lora_down.weight": torch.randn(4, 24, generator=generator),
               "lora_unet_a.lora_up.weight": torch.randn(16, 4, generator=generator),
               "lora_unet_a.alpha": torch.tensor(2.0),
               "lora_unet_c.lora_down.weight": torch.randn(4, 8, 3, 3, generator=generator),
               "lora_unet_c.lora_up.weight": torch.randn(16, 4, 1, 1, generator=generator),
               "lora_unet_c.alpha": torch.tensor(2.0)}
    save_file(tensors, str(tmp_path / "locon.safetensors"), metadata={
        "ss_network_dim": "4", "ss_network_alpha": "2.0", "ss_network_args": json.dumps({"conv_dim": "4",
                                                                                         "conv_alpha": "2.0"})})
    out = _resize(tmp_path / "locon.safetensors", tmp_path / "cut.safetensors", "--dim", "3", "--conv-dim", "1")
    new = load_file(str(out))
    assert new["lora_unet_a.lora_down.weight"].shape == (3, 24)
    assert new["lora_unet_c.lora_down.weight"].shape == (1, 8, 3, 3)
    assert new["lora_unet_c.lora_up.weight"].shape == (16, 1, 1, 1)
    old_deltas, new_deltas = _deltas(tensors), _deltas(new)
    for name, keep in (("lora_unet_a", 3), ("lora_unet_c", 1)):
        singular = torch.linalg.svdvals(old_deltas[name])
        # Eckart–Young: the best rank-k cut loses exactly the norm of the singular values left out.
        lost = (new_deltas[name] - old_deltas[name]).norm()
        assert lost == pytest.approx(float(singular[keep:].norm()), rel=1e-5), name
    with safe_open(str(out), "pt") as handle:
        meta = handle.metadata()
    assert meta["ss_network_dim"] == "3" and meta["ss_network_alpha"] == "1.5"
    assert json.loads(meta["ss_network_args"]) == {"conv_dim": "1", "conv_alpha": "0.5"}
    assert meta["ss_training_comment"] == "dimension is resized from 4 to 3 (conv: 1)"
