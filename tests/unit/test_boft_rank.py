"""BOFT ranks are checked before anything loads, with the rank that would work (no torch here)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from loratui.rules import Context, evaluate
from trainer.contract.boft_rank import STANDARD_WIDTHS, boft_rank_message, model_widths, rank_fits, suitable_rank
from trainer.contract.config.schema import from_dict
from trainer.contract.preflight import check_network

REPO = Path(__file__).resolve().parents[2]


def _table_widths() -> dict[str, dict[str, set[int]]]:
    """Output widths per architecture and part, from the shape tables built from the real models."""
    raw = json.loads((REPO / "loratui" / "data" / "lora_shapes.json").read_text())
    columns = raw["layer_columns"]
    widths: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for arch, data in raw["architectures"].items():
        for row in data["layers"]:
            layer = dict(zip(columns, row))
            if layer["group"] == "unet_attention":
                widths[arch]["unet"].add(layer["out"])
            elif layer["group"] == "text_encoder":
                widths[arch]["text_encoders"].add(layer["out"])
    return widths


def test_the_standard_widths_are_those_of_the_real_models_layers():
    tables = _table_widths()
    for arch, parts in STANDARD_WIDTHS.items():
        assert {part: set(group) for part, group in parts.items()} == tables[arch], arch


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_every_rank_from_1_to_64_is_judged_by_the_smallest_that_splits_every_layer(arch):
    widths = tuple(sorted(set(STANDARD_WIDTHS[arch]["unet"]) | set(STANDARD_WIDTHS[arch]["text_encoders"])))
    for rank in range(1, 65):
        fits = all(rank_fits(rank, width) for width in widths)
        assert (boft_rank_message(rank, widths) is None) == fits
        fixed = suitable_rank(rank, widths)
        assert all(rank_fits(fixed, width) for width in widths)  # the fix always works ...
        assert fixed == rank if fits else not any(  # ... and is the nearest rank above that does
            all(rank_fits(r, width) for width in widths) for r in range(rank, fixed))
    assert suitable_rank(8, widths) == 10  # the default rank fails on the full-size models


def _config(base: str, dim: int, te_lr: float = 1e-4):
    config, problems = from_dict({"model": {"base": base}, "dataset": {"path": "d"},
                                  "network": {"type": "boft", "dim": dim}, "optimizer": {"text_encoder_lr": te_lr}})
    assert not problems
    return config


def test_a_single_file_or_hub_model_is_checked_against_the_real_architecture(tmp_path):
    for base in ("org/some-sdxl-model", str(tmp_path / "nowhere" / "model.safetensors")):
        (problem,) = check_network(_config(base, 8))
        assert problem.field == "network.dim" and "network.dim = 10" in problem.message
        assert check_network(_config(base, 16)) == []


def _diffusers_folder(root: Path, channels: list[int], encoders: list[tuple[int, int]]) -> Path:
    (root / "unet").mkdir(parents=True)
    (root / "unet" / "config.json").write_text(json.dumps({
        "block_out_channels": channels, "mid_block_type": "UNetMidBlock2DCrossAttn",
        "down_block_types": ["CrossAttnDownBlock2D"] * (len(channels) - 1) + ["DownBlock2D"]}))
    (root / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    for index, (hidden, mlp) in enumerate(encoders):
        folder = root / ("text_encoder" if index == 0 else "text_encoder_2")
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"hidden_size": hidden, "intermediate_size": mlp}))
    return root


def test_a_diffusers_folder_is_checked_against_its_own_layers_and_the_fix_clears_the_danger(tmp_path):
    # 96 = 3 × 32 wide blocks need rank 6; a 40-wide text encoder (5 × 8) needs 10, only when it trains.
    model = _diffusers_folder(tmp_path / "m", [96, 192, 192], [(40, 160)])
    assert set(model_widths(str(model), "sd15", True)) == {96, 192, 768, 1536, 40, 160}
    assert check_network(_config(str(model), 6, te_lr=0)) == []
    assert check_network(_config(str(model), 4, te_lr=0))[0].message.count("network.dim = 6")
    config = _config(str(model), 6)
    (danger,) = [f for f in evaluate(Context(config, "sd15")) if f.rule == "network.boft_rank"]
    assert danger.severity == "danger" and danger.fix.changes == {"network.dim": 10}
    fixed = danger.fix.apply(config)
    assert check_network(fixed) == [] and not [f for f in evaluate(Context(fixed, "sd15"))
                                               if f.rule == "network.boft_rank"]


def test_a_model_whose_widths_no_rank_can_split_says_so_and_offers_no_rank(tmp_path):
    model = _diffusers_folder(tmp_path / "odd", [96, 192], [(45, 180)])  # an odd text-encoder width
    (danger,) = [f for f in evaluate(Context(_config(str(model), 16), "sd15")) if f.rule == "network.boft_rank"]
    assert danger.fix is None and "choose another network type" in danger.message
