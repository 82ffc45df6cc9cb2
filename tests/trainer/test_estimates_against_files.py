"""The app's estimates against the real thing: LoRA files the trainer saves for the full-size architectures.

The base models are built on the meta device (real shapes, no storage); the LoRA layers on them
are ordinary CPU tensors, saved by ``trainer.checkpoint.save_lora`` exactly as a run saves them.
"""

from __future__ import annotations

import json
import random
import struct
import time
from importlib import resources

import pytest

from loratui.estimates import load_tables, lora_file_size, lora_parameter_tensors, metadata_bytes
from trainer.contract.captions import tag_frequency
from trainer.checkpoint import new_session_id, save_lora, training_metadata
from trainer.contract.config.schema import from_dict
from trainer.networks.lora import LoRANetwork, NetworkSpec
from trainer.tools.shape_tables import (ACTIVATION_POINTS, architecture_table, meta_models, measure_unet_step,
                                  unet_step_plan)

TAGS = ["1girl", "solo", "long hair", "looking at viewer", "smile", "blue eyes", "blonde hair", "short hair",
        "open mouth", "simple background", "white background", "shirt", "long sleeves", "holding", "dress",
        "standing", "full body", "upper body", "closed mouth", "jacket", "hair ornament", "outdoors", "sky",
        "day", "cloud", "red scarf", "black thighhighs", "pleated skirt", "school uniform", "hair between eyes",
        "bangs", "brown hair", "twintails", "ponytail", "medium breasts", "collarbone", "frills", "hair ribbon",
        "sitting", "from side", "profile", "indoors", "window", "sunlight", "blush", "teeth", "hand up",
        "arms behind back", "night", "star (symbol)", "flower", "cherry blossoms", "petals", "tree", "grass"]


@pytest.fixture(scope="module")
def models():
    return {arch: meta_models(arch) for arch in ("sd15", "sdxl")}


def _captions(count: int = 25) -> list[str]:
    # A tagged character set: the trigger word, then 12-24 tags from a booru-style pool.
    rng = random.Random(7)
    return [", ".join(["mychar"] + rng.sample(TAGS, rng.randint(12, 24))) for _ in range(count)]


def _metadata(arch: str, network_type: str, dim: int, train_te: bool) -> dict[str, str]:
    config, problems = from_dict({
        "model": {"base": "/workspace/models/illustriousXL_v01.safetensors"},
        "dataset": {"path": "/workspace/data/10_mychar", "trigger_word": "mychar"},
        "network": {"type": network_type, "dim": dim, "alpha": dim / 2, "conv_dim": dim, "conv_alpha": dim / 2},
        "optimizer": {"text_encoder_lr": 1e-4 if train_te else 0.0},
        "output": {"name": "mychar_v1"}})
    assert not problems
    return training_metadata(config, arch, resolution=1024 if arch == "sdxl" else 768, images=25, total_steps=630,
                             batches_per_epoch=63, tag_frequency=tag_frequency(_captions()),
                             started_at=time.time(), session_id=new_session_id())


def _save(tmp_path, models, arch, network_type, dim, train_te, precision):
    model = models[arch]
    spec = NetworkSpec(dim, dim / 2, dim if network_type == "locon" else 0, dim / 2)
    network = LoRANetwork(model.unet, model.text_encoders, arch, spec, train_te)
    metadata = _metadata(arch, network_type, dim, train_te)
    path = save_lora(tmp_path / "lora.safetensors", network, metadata, epoch=10, step=630, precision=precision)
    return network, path


def _header_metadata_bytes(path) -> int:
    """The serialized size of the file's ``__metadata__`` object, as it sits in the header."""
    with open(path, "rb") as handle:
        length = struct.unpack("<Q", handle.read(8))[0]
        header = json.loads(handle.read(length))
    return len(json.dumps(header["__metadata__"], separators=(",", ":"), ensure_ascii=False).encode())


CASES = [(arch, network_type, dim, train_te, "fp16") for arch in ("sd15", "sdxl") for network_type in ("lora", "locon")
         for dim in (8, 32) for train_te in (False, True)]
CASES += [("sd15", "lora", 4, True, "fp32"), ("sdxl", "lora", 4, False, "fp32"), ("sdxl", "locon", 8, True, "fp32")]


@pytest.mark.parametrize("arch,network_type,dim,train_te,precision", CASES)
def test_file_size_estimate_is_within_two_percent_of_the_saved_file(tmp_path, models, arch, network_type, dim,
                                                                   train_te, precision):
    network, path = _save(tmp_path, models, arch, network_type, dim, train_te, precision)
    actual = path.stat().st_size
    estimate = lora_file_size(arch, network_type, dim, dim / 2, dim, dim / 2, train_te, precision)
    assert abs(estimate - actual) / actual < 0.02, (estimate, actual)
    # With the metadata's real size the rebuilt header is exact, so the rest is arithmetic.
    exact = lora_file_size(arch, network_type, dim, dim / 2, dim, dim / 2, train_te, precision,
                           metadata_bytes=_header_metadata_bytes(path))
    assert exact == actual
    assert sum(lora_parameter_tensors(arch, network_type, dim, dim, train_te)) == \
        sum(p.numel() for p in network.parameters())


def test_metadata_size_from_the_tag_list_is_close_to_the_real_one(tmp_path, models):
    _, path = _save(tmp_path, models, "sdxl", "lora", 8, False, "fp16")
    predicted = metadata_bytes(tag_frequency(_captions()), dataset_name="10_mychar")
    assert abs(predicted - _header_metadata_bytes(path)) < 200


def test_the_committed_layer_tables_match_the_architectures_now():
    # Regenerating the activation replays takes minutes; the layer tables take a second and must not drift.
    committed = json.loads(resources.files("loratui.data").joinpath("lora_shapes.json").read_text())
    for arch in ("sd15", "sdxl"):
        fresh = architecture_table(arch, with_activations=False)
        assert committed["architectures"][arch]["layers"] == fresh["layers"], \
            "run: python -m trainer.tools.shape_tables --write loratui/data/lora_shapes.json"
        assert committed["architectures"][arch]["parameters"] == fresh["parameters"]


def test_the_committed_activation_rows_cover_the_plan_and_one_replays_the_same(models):
    tables = load_tables()
    for arch in ("sd15", "sdxl"):
        rows = tables[arch].activations["unet_step"]
        planned = {(*point, ck) for point in unet_step_plan(arch) for ck in (0, 1)}
        assert {tuple(row[:6]) for row in rows} == planned
    resolution, batch = ACTIVATION_POINTS["sd15"][0]
    for checkpointing in (False, True):
        step = measure_unet_step(models["sd15"], resolution, batch, checkpointing)
        (row,) = [r for r in tables["sd15"].activations["unet_step"]
                  if r[:6] == [resolution, batch, "lora", 8, "16bit", int(checkpointing)]]
        assert [step.peak_bytes, step.saved_bytes] == row[6:]
