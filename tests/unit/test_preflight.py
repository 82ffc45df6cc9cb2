"""Checks on the files a config names, before anything is written."""

from __future__ import annotations

import os

import pytest
from PIL import Image

from trainer.contract.config.schema import Config, with_value
from trainer.contract.model_ref import check_model, local_model_arch
from trainer.contract.preflight import preflight


def _config(model, dataset, out):
    config = with_value(Config(), "model.base", str(model))
    config = with_value(config, "dataset.path", str(dataset))
    return with_value(config, "output.dir", str(out))


@pytest.fixture
def model_folder(tmp_path):
    folder = tmp_path / "model"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    return folder


def test_missing_dataset_is_named(tmp_path, model_folder):
    result = preflight(_config(model_folder, tmp_path / "nope", tmp_path / "runs"))
    assert [p.field for p in result.problems] == ["dataset.path"]
    assert "nope does not exist" in result.problems[0].message


def test_empty_dataset_is_named(tmp_path, model_folder):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    result = preflight(_config(model_folder, tmp_path / "empty", tmp_path / "runs"))
    assert [p.field for p in result.problems] == ["dataset.path"]
    assert "no usable images" in result.problems[0].message


def test_dataset_of_only_broken_images_says_why(tmp_path, model_folder):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.png").write_bytes(b"broken")
    result = preflight(_config(model_folder, tmp_path / "data", tmp_path / "runs"))
    assert "x.png" in result.problems[0].message


def test_missing_model_is_named(tmp_path):
    (tmp_path / "data").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "data" / "a.png")
    result = preflight(_config(tmp_path / "models" / "base", tmp_path / "data", tmp_path / "runs"))
    assert [p.field for p in result.problems] == ["model.base"]
    assert "does not exist" in result.problems[0].message
    assert result.scan is not None and len(result.scan.images) == 1


def test_model_reference_kinds(tmp_path, model_folder):
    assert check_model(str(model_folder)) == []
    assert check_model("stable-diffusion-v1-5/stable-diffusion-v1-5") == []  # hub id: not checked offline
    single = tmp_path / "model.safetensors"
    single.write_bytes(b"x")
    assert "too short" in check_model(str(single))[0].message
    (tmp_path / "empty_dir").mkdir()
    assert "not a diffusers model" in check_model(str(tmp_path / "empty_dir"))[0].message


def test_arch_is_read_from_the_folder(tmp_path, model_folder):
    assert local_model_arch(str(model_folder)) == "sd15"
    (model_folder / "text_encoder_2").mkdir()
    assert local_model_arch(str(model_folder)) == "sdxl"
    assert local_model_arch("org/name") is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_is_named(tmp_path, model_folder):
    (tmp_path / "data").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "data" / "a.png")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    result = preflight(_config(model_folder, tmp_path / "data", locked / "runs"))
    assert [p.field for p in result.problems] == ["output.dir"]


def test_output_under_a_file_is_named(tmp_path, model_folder):
    (tmp_path / "data").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "data" / "a.png")
    (tmp_path / "afile").write_text("x")
    result = preflight(_config(model_folder, tmp_path / "data", tmp_path / "afile" / "runs"))
    assert [p.field for p in result.problems] == ["output.dir"]
