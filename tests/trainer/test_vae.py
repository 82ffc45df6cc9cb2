"""``model.vae``: training (and sampling) with a VAE of the user's choice, and refusing one that cannot fit.

The oracle is a model folder whose own VAE is the chosen one: a run given the VAE through
``model.vae`` must train exactly as that folder does, in every form the VAE comes in.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.trainer.helpers import TRAINED_SD15_SETTINGS, of_type, train
from trainer.contract.errors import TrainerError
from trainer.contract.vae_ref import check_vae
from trainer.models import load_base_model
from trainer.tools.ldm_export import export_single_file, export_vae, vae_tensors
from trainer.tools.tiny import tiny_vae

pytestmark = pytest.mark.slow

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def other_vae():
    """A VAE of the tiny models' shape with other weights than theirs."""
    torch.manual_seed(1234)
    vae = tiny_vae()
    with torch.no_grad():  # random non-zero everywhere, so every weight is seen to arrive
        for tensor in vae.state_dict().values():
            tensor.add_(torch.randn_like(tensor) * 0.01)
    return vae.eval()


@pytest.fixture(scope="module")
def vae_forms(other_vae, tmp_path_factory):
    """The same VAE as users find it: an original-layout file (as vae-ft-mse-840000 is shipped), a
    diffusers folder, the diffusers folder's weights file alone, a whole checkpoint's first_stage_model
    part, and a .pt pickle of plain tensors (as NovelAI's VAE is shipped)."""
    root = tmp_path_factory.mktemp("vaes")
    other_vae.save_pretrained(root / "folder")
    shutil.copy(root / "folder" / "diffusion_pytorch_model.safetensors", root / "diffusers-layout.safetensors")
    save_file(vae_tensors(other_vae, "first_stage_model."), str(root / "prefixed.safetensors"))
    torch.save({"state_dict": vae_tensors(other_vae)}, root / "vae.pt")
    return {"original layout": export_vae(other_vae, root / "vae.safetensors"), "diffusers folder": root / "folder",
            "diffusers layout file": root / "diffusers-layout.safetensors",
            "checkpoint part": root / "prefixed.safetensors", "pickle": root / "vae.pt"}


@pytest.fixture(scope="module")
def folder_with_other_vae(tiny_sd15, other_vae, tmp_path_factory):
    """The tiny SD1.5 with ``other_vae`` as its own VAE: what a run with model.vae must equal."""
    folder = tmp_path_factory.mktemp("oracle") / "model"
    shutil.copytree(tiny_sd15, folder)
    shutil.rmtree(folder / "vae")
    other_vae.save_pretrained(folder / "vae")
    return folder


@pytest.fixture(scope="module")
def file_without_vae(tiny_sd15, tmp_path_factory):
    """The tiny SD1.5 as a single file shared without its VAE, as some SD1.5 models are."""
    return export_single_file(tiny_sd15, tmp_path_factory.mktemp("novae") / "no-vae.safetensors", with_vae=False)


def _same_weights(module, reference) -> None:
    mine, theirs = module.state_dict(), reference.state_dict()
    assert mine.keys() == theirs.keys()
    for name, tensor in theirs.items():
        assert torch.equal(mine[name].float(), tensor.float()), name


@pytest.mark.parametrize("form", ["original layout", "diffusers folder", "diffusers layout file", "checkpoint part",
                                  "pickle"])
def test_every_form_of_a_vae_loads_as_exactly_that_vae(form, vae_forms, other_vae, tiny_sd15):
    assert check_vae(str(tiny_sd15), str(vae_forms[form]), "sd15") == []
    model = load_base_model(str(tiny_sd15), "sd15", torch.float32, CPU, vae=str(vae_forms[form]))
    _same_weights(model.vae, other_vae)
    assert next(model.vae.parameters()).dtype == torch.float32


def test_a_vae_file_takes_the_models_scaling_factor(vae_forms, tiny_sd15, tmp_path):
    # A file carries no config; diffusers' default scaling factor is SD1.5's, wrong for an SDXL model.
    base = tmp_path / "model"
    shutil.copytree(tiny_sd15, base)
    config_path = base / "vae" / "config.json"
    config = json.loads(config_path.read_text())
    config["scaling_factor"] = 0.13025
    config_path.write_text(json.dumps(config))
    model = load_base_model(str(base), "sd15", torch.float32, CPU, vae=str(vae_forms["original layout"]))
    assert model.vae.config.scaling_factor == 0.13025


def test_a_checkpoint_without_a_vae_is_named_before_loading(file_without_vae, tiny_sd15):
    problems = check_vae(str(file_without_vae), "", "sd15", str(tiny_sd15))
    assert [p.field for p in problems] == ["model.vae"]
    assert str(file_without_vae) in problems[0].message and "no VAE inside" in problems[0].message


def test_training_with_a_vae_file_equals_a_model_whose_own_vae_it_is(file_without_vae, vae_forms,
                                                                       folder_with_other_vae, tiny_sd15, dataset,
                                                                       make_config, trained_sd15):
    """An SD1.5 checkpoint without a VAE trains with the chosen VAE file exactly as the folder that holds it."""
    vae_file = vae_forms["original layout"]
    run, events, status = train(make_config(file_without_vae, dataset, **TRAINED_SD15_SETTINGS,
                                            model={"single_file_config": str(tiny_sd15), "vae": str(vae_file)}))
    assert status == 0, run.log.read_text()[-2000:]
    oracle, oracle_events, status = train(make_config(folder_with_other_vae, dataset, **TRAINED_SD15_SETTINGS))
    assert status == 0, oracle.log.read_text()[-2000:]
    losses = [s["loss"] for s in of_type(events, "step")]
    assert losses == pytest.approx([s["loss"] for s in of_type(oracle_events, "step")], rel=1e-5)
    # The VAE matters: the model's usual VAE gives other latents, so other losses.
    assert losses != pytest.approx([s["loss"] for s in of_type(trained_sd15.events, "step")], rel=1e-3)
    assert load_file(run.final_lora("test")).keys() == load_file(oracle.final_lora("test")).keys()
    from safetensors import safe_open

    with safe_open(run.final_lora("test"), "pt") as handle:
        assert handle.metadata()["ss_vae_name"] == vae_file.name  # as sd-scripts writes it


@pytest.fixture(scope="module")
def foreign_vaes(tmp_path_factory):
    """VAEs that cannot serve the tiny SD1.5: 16 latent channels (as SD3's and Flux's), wider layers, SDXL's
    scaling factor, a LoRA, a text file."""
    root = tmp_path_factory.mktemp("foreign")
    torch.manual_seed(0)
    export_vae(tiny_vae(latent_channels=16), root / "flux_ae.safetensors")
    export_vae(tiny_vae(block_out_channels=(16, 16, 16, 16)), root / "wide.safetensors")
    tiny_vae(scaling_factor=0.13025).save_pretrained(root / "sdxl-vae")
    torch.save({"state_dict": vae_tensors(tiny_vae(latent_channels=16))}, root / "flux_ae.pt")
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(2, 2)}, str(root / "a_lora.safetensors"))
    (root / "notes.txt").write_text("not a vae")
    return root


@pytest.mark.parametrize("name, words", [
    ("flux_ae.safetensors", "16 channels (an SD3 or Flux VAE)"),
    ("wide.safetensors", "made for another model"),
    ("sdxl-vae", "configured as an SDXL VAE (scaling factor 0.13025), and this model is an SD1.5 model"),
    ("a_lora.safetensors", "is a LoRA, not a VAE"),
    ("notes.txt", "is not a VAE file"),
    ("missing.safetensors", "does not exist"),
])
def test_a_vae_that_cannot_fit_is_named_before_loading(name, words, foreign_vaes, tiny_sd15):
    path = foreign_vaes / name
    problems = check_vae(str(tiny_sd15), str(path), "sd15")
    assert [p.field for p in problems] == ["model.vae"]
    assert str(path) in problems[0].message and words in problems[0].message


def test_a_pickled_vae_that_cannot_fit_is_refused_by_the_loader(foreign_vaes, tiny_sd15):
    # The app cannot open a pickle without torch, so the trainer checks it after reading its tensors.
    assert check_vae(str(tiny_sd15), str(foreign_vaes / "flux_ae.pt"), "sd15") == []
    with pytest.raises(TrainerError, match=r"model\.vae: .*flux_ae\.pt makes latents of 16 channels"):
        load_base_model(str(tiny_sd15), "sd15", torch.float32, CPU, vae=str(foreign_vaes / "flux_ae.pt"))


def test_the_trainer_refuses_a_foreign_vae_before_loading_the_model(foreign_vaes, tiny_sd15, dataset, make_config):
    run, events, status = train(make_config(tiny_sd15, dataset, model={"vae": str(foreign_vaes / "flux_ae.safetensors")}))
    assert status != 0
    assert events[-1]["type"] == "error" and "model.vae" in events[-1]["message"]
    assert not [e for e in events if e["type"] == "status" and e.get("phase") == "loading"]
