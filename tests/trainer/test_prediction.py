"""v-prediction and zero terminal SNR: the schedule, the weights, and a v-pred file trained as one.

A v-prediction model trained as epsilon finishes without an error and gives a LoRA that draws
noise. These check that what the model says reaches the training: a single file whose only hint
is its ``v_pred``/``ztsnr`` markers trains exactly like a folder whose scheduler config says the
same, and differently from the same file forced to epsilon.
"""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from safetensors import safe_open

from tests.trainer.helpers import of_type, train
from trainer.tools.ldm_export import export_single_file

pytestmark = pytest.mark.slow


def _paper_alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """Algorithm 1 of Lin et al., "Common Diffusion Noise Schedules and Sample Steps are Flawed" (2023)."""
    root = torch.cumprod(1 - betas.double(), 0).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * first / (first - last)  # shift so the last is 0, scale so the first is unchanged
    return root ** 2


def _model(base):
    from trainer.models import load_base_model
    return load_base_model(str(base), "sd15", torch.float32, torch.device("cpu"))


def test_zero_terminal_snr_rescales_the_schedule_as_published_and_every_weight_stays_finite(tiny_sd15):
    from trainer.models import apply_prediction
    from trainer.step import min_snr_weights

    model = _model(tiny_sd15)
    original_betas = model.noise_scheduler.betas.clone()
    resolved = apply_prediction(model, str(tiny_sd15), "v_prediction", True)
    assert (resolved.prediction, resolved.zero_terminal_snr) == ("v_prediction", True)
    assert model.prediction_type == "v_prediction" and model.zero_terminal_snr
    alphas = model.noise_scheduler.alphas_cumprod.double()
    assert alphas[-1] == 0  # the last step is pure noise
    assert torch.allclose(alphas, _paper_alphas_cumprod(original_betas), atol=1e-6)
    every_step = torch.arange(len(alphas))
    for prediction in ("v_prediction", "epsilon"):
        model.noise_scheduler.register_to_config(prediction_type=prediction)
        weights = min_snr_weights(model, every_step, 5.0)
        assert torch.isfinite(weights).all() and (weights >= 0).all() and (weights <= 1).all(), prediction


def test_zero_terminal_snr_samples_are_real_pictures(tiny_sd15):
    from trainer.models import apply_prediction
    from trainer.sampling import build_pipeline, generate, guidance_rescale
    from trainer.step import choose_precision

    model = _model(tiny_sd15)
    apply_prediction(model, str(tiny_sd15), "v_prediction", True)
    pipe = build_pipeline(model)
    assert pipe.scheduler.config.timestep_spacing == "trailing" and guidance_rescale(model) == 0.7
    pipe.scheduler.set_timesteps(4)
    assert int(pipe.scheduler.timesteps[0]) == 999  # sampling starts from the pure-noise step it was trained on
    image = generate(pipe, model, choose_precision("no"), "zkmascot", seed=1, resolution=64, steps=4)
    pixels = torch.tensor(list(image.getdata()), dtype=torch.float32)
    assert torch.isfinite(pixels).all() and pixels.std() > 1  # not NaN, not one flat colour


def _metadata(path) -> dict[str, str]:
    with safe_open(str(path), "pt") as handle:
        return handle.metadata()


def test_a_v_pred_file_trains_exactly_like_a_v_pred_folder_and_not_like_epsilon(tiny_sd15, dataset, make_config,
                                                                                 tmp_path):
    folder = tmp_path / "vpred-folder"
    shutil.copytree(tiny_sd15, folder)
    scheduler = folder / "scheduler" / "scheduler_config.json"
    scheduler.write_text(json.dumps({**json.loads(scheduler.read_text()), "prediction_type": "v_prediction",
                                     "rescale_betas_zero_snr": True}))
    noob = export_single_file(tiny_sd15, tmp_path / "noob-vpred.safetensors", markers=("v_pred", "ztsnr"))
    # The file's configs come from the epsilon folder: only its markers can make it v-prediction.
    from_file = {"single_file_config": str(tiny_sd15)}
    runs = {"folder": train(make_config(folder, dataset, training={"min_snr_gamma": 5.0})),
            "file": train(make_config(noob, dataset, model=from_file, training={"min_snr_gamma": 5.0})),
            "forced": train(make_config(noob, dataset, model={**from_file, "prediction": "epsilon"},
                                        training={"min_snr_gamma": 5.0})),
            # A file without markers takes what the configs it is loaded with say.
            "configs": train(make_config(export_single_file(tiny_sd15, tmp_path / "plain.safetensors"), dataset,
                                         model={"single_file_config": str(folder)}, training={"min_snr_gamma": 5.0}))}
    losses = {}
    for name, (run, events, status) in runs.items():
        assert status == 0, run.log.read_text()[-3000:]
        losses[name] = [s["loss"] for s in of_type(events, "step")]
        assert losses[name] and all(math.isfinite(loss) for loss in losses[name])
        start = of_type(events, "start")[0]
        meta = _metadata(run.final_lora("test"))
        if name == "forced":
            assert (start["prediction"], start["zero_terminal_snr"]) == ("epsilon", False)
            assert meta["modelspec.prediction_type"] == "epsilon" and meta["ss_zero_terminal_snr"] == "False"
        else:
            assert (start["prediction"], start["zero_terminal_snr"]) == ("v_prediction", True)
            assert meta["modelspec.prediction_type"] == "v" and meta["ss_zero_terminal_snr"] == "True"
    said = [e["message"] for e in of_type(runs["file"][1], "status") if "predicts" in e["message"]]
    assert said and "read from its v_pred and ztsnr markers" in said[0]
    assert losses["file"] == pytest.approx(losses["folder"], rel=1e-5)
    assert losses["configs"] == pytest.approx(losses["folder"], rel=1e-5)
    assert losses["forced"] != pytest.approx(losses["file"], rel=1e-3)  # the markers changed the training
