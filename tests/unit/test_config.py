"""The config schema: defaults, TOML round trip, validation and overrides."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from trainer.contract.config.schema import FIELDS, Config, from_dict, get_value, validate, with_value
from trainer.contract.config.toml_io import ConfigFileError, apply_overrides, dumps, load_config, loads, parse_override
from trainer.contract.model_ref import looks_like_hub_id


def test_defaults_are_the_guides_safe_character_settings():
    config = Config()
    assert (config.network.dim, config.network.alpha) == (8, 4.0)
    assert (config.optimizer.unet_lr, config.optimizer.text_encoder_lr) == (5e-4, 1e-4)
    assert (config.scheduler.name, config.scheduler.restarts) == ("cosine_with_restarts", 3)
    assert config.optimizer.name == "adamw8bit"
    assert config.training.batch_size == 4
    assert config.kind == "character"


def test_every_field_has_documentation():
    for key, info in FIELDS.items():
        assert len(info.doc) > 15, f"{key} needs a real docstring"


def test_issue_field_names_exist():
    names = ["kind", "model.base", "model.arch", "dataset.path", "dataset.trigger_word", "dataset.repeats",
             "dataset.resolution", "dataset.caption_extension", "dataset.shuffle_captions", "dataset.keep_tokens",
             "dataset.flip", "dataset.buckets", "network.type", "network.dim", "network.alpha", "network.conv_dim",
             "network.conv_alpha", "optimizer.name", "optimizer.unet_lr", "optimizer.text_encoder_lr",
             "optimizer.weight_decay", "scheduler.name", "scheduler.restarts", "scheduler.warmup_steps",
             "training.epochs", "training.batch_size", "training.mixed_precision",
             "training.gradient_checkpointing", "training.fused_backward_pass", "training.seed", "output.name",
             "output.dir", "output.save_every_n_epochs", "output.sample_every_n_epochs", "output.sample_prompts",
             "config_version"]
    assert [n for n in names if n not in FIELDS] == []


def test_toml_round_trip_keeps_every_value():
    config = Config()
    config = with_value(config, "model.base", "models/my model \"v2\"")
    config = with_value(config, "dataset.trigger_word", "zk char, ünïcode")
    config = with_value(config, "optimizer.unet_lr", 3e-5)
    config = with_value(config, "output.sample_prompts", ["a, b", "c"])
    config = with_value(config, "dataset.flip", True)
    again, problems = loads(dumps(config))
    assert again == config
    assert [p.field for p in problems] == ["dataset.path"]  # still required, nothing else wrong


def test_saved_toml_carries_documentation_comments():
    text = dumps(Config())
    assert "# Learning rate of the UNet's LoRA layers." in text
    assert "config_version = 1" in text


def test_validation_collects_every_problem_and_does_not_mutate():
    config, parse_problems = from_dict({
        "model": {"base": "x"}, "dataset": {"path": "d", "repeats": 0},
        "training": {"batch_size": -1, "mixed_precision": "fp8"},
        "optimizer": {"name": "adamw9bit"},
    })
    before = copy.deepcopy(config)
    problems = validate(config)
    assert config == before
    fields = {p.field for p in problems}
    assert {"dataset.repeats", "training.batch_size", "training.mixed_precision", "optimizer.name"} <= fields
    assert parse_problems == []
    named = next(p for p in problems if p.field == "optimizer.name")
    assert "Did you mean 'adamw8bit'?" in named.message


def test_unknown_keys_and_sections_get_did_you_mean():
    _, problems = from_dict({"optimzer": {}, "training": {"batchsize": 2}, "knd": "style"})
    messages = {p.field: p.message for p in problems}
    assert "Did you mean 'optimizer'?" in messages["optimzer"]
    assert "Did you mean 'batch_size'?" in messages["training.batchsize"]
    assert "Did you mean 'kind'?" in messages["knd"]


def test_wrong_types_are_named_and_keep_the_default():
    config, problems = from_dict({"training": {"batch_size": "four", "gradient_checkpointing": "yes"},
                                  "optimizer": {"unet_lr": "abc"}, "model": "oops"})
    fields = {p.field: p.message for p in problems}
    assert "whole number" in fields["training.batch_size"]
    assert "true or false" in fields["training.gradient_checkpointing"]
    assert "expected a number" in fields["optimizer.unet_lr"]
    assert "[model] table" in fields["model"]
    assert config.training.batch_size == 4


def test_integers_are_accepted_for_float_fields_and_whole_floats_for_ints():
    config, problems = from_dict({"network": {"alpha": 4}, "training": {"epochs": 10.0}})
    assert problems == []
    assert config.network.alpha == 4.0 and isinstance(config.network.alpha, float)
    assert config.training.epochs == 10 and isinstance(config.training.epochs, int)


def test_fused_backward_pass_needs_batch_1_and_sampling_is_accepted():
    config = with_value(Config(), "training.fused_backward_pass", True)
    config = with_value(config, "output.sample_every_n_epochs", 2)
    batch_4 = {p.field: p.message for p in validate(with_value(config, "training.batch_size", 4))}
    assert "training.fused_backward_pass" in batch_4 and "batch" in batch_4["training.fused_backward_pass"]
    batch_1 = {p.field for p in validate(with_value(config, "training.batch_size", 1))}
    assert "training.fused_backward_pass" not in batch_1
    assert "output.sample_every_n_epochs" not in batch_1


def test_resolution_must_be_a_multiple_of_64():
    assert any(p.field == "dataset.resolution" for p in validate(with_value(Config(), "dataset.resolution", 700)))
    assert not any(p.field == "dataset.resolution" for p in validate(with_value(Config(), "dataset.resolution", 768)))


@pytest.mark.parametrize("text,expected", [
    ("training.batch_size=2", ("training.batch_size", 2)),
    ("dataset.flip=true", ("dataset.flip", True)),
    ("optimizer.unet_lr=3e-4", ("optimizer.unet_lr", 3e-4)),
    ("dataset.path=/data/my set", ("dataset.path", "/data/my set")),
    ('dataset.trigger_word="a=b"', ("dataset.trigger_word", "a=b")),
])
def test_parse_override(text, expected):
    assert parse_override(text) == expected


def test_bad_override_is_a_problem_not_a_crash():
    problems = apply_overrides({}, ["no-equals-sign", "training.bach_size=2"])
    assert problems[0].field == "--set"
    assert "Did you mean 'training.batch_size'?" in problems[1].message


def test_load_config_applies_overrides_and_resolves_paths(tmp_path):
    (tmp_path / "cfg" / "models" / "base").mkdir(parents=True)
    path = tmp_path / "cfg" / "lora.toml"
    path.write_text('[model]\nbase = "models/base"\n[dataset]\npath = "../data"\n')
    config, problems = load_config(path, ["training.batch_size=2"])
    assert config.training.batch_size == 2
    assert config.model.base == str(tmp_path / "cfg" / "models" / "base")
    assert config.dataset.path == str(tmp_path / "data")
    assert config.output.dir == str(tmp_path / "cfg" / "runs")
    assert problems == []


def test_hub_ids_stay_hub_ids(tmp_path):
    path = tmp_path / "lora.toml"
    path.write_text('[model]\nbase = "stable-diffusion-v1-5/stable-diffusion-v1-5"\n[dataset]\npath = "d"\n')
    config, _ = load_config(path)
    assert config.model.base == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    # A two-part name that exists locally is the local folder.
    (tmp_path / "org" / "name").mkdir(parents=True)
    path.write_text('[model]\nbase = "org/name"\n[dataset]\npath = "d"\n')
    assert load_config(path)[0].model.base == str(tmp_path / "org" / "name")
    assert looks_like_hub_id("org/name")
    assert not looks_like_hub_id("./org/name")
    assert not looks_like_hub_id("models/x.safetensors")
    assert not looks_like_hub_id("/abs/path")


def test_malformed_and_missing_files_raise_one_clear_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[training\nbatch_size = 2\n")
    with pytest.raises(ConfigFileError, match="bad.toml: is not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigFileError, match="nope.toml: no such file"):
        load_config(tmp_path / "nope.toml")
    binary = tmp_path / "image.toml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(ConfigFileError, match="not UTF-8"):
        load_config(binary)


def test_get_and_with_value_do_not_touch_the_original():
    config = Config()
    changed = with_value(config, "network.dim", 16)
    assert get_value(changed, "network.dim") == 16
    assert config.network.dim == 8
    assert dataclasses.replace(config) == config
