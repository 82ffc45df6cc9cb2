"""One training step, in small pieces: precision, noise, text conditioning, loss weighting.

The loop (``trainer.loop``) decides *which* images and captions make a batch; this module turns
a batch into a loss and applies the update.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from trainer.losses import loss_elements, min_snr_weights, timestep_weights
from trainer.models import BaseModel, encode_text, tokenize
from trainer.noise import add_noise
from trainer.step_options import StepOptions

__all__ = ["Precision", "StepOptions", "TextEmbeddingCache", "add_noise", "apply_update", "backward",
           "choose_precision", "diffusion_loss", "encode_captions", "finish_update", "min_snr_weights"]


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


def diffusion_loss(model: BaseModel, latents: torch.Tensor, conditioning: tuple[torch.Tensor, torch.Tensor | None],
                   time_ids: torch.Tensor | None, precision: Precision, options: StepOptions,
                   mask: torch.Tensor | None = None, sample_weights: torch.Tensor | None = None) -> torch.Tensor:
    """The denoising loss of one batch (the caller decides whether gradients reach the text encoders).

    ``options`` (``StepOptions.from_config``) picks the noise, the timestep range, the loss type and
    the per-timestep weights. ``mask`` (B, 1, h, w) in [0, 1] weighs each latent pixel's loss (masked
    loss: ``trainer.masks``). ``sample_weights`` scales each image's loss before the batch mean, as
    sd-scripts' ``loss_weights``: ``training.prior_loss_weight`` for a regularization image, 1 for the
    user's own.
    """
    hidden, pooled = conditioning
    noisy, noise, timesteps = add_noise(model, latents, options)
    extra = {}
    if model.arch == "sdxl":
        extra["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": time_ids}
    with precision.context():
        prediction = model.unet(noisy.to(precision.weight_dtype), timesteps, hidden, **extra).sample
    if model.prediction_type == "v_prediction":
        target = model.noise_scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    elements = loss_elements(model, prediction, target, timesteps, options)
    if mask is not None:
        # Masked loss, as sd-scripts: multiplied before the mean (not renormalised by the mask's area),
        # so a black pixel contributes no loss and no gradient, and an all-white mask changes nothing.
        elements = elements * mask
    per_sample = elements.mean(dim=(1, 2, 3))
    weights = timestep_weights(model, timesteps, options)
    if weights is not None:
        per_sample = per_sample * weights
    if sample_weights is not None:
        per_sample = per_sample * sample_weights.to(per_sample.device)
    return per_sample.mean()


def encode_captions(model: BaseModel, texts: list[str], precision: Precision,
                    train_text_encoders: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Text conditioning computed now (with gradients when the text encoders are trained)."""
    with precision.context(), (contextlib.nullcontext() if train_text_encoders else torch.no_grad()):
        return encode_text(model, tokenize(model, texts))


def backward(loss: torch.Tensor, scaler) -> None:
    """Add this loss's gradients to the weights' (scaled first when fp16 loss scaling is on)."""
    (scaler.scale(loss) if scaler is not None else loss).backward()


def finish_update(optimizer: torch.optim.Optimizer, scaler, params: list, max_grad_norm: float,
                  after_backward=None) -> None:
    """Gradient clipping and the optimizer step on the gradients gathered so far, then clear them.

    ``after_backward`` runs before anything reads the gradients (several processes average them there).
    """
    if after_backward is not None:
        after_backward()  # scaled gradients: every process uses the same scale, so averaging commutes
    if scaler is not None:
        scaler.unscale_(optimizer)
    if max_grad_norm:
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def apply_update(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler, params: list,
                 max_grad_norm: float, after_backward=None) -> None:
    """Backward pass, gradient clipping and the optimizer step (with fp16 loss scaling if needed)."""
    backward(loss, scaler)
    finish_update(optimizer, scaler, params, max_grad_norm, after_backward)
