"""Single-file checkpoints, the form Civitai models come in: built offline from the tiny models."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.trainer.helpers import TRAINED_SD15_SETTINGS, of_type, train
from trainer.tools.ldm_export import export_single_file
from trainer.contract.model_ref import check_model, local_model_arch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def single_files(tiny_sd15, tiny_sdxl, tmp_path_factory):
    folder = tmp_path_factory.mktemp("single")
    return {"sd15": export_single_file(tiny_sd15, folder / "tiny-sd15.safetensors"),
            "sdxl": export_single_file(tiny_sdxl, folder / "tiny-sdxl.safetensors"),
            "ckpt": export_single_file(tiny_sd15, folder / "tiny-sd15.ckpt")}


def test_the_architecture_is_read_from_the_file_header(single_files):
    assert local_model_arch(str(single_files["sd15"])) == "sd15"
    assert local_model_arch(str(single_files["sdxl"])) == "sdxl"
    assert check_model(str(single_files["sdxl"])) == []


def test_files_that_are_not_base_models_are_named(tmp_path):
    lora = tmp_path / "a_lora.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(2, 2)}, str(lora))
    assert "is a LoRA, not a base model" in check_model(str(lora))[0].message
    other = tmp_path / "other.safetensors"
    save_file({"encoder.weight": torch.zeros(2)}, str(other))
    assert "not a Stable Diffusion checkpoint" in check_model(str(other))[0].message


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_training_from_a_single_file_matches_the_folder(arch, single_files, tiny_sd15, tiny_sdxl, dataset,
                                                        make_config, request):
    folder = tiny_sd15 if arch == "sd15" else tiny_sdxl
    # On SD1.5 the folder's run is the shared one, so the file trains with its settings.
    settings = TRAINED_SD15_SETTINGS if arch == "sd15" else {}
    from_file, file_events, status = train(make_config(single_files[arch], dataset, **settings,
                                                       model={"single_file_config": str(folder)}))
    assert status == 0, from_file.log.read_text()[-2000:]
    assert of_type(file_events, "start")[0]["arch"] == arch
    if arch == "sd15":
        shared = request.getfixturevalue("trained_sd15")
        from_folder, folder_events, status = shared.run, shared.events, shared.status
    else:
        from_folder, folder_events, status = train(make_config(folder, dataset))
    assert status == 0
    # The same weights, however they were packaged: the same training.
    assert [s["loss"] for s in of_type(file_events, "step")] == \
        pytest.approx([s["loss"] for s in of_type(folder_events, "step")], rel=1e-5)
    a, b = load_file(from_file.final_lora("test")), load_file(from_folder.final_lora("test"))
    assert a.keys() == b.keys()


def test_a_ckpt_is_read_as_tensors_only(single_files, tiny_sd15, dataset, make_config):
    run, events, status = train(make_config(single_files["ckpt"], dataset, model={"single_file_config": str(tiny_sd15)}))
    assert status == 0, run.log.read_text()[-2000:]
    assert of_type(events, "start")[0]["arch"] == "sd15"


class _Payload:
    """A pickle that runs a command when opened: what a malicious .ckpt does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_ckpt_carrying_code_is_refused_and_the_code_never_runs(tmp_path, dataset, make_config):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    with open(evil, "wb") as handle:
        pickle.dump({"state_dict": {"cond_stage_model.transformer.x": _Payload(marker)}}, handle)
    run, events, status = train(make_config(evil, dataset))
    assert status == 1
    assert events[-1]["type"] == "error" and events[-1]["code"] == "model"
    assert "more than tensors" in events[-1]["message"]
    assert not marker.exists()


def test_offline_without_a_config_source_says_what_to_do(single_files, dataset, make_config, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run, events, status = train(make_config(single_files["sd15"], dataset))
    assert status == 1
    assert events[-1]["code"] == "model"
    assert "model.single_file_config" in events[-1]["advice"]


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16_bit_loading_gives_the_fp32_weights_rounded_once_and_the_vae_untouched(arch, dtype, single_files,
                                                                                  tiny_sd15, tiny_sdxl):
    """Loaded straight into 16 bits (no fp32 copy of the whole model), every weight equals the fp32 load
    rounded once, and the VAE is the file's own fp32 weights: never rounded through 16 bits and back."""
    from trainer.models import load_base_model

    folder = str(tiny_sd15 if arch == "sd15" else tiny_sdxl)
    cpu = torch.device("cpu")
    full = load_base_model(str(single_files[arch]), arch, torch.float32, cpu, single_file_config=folder)
    half = load_base_model(str(single_files[arch]), arch, dtype, cpu, single_file_config=folder)
    for mine, reference in [(half.unet, full.unet), *zip(half.text_encoders, full.text_encoders)]:
        theirs = reference.state_dict()
        for name, tensor in mine.state_dict().items():
            expected = theirs[name].to(dtype) if theirs[name].is_floating_point() else theirs[name]
            assert tensor.dtype == expected.dtype and torch.equal(tensor, expected), name
    full_vae = full.vae.state_dict()
    for name, tensor in half.vae.state_dict().items():
        assert tensor.dtype == torch.float32 and torch.equal(tensor, full_vae[name]), name
    # The file is fp32, so rounding through 16 bits would have shown: the test can tell.
    assert any(not torch.equal(t, t.to(dtype).float()) for t in full_vae.values())
