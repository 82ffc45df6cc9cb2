"""``network.weights``: a LoRA file to continue, checked before anything loads (no torch here).

The files are written byte by byte (``tests.unit.lora_files.write_safetensors``) as LoRAs of each
kind arrive from sd-scripts or loratui: SD1.5 names (diffusers UNet paths, ``lora_te_``), SDXL
names (``input_blocks_…``, ``lora_te1_``/``lora_te2_``), LoHa tensors. Each mismatch must be one
Problem naming ``network.weights``, from the preflight the trainer runs, from the app's
assessment and from ``loratui check``, and a trainer given such a config must stop before the
model loads, writing no LoRA.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from loratui.cli import main
from loratui.demo import write_dataset
from tests.unit.lora_files import write_safetensors
from trainer.contract.config.schema import from_dict, validate
from trainer.contract.config.toml_io import dumps, load_config
from trainer.contract.events import read_events
from trainer.contract.lora_weights import check_network_weights, read_start_file, with_file_dims
from trainer.contract.preflight import preflight
from trainer.contract.rundir import create_run_dir

SD15_UNET = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
SD15_CONV = "lora_unet_down_blocks_0_resnets_0_conv1"
SD15_TE = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
SDXL_UNET = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q"
SDXL_TE = "lora_te2_text_model_encoder_layers_0_self_attn_q_proj"


def _lora(name: str, dim: int, alpha: float, width: int = 320, kernel: int = 0, dtype: str = "F16") -> dict:
    down = [dim, width, kernel, kernel] if kernel else [dim, width]
    up = [width, dim, 1, 1] if kernel else [width, dim]
    return {f"{name}.lora_down.weight": (dtype, down, None), f"{name}.lora_up.weight": (dtype, up, None),
            f"{name}.alpha": (dtype, [], alpha)}


def _loha(name: str, dim: int, alpha: float) -> dict:
    return {f"{name}.hada_w1_a": ("F16", [320, dim], None), f"{name}.hada_w1_b": ("F16", [dim, 320], None),
            f"{name}.hada_w2_a": ("F16", [320, dim], None), f"{name}.hada_w2_b": ("F16", [dim, 320], None),
            f"{name}.alpha": ("F16", [], alpha)}


@pytest.fixture
def setup(tmp_path):
    """A fake SD1.5 model folder, a dataset, and ``make(file_tensors, **network)`` → resolved config."""
    model = tmp_path / "model"
    (model / "unet").mkdir(parents=True)
    (model / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    write_dataset(tmp_path / "data", count=4)

    def make(tensors: dict | None, network: dict | None = None, optimizer: dict | None = None,
             name: str = "start.safetensors"):
        if tensors is not None:
            write_safetensors(tmp_path / name, tensors)
        network = {"weights": name, "dim": 4, "alpha": 2.0, **(network or {})}
        data = {"model": {"base": "model"}, "dataset": {"path": "data", "resolution": 512},
                "network": network, "optimizer": optimizer or {},
                "output": {"dir": "runs", "name": "cont"}}
        config, problems = from_dict(data)
        assert not problems + validate(config)
        path = tmp_path / "lora.toml"
        path.write_text(dumps(config))
        config, problems = load_config(path)
        assert not problems
        return config, path
    return make


def _only_problem(config) -> str:
    problems = preflight(config).problems
    assert [p.field for p in problems] == ["network.weights"], problems
    return problems[0].message


def test_a_matching_file_passes_and_relative_paths_read_from_the_config_folder(setup, tmp_path):
    config, _ = setup({**_lora(SD15_UNET, 4, 2.0), **_lora(SD15_TE, 4, 2.0, 768)})
    assert config.network.weights == str(tmp_path / "start.safetensors")
    assert preflight(config).problems == [] and check_network_weights(config) == []


def test_a_missing_or_unreadable_file_is_named(setup, tmp_path):
    config, _ = setup(None)
    assert "does not exist" in _only_problem(config)
    (tmp_path / "start.safetensors").write_bytes(b"not a safetensors file at all")
    assert "not a safetensors file" in _only_problem(config)
    write_safetensors(tmp_path / "start.safetensors", {"model.diffusion_model.x.weight": ("F16", [2], None)})
    assert "not a LoRA" in _only_problem(config)


def test_a_file_of_the_other_architecture_is_refused(setup):
    config, _ = setup({**_lora(SDXL_UNET, 4, 2.0, 640), **_lora(SDXL_TE, 4, 2.0, 1280)})
    message = _only_problem(config)
    assert "for SDXL" in message and "model is SD1.5" in message
    # A UNet-only SDXL file tells its architecture by its block names alone.
    config, _ = setup(_lora(SDXL_UNET, 4, 2.0, 640))
    assert "for SDXL" in _only_problem(config)


def test_a_file_of_another_network_type_is_refused(setup):
    config, _ = setup(_loha(SD15_UNET, 4, 2.0))
    message = _only_problem(config)
    assert "LoHa file" in message and "network.type = 'loha'" in message
    config, _ = setup(_loha(SD15_UNET, 4, 2.0), network={"type": "loha"})
    assert preflight(config).problems == []
    # A LoCon (3×3 convolutions adapted) is not a plain LoRA, nor the other way round.
    config, _ = setup({**_lora(SD15_UNET, 4, 2.0), **_lora(SD15_CONV, 4, 2.0, kernel=3)},
                      optimizer={"text_encoder_lr": 0})
    assert "LoCon file" in _only_problem(config)
    config, _ = setup(_lora(SD15_UNET, 4, 2.0), network={"type": "locon"}, optimizer={"text_encoder_lr": 0})
    assert "LoRA file" in _only_problem(config)
    dora = {**_lora(SD15_UNET, 4, 2.0), f"{SD15_UNET}.dora_scale": ("F16", [1, 320], None)}
    config, _ = setup(dora, optimizer={"text_encoder_lr": 0})
    assert "network.dora" in _only_problem(config)


def test_another_dim_or_alpha_is_refused_unless_taken_from_the_file(setup):
    file = {**_lora(SD15_UNET, 8, 4.0), **_lora(SD15_TE, 8, 4.0, 768)}
    config, _ = setup(file)
    message = _only_problem(config)
    assert "dim 8, alpha 4" in message and "network.dim is 4" in message and "dim_from_weights" in message
    config, _ = setup({**_lora(SD15_UNET, 4, 1.0), **_lora(SD15_TE, 4, 1.0, 768)})
    assert "alpha 1" in _only_problem(config)
    config, _ = setup(file, network={"dim_from_weights": True})
    assert preflight(config).problems == []
    shaped = with_file_dims(config, read_start_file(config.network.weights))
    assert (shaped.network.dim, shaped.network.alpha) == (8, 4.0)


def test_the_apps_estimates_use_the_files_dims(setup):
    from loratui.assess import assess
    file = {**_lora(SD15_UNET, 32, 16.0), **_lora(SD15_TE, 32, 16.0, 768)}
    config, _ = setup(file, network={"dim": 4, "alpha": 2.0, "dim_from_weights": True})
    as_file, _ = setup(file, network={"dim": 32, "alpha": 16.0})
    estimated, expected = assess(config).estimates, assess(as_file).estimates
    fresh = assess(setup(file, network={"dim": 4, "alpha": 2.0})[0]).estimates
    assert estimated.file_size == expected.file_size > fresh.file_size


def test_a_resized_file_needs_dim_from_weights(setup):
    file = {**_lora(SD15_UNET, 8, 4.0), **_lora(SD15_TE, 2, 1.0, 768, dtype="BF16")}
    config, _ = setup(file)
    assert "different ranks (2, 8)" in _only_problem(config)
    start = read_start_file(config.network.weights)
    assert start.modules[SD15_TE].alpha == 1.0 and start.modules[SD15_UNET].rank == 8  # a BF16 alpha too


def test_a_text_encoder_part_needs_the_text_encoder_trained(setup):
    config, _ = setup({**_lora(SD15_UNET, 4, 2.0), **_lora(SD15_TE, 4, 2.0, 768)},
                      optimizer={"text_encoder_lr": 0})
    assert "optimizer.text_encoder_lr" in _only_problem(config)
    # The other way round is allowed: the text encoder's layers start fresh (a warning at run time).
    config, _ = setup(_lora(SD15_UNET, 4, 2.0))
    assert preflight(config).problems == []


def test_dim_from_weights_without_a_file_is_a_config_error():
    config, problems = from_dict({"model": {"base": "m"}, "dataset": {"path": "d"},
                                  "network": {"dim_from_weights": True}})
    assert [p.field for p in problems + validate(config)] == ["network.dim_from_weights"]


def test_loratui_check_reports_it(setup, capsys):
    _, path = setup(_loha(SD15_UNET, 4, 2.0))
    assert main(["check", str(path)]) == 2
    out = capsys.readouterr()
    assert "network.weights" in out.out + out.err and "LoHa file" in out.out + out.err


def test_the_trainer_stops_before_loading_anything(setup):
    config, _ = setup({**_lora(SDXL_UNET, 4, 2.0, 640), **_lora(SDXL_TE, 4, 2.0, 1280)})
    run = create_run_dir(config)
    status = subprocess.run([sys.executable, "-m", "trainer", str(run.root)], stdin=subprocess.DEVNULL,
                            capture_output=True, timeout=120).returncode
    events = read_events(run.events)
    assert status == 2
    assert [e["type"] for e in events] == ["error"]  # no "loading" status: the model was never opened
    assert events[0]["code"] == "input" and events[0]["problems"][0]["field"] == "network.weights"
    assert "for SDXL" in events[0]["message"]
    assert not [p for p in Path(run.root).rglob("*") if p.suffix in (".safetensors", ".pt")]
