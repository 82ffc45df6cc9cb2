"""One training step, in small pieces: precision, noise, text conditioning, loss weighting.

The loop (``trainer.loop``) decides *which* images and captions make a batch; this module turns
a batch into a loss and applies the update.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from trainer.models import BaseModel, encode_text, tokenize


@dataclass(frozen=True)
class Precision:
    """How the run computes: the base weights' dtype and whether autocast is on."""

    device: torch.device
    weight_dtype: torch.dtype
    autocast: bool
    name: str

    def context(self):
        """Autocast to the weights' dtype on a GPU; nothing on a CPU."""
        if not self.autocast:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.weight_dtype)


def choose_precision(requested: str) -> Precision:
    """fp32 on a CPU; the requested mixed precision on a GPU (the LoRA weights stay fp32)."""
    if not torch.cuda.is_available():
        return Precision(torch.device("cpu"), torch.float32, False, "fp32")
    device = torch.device("cuda")
    if requested == "bf16" and torch.cuda.is_bf16_supported():
        return Precision(device, torch.bfloat16, True, "bf16")
    if requested in ("fp16", "bf16"):
        return Precision(device, torch.float16, True, "fp16")
    return Precision(device, torch.float32, False, "fp32")


class TextEmbeddingCache:
    """Text-encoder outputs computed once per distinct caption.

    Only valid while the text encoders are frozen and a caption is always the same text (no tag
    shuffling): then encoding it every step repeats identical work. The empty caption that
    caption dropout uses is encoded too.
    """

    def __init__(self, model: BaseModel, captions: list[str], precision: Precision, batch_size: int = 16) -> None:
        unique = sorted(set(captions) | {""})
        self._rows: dict[str, int] = {text: row for row, text in enumerate(unique)}
        hidden, pooled = [], []
        with torch.no_grad(), precision.context():
            for start in range(0, len(unique), batch_size):
                h, p = encode_text(model, tokenize(model, unique[start:start + batch_size]))
                hidden.append(h.cpu())
                pooled.append(p.cpu() if p is not None else None)
        self.hidden = torch.cat(hidden)
        self.pooled = torch.cat(pooled) if pooled[0] is not None else None

    def lookup(self, texts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The cached (hidden states, pooled embedding) of these captions, on ``device``."""
        rows = torch.tensor([self._rows[text] for text in texts])
        pooled = self.pooled[rows].to(device) if self.pooled is not None else None
        return self.hidden[rows].to(device), pooled


def add_noise(model: BaseModel, latents: torch.Tensor, noise_offset: float) -> tuple[torch.Tensor, ...]:
    """Noisy latents for random timesteps: (noisy, noise, timesteps).

    The noise offset adds one random shift per image and channel, which lets the model move the
    mean brightness of an image (plain noise is zero-mean at every scale that matters).
    """
    noise = torch.randn_like(latents)
    if noise_offset:
        noise = noise + noise_offset * torch.randn(latents.shape[0], latents.shape[1], 1, 1, device=latents.device)
    steps = model.noise_scheduler.config.num_train_timesteps
    timesteps = torch.randint(0, steps, (latents.shape[0],), device=latents.device)
    return model.noise_scheduler.add_noise(latents, noise, timesteps), noise, timesteps


def min_snr_weights(model: BaseModel, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample loss weights of Min-SNR-γ (Hang et al. 2023): min(SNR, γ) / SNR, or / (SNR + 1) for v-prediction."""
    alphas = model.noise_scheduler.alphas_cumprod.to(timesteps.device)[timesteps].float()
    snr = alphas / (1 - alphas)
    if model.prediction_type == "v_prediction":
        return torch.clamp(snr, max=gamma) / (snr + 1)
    # min(SNR, γ) / SNR written as min(γ / SNR, 1): zero terminal SNR's last step has SNR 0 exactly.
    return torch.clamp(gamma / snr, max=1.0)


def diffusion_loss(model: BaseModel, latents: torch.Tensor, conditioning: tuple[torch.Tensor, torch.Tensor | None],
                   time_ids: torch.Tensor | None, precision: Precision, noise_offset: float,
                   min_snr_gamma: float, mask: torch.Tensor | None = None,
                   sample_weights: torch.Tensor | None = None) -> torch.Tensor:
    """The denoising loss of one batch (the caller decides whether gradients reach the text encoders).

    ``mask`` (B, 1, h, w) in [0, 1] weighs each latent pixel's loss (masked loss: ``trainer.masks``).
    ``sample_weights`` scales each image's loss before the batch mean, as sd-scripts' ``loss_weights``:
    ``training.prior_loss_weight`` for a regularization image, 1 for the user's own.
    """
    hidden, pooled = conditioning
    noisy, noise, timesteps = add_noise(model, latents, noise_offset)
    extra = {}
    if model.arch == "sdxl":
        extra["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": time_ids}
    with precision.context():
        prediction = model.unet(noisy.to(precision.weight_dtype), timesteps, hidden, **extra).sample
    if model.prediction_type == "v_prediction":
        target = model.noise_scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    per_pixel = F.mse_loss(prediction.float(), target.float(), reduction="none")
    if mask is not None:
        # Masked loss, as sd-scripts: multiplied before the mean (not renormalised by the mask's area),
        # so a black pixel contributes no loss and no gradient, and an all-white mask changes nothing.
        per_pixel = per_pixel * mask
    per_sample = per_pixel.mean(dim=(1, 2, 3))
    if min_snr_gamma:
        per_sample = per_sample * min_snr_weights(model, timesteps, min_snr_gamma)
    if sample_weights is not None:
        per_sample = per_sample * sample_weights.to(per_sample.device)
    return per_sample.mean()


def encode_captions(model: BaseModel, texts: list[str], precision: Precision,
                    train_text_encoders: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Text conditioning computed now (with gradients when the text encoders are trained)."""
    with precision.context(), (contextlib.nullcontext() if train_text_encoders else torch.no_grad()):
        return encode_text(model, tokenize(model, texts))


def apply_update(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler, params: list,
                 max_grad_norm: float, after_backward=None) -> None:
    """Backward pass, gradient clipping and the optimizer step (with fp16 loss scaling if needed).

    ``after_backward`` runs between the backward pass and everything that reads the gradients
    (several processes average them there).
    """
    if scaler is not None:
        scaler.scale(loss).backward()
        if after_backward is not None:
            after_backward()  # scaled gradients: every process uses the same scale, so averaging commutes
        scaler.unscale_(optimizer)
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        if after_backward is not None:
            after_backward()
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
