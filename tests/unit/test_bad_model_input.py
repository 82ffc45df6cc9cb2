"""Inputs that would train a silently wrong LoRA are named, with the field, before anything loads."""

from __future__ import annotations

from pathlib import Path

from tests.unit.lora_files import write_safetensors
from trainer.contract.config.schema import Config, from_dict, validate, with_value
from trainer.contract.preflight import preflight

SD2_KEYS = {"cond_stage_model.model.ln_final.weight": ("F16", [4], None),
            "model.diffusion_model.out.0.weight": ("F16", [4], None)}


def _config(tmp_path: Path, base: Path, **settings) -> Config:
    config = with_value(with_value(Config(), "model.base", str(base)), "dataset.path", str(tmp_path))
    for key, value in settings.items():
        config = with_value(config, key, value)
    return config


def test_a_v_pred_marker_on_an_sd2_file_names_the_model(tmp_path):
    sd2 = write_safetensors(tmp_path / "sd21-v.safetensors", {**SD2_KEYS, "v_pred": ("F32", [0], None)})
    problems = preflight(_config(tmp_path, sd2)).problems
    assert [p.field for p in problems if p.field.startswith("model.")] == ["model.base"]
    assert "Stable Diffusion 2" in next(p for p in problems if p.field == "model.base").message


def test_a_token_length_the_model_cannot_take_names_the_field():
    for length in (76, 100, 300):
        config, problems = from_dict({"dataset": {"max_token_length": length}})
        assert "dataset.max_token_length" in [p.field for p in problems + validate(config)], length


def test_dora_on_a_type_that_cannot_take_it_names_the_field():
    for network in ("ia3", "boft", "glora"):
        config, problems = from_dict({"network": {"type": network, "dora": True}})
        assert [p.field for p in problems + validate(config) if p.field.startswith("network.")] == ["network.dora"]
