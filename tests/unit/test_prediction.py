"""What a model predicts is read before anything loads, said before launch, and refused when it cannot train."""

from __future__ import annotations

import json
from pathlib import Path

from loratui.assess import assess
from loratui.summary import summary_line
from tests.unit.lora_files import write_safetensors
from trainer.contract.config.schema import from_dict
from trainer.contract.prediction import Detected, detect_prediction, resolve_prediction
from trainer.contract.preflight import check_prediction

SDXL_KEYS = {"conditioner.embedders.1.model.ln_final.weight": ("F16", [4], None),
             "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": ("F16", [4], None),
             "model.diffusion_model.out.0.weight": ("F16", [4], None)}


def _checkpoint(path: Path, *markers: str) -> Path:
    return write_safetensors(path, {**SDXL_KEYS, **{m: ("F32", [0], None) for m in markers}})


def _folder(path: Path, **scheduler) -> Path:
    (path / "scheduler").mkdir(parents=True)
    (path / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler))
    (path / "unet").mkdir()
    return path


def test_single_files_are_read_by_their_marker_keys_or_the_folder_they_are_loaded_with(tmp_path):
    plain = str(_checkpoint(tmp_path / "plain.safetensors"))
    assert detect_prediction(plain).prediction is None  # the scheduler config it is loaded with decides
    configs = _folder(tmp_path / "configs", prediction_type="v_prediction")
    through = detect_prediction(plain, str(configs))
    assert through.prediction == "v_prediction" and "model.single_file_config" in through.source
    vpred = detect_prediction(str(_checkpoint(tmp_path / "v.safetensors", "v_pred")))
    assert (vpred.prediction, vpred.zero_terminal_snr) == ("v_prediction", False)
    noob = detect_prediction(str(_checkpoint(tmp_path / "noob.safetensors", "v_pred", "ztsnr")))
    assert (noob.prediction, noob.zero_terminal_snr, noob.unsupported) == ("v_prediction", True, "")
    assert "v_pred and ztsnr markers" in noob.source


def test_folders_are_read_by_their_scheduler_config(tmp_path):
    v = detect_prediction(str(_folder(tmp_path / "v", prediction_type="v_prediction", rescale_betas_zero_snr=True)))
    assert (v.prediction, v.zero_terminal_snr) == ("v_prediction", True)
    eps = detect_prediction(str(_folder(tmp_path / "e", prediction_type="epsilon")))
    assert (eps.prediction, eps.zero_terminal_snr) == ("epsilon", False)


def test_auto_follows_the_model_an_explicit_value_overrides_it_and_a_hub_model_is_assumed_and_said():
    noob = Detected("v_prediction", True, "its v_pred and ztsnr markers")
    auto = resolve_prediction("auto", False, noob)
    assert (auto.prediction, auto.zero_terminal_snr) == ("v_prediction", True)
    assert "read from its v_pred and ztsnr markers" in auto.explanation
    forced = resolve_prediction("epsilon", False, noob)
    assert (forced.prediction, forced.zero_terminal_snr) == ("epsilon", False)
    assert "set by model.prediction, though according to its v_pred and ztsnr markers the model predicts the " \
        "velocity" in forced.explanation
    hub = resolve_prediction("auto", False, detect_prediction("org/some-model"))
    assert hub.prediction == "epsilon" and "assumed" in hub.explanation and "model.prediction" in hub.explanation


def _config(base: str, **model):
    config, problems = from_dict({"model": {"base": base, **model}, "dataset": {"path": "d"}})
    assert not problems
    return config


def test_an_edm_v_prediction_file_is_refused_before_anything_loads(tmp_path):
    path = _checkpoint(tmp_path / "edm.safetensors", "edm_vpred.sigma_max", "edm_vpred.sigma_min")
    (problem,) = check_prediction(_config(str(path)))
    assert problem.field == "model.base" and "EDM v-prediction" in problem.message and str(path) in problem.message
    assert any(p.field == "model.base" and "EDM" in p.message for p in assess(_config(str(path))).problems)


def test_the_app_and_check_say_what_the_model_predicts_and_warn_on_zero_snr_with_epsilon(tmp_path):
    noob = _checkpoint(tmp_path / "noob.safetensors", "v_pred", "ztsnr")
    assessment = assess(_config(str(noob)))
    assert "v-prediction + zero terminal SNR" in summary_line(assessment)
    assert "read from its v_pred and ztsnr markers" in assessment.prediction.explanation
    eps = _checkpoint(tmp_path / "eps.safetensors")
    assert "v-prediction" not in summary_line(assess(_config(str(eps))))
    config = _config(str(eps), zero_terminal_snr=True)
    (danger,) = [f for f in assess(config).findings if f.rule == "model.zero_terminal_snr_epsilon"]
    assert danger.severity == "danger" and danger.fix.changes == {"model.zero_terminal_snr": False}
    fixed = assess(danger.fix.apply(config))
    assert not [f for f in fixed.findings if f.rule == "model.zero_terminal_snr_epsilon"]
    assert not [f for f in assess(_config(str(noob))).findings if f.rule == "model.zero_terminal_snr_epsilon"]
