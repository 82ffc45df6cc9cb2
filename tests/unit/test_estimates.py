"""The pre-launch estimates: file size, GPU memory, GPU detection and time per step (pure, no torch)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from loratui.estimates import (DEFAULT_METADATA_BYTES, SPEED_FIGURES, GpuInfo, detect_gpus, duration_estimate,
                               gpu_model, load_tables, lora_file_size, lora_parameter_tensors, metadata_bytes,
                               parse_nvidia_smi, unet_activation_bytes, vram_estimate)

REPO = Path(__file__).resolve().parents[2]
NATIVE = {"sd15": 768, "sdxl": 1024}


# --- nvidia-smi ----------------------------------------------------------------------------------

def test_one_gpu_is_read_from_nvidia_smi_output():
    assert parse_nvidia_smi("NVIDIA GeForce RTX 4090, 24564, 1021\n") == \
        [GpuInfo("NVIDIA GeForce RTX 4090", 24564, 1021)]


def test_two_gpus_are_read_in_order():
    text = "NVIDIA H100 80GB HBM3, 81559, 0\nNVIDIA GeForce RTX 3090 Ti, 24564, 23000\n"
    gpus = parse_nvidia_smi(text)
    assert [g.name for g in gpus] == ["NVIDIA H100 80GB HBM3", "NVIDIA GeForce RTX 3090 Ti"]
    assert [g.memory_free_mib for g in gpus] == [81559, 1564]


@pytest.mark.parametrize("text", [
    "", "\n\n", "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
    "NVIDIA A100-SXM4-40GB, [N/A], [N/A]", "No devices were found", ", 100, 10",
])
def test_output_that_is_not_a_gpu_list_gives_no_gpus(text):
    assert parse_nvidia_smi(text) == []


def test_a_bad_line_does_not_hide_the_good_ones():
    assert [g.name for g in parse_nvidia_smi("garbage\nTesla T4, 15360, 5\n")] == ["Tesla T4"]


def _fake_nvidia_smi(folder: Path, script: str) -> dict:
    tool = folder / "nvidia-smi"
    tool.write_text(f"#!{sys.executable}\n{script}\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return {**os.environ, "PATH": str(folder)}


def test_detect_gpus_runs_nvidia_smi_and_reads_it(tmp_path, monkeypatch):
    env = _fake_nvidia_smi(tmp_path, "import sys\nassert '--format=csv,noheader,nounits' in sys.argv\n"
                                     "print('NVIDIA GeForce RTX 3060, 12288, 300')")
    monkeypatch.setenv("PATH", env["PATH"])
    assert detect_gpus() == [GpuInfo("NVIDIA GeForce RTX 3060", 12288, 300)]


def test_detect_gpus_without_nvidia_smi_or_when_it_fails_finds_none(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert detect_gpus() == []
    monkeypatch.setenv("PATH", _fake_nvidia_smi(tmp_path, "import sys\nprint('driver error')\nsys.exit(9)")["PATH"])
    assert detect_gpus() == []
    monkeypatch.setenv("PATH", _fake_nvidia_smi(tmp_path, "import time\ntime.sleep(5)")["PATH"])
    assert detect_gpus(timeout=0.5) == []


# --- Time per step -------------------------------------------------------------------------------

@pytest.mark.parametrize("name,model", [
    ("NVIDIA GeForce RTX 4090", "4090"), ("NVIDIA GeForce RTX 3090 Ti", "3090 ti"), ("GeForce RTX 3060", "3060"),
    ("NVIDIA GeForce RTX 4070 SUPER", "4070 super"), ("NVIDIA GeForce RTX 4090 Laptop GPU", None),
    ("NVIDIA H100 80GB HBM3", "h100"), ("NVIDIA H200", "h200"), ("NVIDIA H200 NVL", "h200 nvl"),
    ("NVIDIA H100 PCIe", "h100 pcie"), ("NVIDIA A100-SXM4-80GB", "a100"), ("NVIDIA L40S", "l40s"), ("Tesla T4", None),
])
def test_gpu_names_reduce_to_their_model_number(name, model):
    assert gpu_model(name) == model


def test_a_reported_figure_gives_a_duration_with_its_source():
    estimate = duration_estimate("NVIDIA GeForce RTX 4090", "sdxl", 1024, 1, True, total_steps=2600)
    figure = next(f for f in SPEED_FIGURES if "4090" in f.gpus)
    assert (estimate.seconds_per_step_low, estimate.seconds_per_step_high) == (figure.seconds_low, figure.seconds_high)
    assert estimate.total_seconds_low == pytest.approx(2600 * figure.seconds_low)
    assert estimate.total_seconds_high == pytest.approx(2600 * figure.seconds_high)
    assert estimate.source.startswith("reported by users") and estimate.scaled_from_batch is None


def test_the_ti_shares_its_figure_and_a_larger_batch_is_scaled():
    plain = duration_estimate("NVIDIA GeForce RTX 3090", "sdxl", 1024, 1, False, 100)
    assert duration_estimate("NVIDIA GeForce RTX 3090 Ti", "sdxl", 1024, 1, False, 100) == plain
    doubled = duration_estimate("NVIDIA GeForce RTX 3090", "sdxl", 1024, 2, False, 100)
    assert doubled.seconds_per_step_low == pytest.approx(2 * plain.seconds_per_step_low)
    assert doubled.scaled_from_batch == 1


def test_a_measured_figure_is_used_for_its_own_batch_and_checkpointing_setting():
    plain = duration_estimate("NVIDIA H200", "sdxl", 1024, 4, False, 100)
    checkpointed = duration_estimate("NVIDIA H200", "sdxl", 1024, 4, True, 100)
    one = duration_estimate("NVIDIA H200", "sdxl", 1024, 1, False, 100, train_text_encoder=True)
    assert plain.measured and plain.scaled_from_batch is None and plain.source.startswith("measured by loratui")
    # The batch-4 figure, not the batch-1 one times four: one image does not keep an H200 busy.
    assert plain.seconds_per_step_low < 4 * one.seconds_per_step_low
    assert checkpointed.seconds_per_step_low > plain.seconds_per_step_low
    # Training the text encoder at batch 4 has only the batch-1 figure to scale from: an upper bound,
    # said to be scaled; a frozen one at batch 1 has no figure at all (no smaller batch was measured).
    four = duration_estimate("NVIDIA H200", "sdxl", 1024, 4, False, 100, train_text_encoder=True)
    assert four.scaled_from_batch == 1 and four.seconds_per_step_low == pytest.approx(4 * one.seconds_per_step_low)
    assert duration_estimate("NVIDIA H200", "sdxl", 1024, 1, False, 100) is None
    # A reported figure says nothing about checkpointing and stands for both settings.
    assert duration_estimate("NVIDIA GeForce RTX 4090", "sdxl", 1024, 1, True, 100).measured is False


@pytest.mark.parametrize("gpu,arch,resolution", [
    ("NVIDIA H100 80GB HBM3", "sdxl", 1024), ("NVIDIA H200 NVL", "sdxl", 1024), ("NVIDIA H200", "sd15", 768),
    ("NVIDIA GeForce RTX 4090 Laptop GPU", "sdxl", 1024),
    ("NVIDIA GeForce RTX 4090", "sd15", 768), ("NVIDIA GeForce RTX 4090", "sdxl", 768),
    ("NVIDIA GeForce RTX 3060 Ti", "sdxl", 1024),
])
def test_no_figure_means_no_duration(gpu, arch, resolution):
    assert duration_estimate(gpu, arch, resolution, 1, False, 1000) is None


# --- GPU memory ----------------------------------------------------------------------------------

def _vram(**changes):
    settings = dict(arch="sdxl", resolution=1024, batch_size=1, gradient_checkpointing=False, mixed_precision="bf16",
                    optimizer="adamw8bit", network_type="lora", dim=8, conv_dim=8, train_text_encoder=False)
    return vram_estimate(**{**settings, **changes})


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_memory_grows_with_batch_and_resolution(arch, checkpointing):
    def total(resolution, batch):
        return _vram(arch=arch, resolution=resolution, batch_size=batch, gradient_checkpointing=checkpointing)
    by_batch = [total(NATIVE[arch], b) for b in (1, 2, 3, 4, 6, 8)]
    # Encoding the images (before training) can be the peak with checkpointing; it does not grow with the batch.
    assert all(a.training_peak < b.training_peak and a.total <= b.total for a, b in zip(by_batch, by_batch[1:]))
    assert by_batch[0].total < by_batch[-1].total
    by_size = [total(r, 2) for r in (512, 640, 768, 896, 1024, 1280)]
    assert all(a.training_peak < b.training_peak and a.total < b.total for a, b in zip(by_size, by_size[1:]))
    assert all(a.latent_caching < b.latent_caching for a, b in zip(by_size, by_size[1:]))


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_gradient_checkpointing_lowers_activations_a_lot(arch):
    plain, checkpointed = _vram(arch=arch, resolution=NATIVE[arch]), _vram(arch=arch, resolution=NATIVE[arch],
                                                                         gradient_checkpointing=True)
    assert checkpointed.activations < plain.activations / 3
    assert checkpointed.total < plain.total


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_cached_text_outputs_keep_exactly_the_frozen_encoders_off_the_gpu(arch):
    encoders = sum(load_tables()[arch].text_encoder_parameters) * 2  # bf16
    on, off = _vram(arch=arch), _vram(arch=arch, text_outputs_cached=True)
    assert on.base_weights - off.base_weights == encoders
    # A trained encoder is never cached, whatever the flag says: it must be on the GPU.
    trained = dict(arch=arch, train_text_encoder=True)
    assert _vram(**trained, text_outputs_cached=True).base_weights == _vram(**trained).base_weights


def test_adamw8bit_keeps_less_optimizer_state_than_adamw():
    for dim in (4, 8, 32, 128):
        full, small = _vram(optimizer="adamw", dim=dim), _vram(optimizer="adamw8bit", dim=dim)
        params = sum(lora_parameter_tensors("sdxl", "lora", dim, 8, False))
        assert full.optimizer_state == 8 * params
        assert 2 * params < small.optimizer_state < full.optimizer_state / 2


def test_the_parts_follow_the_settings():
    base = _vram()
    assert base.lora_weights == base.lora_gradients == 4 * sum(lora_parameter_tensors("sdxl", "lora", 8, 8, False))
    assert _vram(mixed_precision="no").base_weights == 2 * base.base_weights
    assert _vram(mixed_precision="fp16").base_weights == base.base_weights
    with_te = _vram(train_text_encoder=True)
    assert with_te.activations > base.activations and with_te.lora_weights > base.lora_weights
    assert _vram(network_type="locon").lora_weights > base.lora_weights
    assert _vram(dim=64).activations > base.activations
    assert _vram(flip=True).latent_caching > base.latent_caching
    assert base.total == max(base.training_peak, base.caching_peak) + base.overhead
    assert sum(size for _, size in base.parts()) == base.training_peak + base.latent_caching + base.overhead


def test_the_activation_line_reproduces_every_replayed_step():
    # The replays grow in proportion to batch × pixels; the fitted line must land on each of them.
    for arch, tables in load_tables().items():
        for resolution, batch, network, dim, precision, ck, peak, _ in tables.activations["unet_step"]:
            if dim == 8 and precision == "16bit":
                fitted = unet_activation_bytes(arch, resolution, batch, bool(ck), network)
                assert fitted == pytest.approx(peak, rel=0.02)


def test_unknown_settings_are_refused():
    with pytest.raises(ValueError, match="architecture"):
        _vram(arch="sd3")
    with pytest.raises(ValueError, match="optimizer"):
        _vram(optimizer="prodigy")
    with pytest.raises(ValueError, match="network"):
        _vram(network_type="loha")


# --- File size -----------------------------------------------------------------------------------

def _size(**changes):
    settings = dict(arch="sd15", network_type="lora", dim=8, alpha=4.0, conv_dim=8, conv_alpha=4.0,
                    train_text_encoder=False, save_precision="fp16")
    return lora_file_size(**{**settings, **changes})


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_file_size_grows_with_rank_locon_and_the_text_encoder(arch):
    sizes = [_size(arch=arch, dim=d) for d in (1, 4, 8, 16, 32, 64, 128)]
    assert sizes == sorted(set(sizes))
    assert _size(arch=arch, network_type="locon") > _size(arch=arch)
    assert _size(arch=arch, network_type="locon", conv_dim=16) > _size(arch=arch, network_type="locon", conv_dim=8)
    assert _size(arch=arch, conv_dim=64) == _size(arch=arch)  # a plain LoRA has no convolution rank
    assert _size(arch=arch, train_text_encoder=True) > _size(arch=arch)


def test_file_size_is_the_tensors_plus_a_padded_header():
    params = lora_parameter_tensors("sd15", "lora", 8, 8, False)
    values = sum(params) + len(params) // 2  # the weights plus one alpha per layer
    half, full = _size(), _size(save_precision="fp32")
    for size, width in ((half, 2), (full, 4)):
        header = size - 8 - width * values
        assert 0 < header < 200_000 and header % 8 == 0  # safetensors pads the header to whole 8-byte words
    # bf16 has the same tensor bytes; only its longer dtype name ("BF16") lengthens the header.
    assert 0 < _size(save_precision="bf16") - half <= len(params) * 3 // 2 + 8
    assert _size(metadata_bytes=DEFAULT_METADATA_BYTES + 800) == pytest.approx(half + 800, abs=8)


def test_metadata_size_follows_the_tag_list():
    few = metadata_bytes({"mychar": 20, "1girl": 20})
    many = metadata_bytes({f"tag number {i}": 3 for i in range(300)})
    assert few < DEFAULT_METADATA_BYTES < many
    assert metadata_bytes(None) == DEFAULT_METADATA_BYTES
    # A quote in a tag is escaped twice (JSON text inside the header's JSON): \\\" is four bytes, three more.
    assert metadata_bytes({'say "hi"': 1}) - metadata_bytes({"say _hi_": 1}) == 2 * 3


def test_the_tables_hold_every_group_once_per_layer():
    for arch, tables in load_tables().items():
        names = [layer.name for layer in tables.layers]
        assert len(names) == len(set(names))
        assert {layer.group for layer in tables.layers} == {"unet_attention", "unet_conv", "text_encoder"}
        assert all(layer.kind == "conv3x3" for layer in tables.layers if layer.kernel == 3)
        prefixes = {layer.name.split("_text_model")[0] for layer in tables.layers if layer.group == "text_encoder"}
        assert prefixes == ({"lora_te"} if arch == "sd15" else {"lora_te1", "lora_te2"})


def test_the_estimates_load_no_heavy_library():
    code = ("import sys, loratui.estimates as e; e.load_tables(); e.vram_estimate('sdxl', 1024, 1, True, 'bf16', "
            "'adamw8bit'); print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                cwd=REPO).stdout.split())
    assert loaded & {"torch", "diffusers", "transformers", "safetensors", "numpy"} == set()


def test_estimates_are_frozen_values():
    estimate = _vram()
    assert replace(estimate, overhead=0).total == estimate.allocated_peak


def test_the_summary_says_whether_a_duration_was_measured_reported_or_scaled():
    from loratui.assess import Estimates
    from loratui.summary import estimates_text

    def text(gpu_name: str, batch: int) -> str:
        gpu = GpuInfo(gpu_name, 143771, 0)
        duration = duration_estimate(gpu_name, "sdxl", 1024, batch, False, 1000, train_text_encoder=batch < 4)
        return estimates_text(Estimates(40_000_000, _vram(batch_size=batch), gpu, duration, None))

    assert "(measured on this GPU)" in text("NVIDIA H200", 4)
    assert "(measured on this GPU at batch 1, scaled)" in text("NVIDIA H200", 2)
    assert "(user reports)" in text("NVIDIA GeForce RTX 4090", 1)
    assert "no speed figure" in text("NVIDIA H100 80GB HBM3", 4)
