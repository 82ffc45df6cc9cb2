"""How a step's prediction error becomes its loss: the loss type and the per-timestep weights.

Semantics follow sd-scripts (``conditional_loss``, ``get_huber_threshold_if_needed``,
``apply_snr_weight``, ``apply_debiased_estimation``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from trainer.models import BaseModel
from trainer.step_options import StepOptions

SNR_LIMITS = (1e-3, 1000.0)
"""Where debiased estimation clamps the signal-to-noise ratio. sd-scripts caps it at 1000 (timestep 0
is nearly noise-free); the floor (for 1/√SNR only) keeps the weight finite at zero terminal SNR's
pure-noise step, where sd-scripts' weight is infinite."""


def signal_to_noise(model: BaseModel, timesteps: torch.Tensor) -> torch.Tensor:
    """SNR(t) = ᾱ / (1 − ᾱ) of each timestep, in fp32."""
    alphas = model.noise_scheduler.alphas_cumprod.to(timesteps.device)[timesteps].float()
    return alphas / (1 - alphas)


def min_snr_weights(model: BaseModel, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample loss weights of Min-SNR-γ (Hang et al. 2023): min(SNR, γ) / SNR, or / (SNR + 1) for v-prediction."""
    snr = signal_to_noise(model, timesteps)
    if model.prediction_type == "v_prediction":
        return torch.clamp(snr, max=gamma) / (snr + 1)
    # min(SNR, γ) / SNR written as min(γ / SNR, 1): zero terminal SNR's last step has SNR 0 exactly.
    return torch.clamp(gamma / snr, max=1.0)


def debiased_weights(model: BaseModel, timesteps: torch.Tensor) -> torch.Tensor:
    """Per-sample weights of debiased estimation: 1/√SNR, or 1/(SNR + 1) for v-prediction (as sd-scripts)."""
    low, high = SNR_LIMITS
    snr = signal_to_noise(model, timesteps).clamp(max=high)
    if model.prediction_type == "v_prediction":
        return 1 / (snr + 1)
    return 1 / torch.sqrt(snr.clamp(min=low))


def huber_thresholds(model: BaseModel, timesteps: torch.Tensor, options: StepOptions) -> torch.Tensor:
    """The per-sample ``c`` of the huber and smooth-L1 losses under ``options.huber_schedule``.

    ``constant``: c everywhere. ``exponential``: from 1 at timestep 0 down to c at the last
    timestep. ``snr``: (1 − c)/(1 + σ)² + c with σ = √((1 − ᾱ)/ᾱ), near 1 where the image is
    clean and near c where it is mostly noise.
    """
    c = options.huber_c
    if options.huber_schedule == "constant":
        return torch.full(timesteps.shape, c, device=timesteps.device)
    if options.huber_schedule == "exponential":
        rate = -math.log(c) / model.noise_scheduler.config.num_train_timesteps
        return torch.exp(-rate * timesteps.float())
    alphas = model.noise_scheduler.alphas_cumprod.to(timesteps.device)[timesteps].float()
    sigmas = ((1 - alphas) / alphas) ** 0.5
    return (1 - c) / (1 + sigmas) ** 2 + c


def elementwise_loss(prediction: torch.Tensor, target: torch.Tensor, loss_type: str,
                     thresholds: torch.Tensor | None = None) -> torch.Tensor:
    """The loss of every element (no reduction).

    ``l2``: (p − y)². ``huber`` (pseudo-Huber): 2c(√((p − y)² + c²) − c), squared near zero
    and linear past c. ``smooth_l1``: 2(√((p − y)² + c²) − c). ``thresholds`` holds c per sample.
    """
    if loss_type == "l2":
        return F.mse_loss(prediction, target, reduction="none")
    c = thresholds.view(-1, *([1] * (prediction.dim() - 1)))
    soft = torch.sqrt((prediction - target) ** 2 + c ** 2) - c
    if loss_type == "huber":
        return 2 * c * soft
    if loss_type == "smooth_l1":
        return 2 * soft
    raise ValueError(f"unknown loss type {loss_type!r}")


def loss_elements(model: BaseModel, prediction: torch.Tensor, target: torch.Tensor, timesteps: torch.Tensor,
                  options: StepOptions) -> torch.Tensor:
    """The loss of every element under ``options.loss_type`` (in fp32, not yet reduced)."""
    thresholds = huber_thresholds(model, timesteps, options) if options.loss_type != "l2" else None
    return elementwise_loss(prediction.float(), target.float(), options.loss_type, thresholds)


def timestep_weights(model: BaseModel, timesteps: torch.Tensor, options: StepOptions) -> torch.Tensor | None:
    """Each sample's weight from Min-SNR-γ and debiased estimation together; None when both are off."""
    weights = None
    if options.min_snr_gamma:
        weights = min_snr_weights(model, timesteps, options.min_snr_gamma)
    if options.debiased_estimation:
        debiased = debiased_weights(model, timesteps)
        weights = debiased if weights is None else weights * debiased
    return weights
