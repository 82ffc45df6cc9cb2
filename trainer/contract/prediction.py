"""What a base model predicts (noise or velocity) and whether its schedule reaches zero SNR, read without torch.

A v-prediction model trained as if it predicted noise finishes without an error and gives a LoRA
that makes noise: the loss target is wrong at every step. How each kind of model says what it is:

- a diffusers folder: ``scheduler/scheduler_config.json`` (``prediction_type``,
  ``rescale_betas_zero_snr``);
- a single-file checkpoint: NoobAI-style v-prediction files carry bare ``v_pred`` and ``ztsnr``
  marker tensors (empty; their presence is the message), as ComfyUI and Forge read them.
  ``edm_vpred.sigma_max`` marks an EDM v-prediction model, a different noise schedule this
  trainer does not implement, and is refused;
- a hub id, or a single file without markers: unknown until loaded; the scheduler config it is
  loaded with decides (for a single file, ``model.single_file_config`` or the official repository,
  which says epsilon), and the app says epsilon is assumed.

``model.prediction`` = ``auto`` follows what the model says; an explicit value overrides it (for
a file that lost its markers). ``model.zero_terminal_snr`` turns the rescale on; under ``auto`` a
model that carries the ``ztsnr`` marker (or the folder's flag) gets it whatever that says.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from trainer.contract.model_ref import safetensors_keys

@dataclass(frozen=True)
class Detected:
    """What the model itself says, and where it said it."""

    prediction: str | None
    """``epsilon``, ``v_prediction``, or None when the model cannot be read here (a hub id)."""
    zero_terminal_snr: bool
    source: str
    """Where it was read, for messages ("its v_pred marker", "scheduler/scheduler_config.json")."""
    unsupported: str = ""
    """Why the model's schedule cannot be trained here (EDM v-prediction), else empty."""


@dataclass(frozen=True)
class Resolved:
    """What a run trains with, and the sentence that says why."""

    prediction: str
    zero_terminal_snr: bool
    explanation: str


def detect_prediction(base: str, single_file_config: str = "") -> Detected:
    """Read the prediction type and zero-terminal-SNR flag from a model folder or single file.

    A single file without markers is read through ``single_file_config`` when that is a local
    folder (the configs the file is loaded with); otherwise it says nothing (prediction None), and
    the scheduler config it is loaded with decides, as for a hub id.
    """
    path = Path(base)
    if path.is_file():
        keys: set[str] = set()
        if path.suffix.lower() == ".safetensors":
            try:
                keys = set(safetensors_keys(path))
            except (OSError, ValueError):
                return Detected(None, False, "the file, which could not be read")
        if any(key.startswith("edm_vpred.") for key in keys):
            return Detected("v_prediction", False, "its edm_vpred marker",
                            unsupported="it is an EDM v-prediction model (edm_vpred keys), whose continuous noise "
                                        "schedule loratui does not train")
        if "v_pred" in keys:
            ztsnr = "ztsnr" in keys
            return Detected("v_prediction", ztsnr, "its v_pred" + (" and ztsnr markers" if ztsnr else " marker"))
        if single_file_config and Path(single_file_config).is_dir():
            folder = _from_folder(Path(single_file_config))
            return Detected(folder.prediction, folder.zero_terminal_snr,
                            f"model.single_file_config's {folder.source} (the file has no v_pred marker)")
        return Detected(None, False, "the file carries no v_pred marker, so its scheduler config decides")
    if path.is_dir():
        return _from_folder(path)
    return Detected(None, False, "a hub model is only read once downloaded")


def _from_folder(path: Path) -> Detected:
    try:
        config = json.loads((path / "scheduler" / "scheduler_config.json").read_text())
    except (OSError, ValueError):
        return Detected("epsilon", False, "folder, which has no readable scheduler config")
    prediction = "v_prediction" if config.get("prediction_type") == "v_prediction" else "epsilon"
    return Detected(prediction, bool(config.get("rescale_betas_zero_snr")), "scheduler/scheduler_config.json")


def resolve_prediction(requested: str, zero_terminal_snr: bool, detected: Detected) -> Resolved:
    """The prediction type and zero-terminal-SNR setting a run uses, from the config and the model."""
    if requested != "auto":
        what = _name(requested) + _ztsnr_words(zero_terminal_snr)
        if detected.prediction and detected.prediction != requested:
            return Resolved(requested, zero_terminal_snr, f"{what}, set by model.prediction, though according "
                            f"to {detected.source} the model predicts {_name(detected.prediction)}")
        return Resolved(requested, zero_terminal_snr, f"{what}, set by model.prediction")
    prediction = detected.prediction or "epsilon"
    ztsnr = zero_terminal_snr or detected.zero_terminal_snr
    what = _name(prediction) + _ztsnr_words(ztsnr)
    if detected.prediction is None:
        return Resolved(prediction, ztsnr, f"{what}, assumed: {detected.source}; set model.prediction for a "
                        "v-prediction model")
    return Resolved(prediction, ztsnr, f"{what}, read from {detected.source}")


def _name(prediction: str | None) -> str:
    return {"v_prediction": "the velocity (v-prediction)", "epsilon": "the noise (epsilon)"}.get(prediction or "",
                                                                                               "unknown")


def _ztsnr_words(on: bool) -> str:
    return ", with zero terminal SNR" if on else ""
