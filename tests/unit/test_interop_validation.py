"""sd-scripts' validation options: imported from either config file, exported back, and round-tripped."""

from __future__ import annotations

import sys
from pathlib import Path

from loratui.interop import export_sdscripts, import_file
from tests.unit.test_interop_sdscripts import base_config, check_round_trip, make_dataset, round_trip
from trainer.contract.config.schema import with_value

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _with_validation(config, split=0.2, seed=7, steps=50, epochs=2):
    for key, value in (("validation_split", split), ("validation_seed", seed), ("validate_every_n_steps", steps),
                       ("validate_every_n_epochs", epochs)):
        config = with_value(config, f"training.{key}", value)
    return config


def test_validation_settings_round_trip_through_sd_scripts(tmp_path):
    for arch in ("sd15", "sdxl"):
        check_round_trip(_with_validation(base_config(tmp_path, arch)), tmp_path / arch, arch)
    check_round_trip(_with_validation(base_config(tmp_path), steps=0, epochs=1), tmp_path / "epochs", "sd15")


def test_the_export_writes_them_where_sd_scripts_reads_them(tmp_path):
    export = export_sdscripts(_with_validation(base_config(tmp_path)), tmp_path / "out")
    general = tomllib.loads(export.files["dataset.toml"])["general"]
    training = tomllib.loads(export.files["config.toml"])
    assert (general["validation_split"], general["validation_seed"]) == (0.2, 7)
    assert (training["validate_every_n_steps"], training["validate_every_n_epochs"]) == (50, 2)
    assert "training.validation_seed" in export.report.names("approximate")  # other images there


def test_without_a_split_nothing_is_written_and_the_unused_settings_are_named(tmp_path):
    config = _with_validation(base_config(tmp_path), split=0.0)
    export, result = round_trip(config, tmp_path / "out")
    assert "validation_split" not in tomllib.loads(export.files["dataset.toml"])["general"]
    assert not {k for k in tomllib.loads(export.files["config.toml"]) if k.startswith("validat")}
    assert {"training.validation_seed", "training.validate_every_n_steps",
            "training.validate_every_n_epochs"} <= export.report.names("not_mapped")
    assert result.config.training.validation_split == 0.0


def test_an_sd_scripts_config_with_validation_options_imports_without_unknown_options(tmp_path):
    root = make_dataset(tmp_path / "dataset")
    (tmp_path / "dataset.toml").write_text(f"""
[general]
resolution = 512
validation_split = 0.25

[[datasets]]
validation_seed = 3

  [[datasets.subsets]]
  image_dir = "{root}"
""")
    config = tmp_path / "kohya.toml"
    config.write_text(f"""
pretrained_model_name_or_path = "{tmp_path / 'model.safetensors'}"
dataset_config = "{tmp_path / 'dataset.toml'}"
network_module = "networks.lora"
max_train_epochs = 4
validate_every_n_steps = 20
validate_every_n_epochs = 2
max_validation_steps = 10
""")
    result = import_file(config)
    training = result.config.training
    assert (training.validation_split, training.validation_seed) == (0.25, 3)
    assert (training.validate_every_n_steps, training.validate_every_n_epochs) == (20, 2)
    assert not [e for e in result.report.not_mapped if "validat" in e.text()]
    assert "max_validation_steps" in result.report.names("approximate")
    assert "validation_seed" in result.report.names("approximate")


def test_command_line_style_validation_options_are_read_too(tmp_path):
    """sd-scripts also takes validation_split and validation_seed as training arguments."""
    root = make_dataset(tmp_path / "dataset")
    config = tmp_path / "kohya.toml"
    config.write_text(f"""
pretrained_model_name_or_path = "{tmp_path / 'model.safetensors'}"
train_data_dir = "{root}"
network_module = "networks.lora"
max_train_epochs = 2
validation_split = 0.1
""")
    result = import_file(config)
    assert result.config.training.validation_split == 0.1
    assert result.config.training.validation_seed == 42
    assert not [e for e in result.report.not_mapped if "validat" in e.text()]
    assert Path(result.config.dataset.path) == root
