"""The noise a training step adds to its latents, and the timesteps it adds it at.

Semantics follow sd-scripts (``get_noise_noisy_latents_and_timesteps`` and ``pyramid_noise_like``):

- the noise offset shifts each image and channel by one random amount;
- multi-resolution (pyramid) noise adds layers of ever coarser noise, each weakened by
  ``discount`` to the power of its layer, then rescales the sum to unit variance;
- timesteps are drawn uniformly from [min_timestep, max_timestep);
- input perturbation (``ip_noise_gamma``) noises the input with noise + γ·extra while the model
  is still asked to predict the plain noise.

One difference, on purpose: every random number is drawn image by image, in a fixed order, and the
pyramid is rescaled per image. So an image's noise depends only on its place in the random stream,
never on the batch it is in, and accumulating N batches of B images trains exactly like one batch
of N·B (sd-scripts rescales the pyramid over the whole batch; both give unit variance).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainer.models import BaseModel
from trainer.step_options import StepOptions


def pyramid_noise(noise: torch.Tensor, iterations: int, discount: float) -> torch.Tensor:
    """``noise`` (one image: 1 × C × H × W) with ``iterations`` layers of coarser noise added, at unit variance.

    Layer i is drawn at 1/rⁱ of the size, r random in [2, 4), upsampled bilinearly and weighted by
    discountⁱ; the layers stop at a 1-pixel side. Layer 0 is full-size noise at weight 1, as in sd-scripts.
    """
    _, channels, height, width = noise.shape
    total = noise.clone()
    for i in range(iterations):
        r = float(torch.rand(()).item()) * 2 + 2  # a random scale, so the layers do not all align on one grid
        h, w = max(1, int(height / r ** i)), max(1, int(width / r ** i))
        layer = torch.randn(1, channels, h, w, device=noise.device, dtype=noise.dtype)
        total += F.interpolate(layer, size=(height, width), mode="bilinear") * discount ** i
        if h == 1 or w == 1:
            break
    return total / total.std()


def sample_noise(latent: torch.Tensor, options: StepOptions) -> torch.Tensor:
    """The noise the model will be asked to predict for one image (1 × C × H × W)."""
    noise = torch.randn_like(latent)
    if options.noise_offset:
        noise = noise + options.noise_offset * torch.randn(1, latent.shape[1], 1, 1, device=latent.device)
    if options.multires_noise_iterations:
        noise = pyramid_noise(noise, options.multires_noise_iterations, options.multires_noise_discount)
    return noise


def timestep_range(model: BaseModel, options: StepOptions) -> tuple[int, int]:
    """[low, high) of the timesteps trained, within the scheduler's own range."""
    steps = model.noise_scheduler.config.num_train_timesteps
    high = min(options.max_timestep, steps)
    return min(options.min_timestep, high - 1), high


def add_noise(model: BaseModel, latents: torch.Tensor, options: StepOptions) -> tuple[torch.Tensor, ...]:
    """Noisy latents for random timesteps: (noisy input, target noise, timesteps).

    With ``ip_noise_gamma`` the input is noised with the target noise plus γ times extra noise.
    """
    low, high = timestep_range(model, options)
    inputs, targets, timesteps = [], [], []
    for latent in latents.split(1):
        noise = sample_noise(latent, options)
        timestep = torch.randint(low, high, (1,), device=latents.device)
        used = noise + options.ip_noise_gamma * torch.randn_like(latent) if options.ip_noise_gamma else noise
        inputs.append(used)
        targets.append(noise)
        timesteps.append(timestep)
    noise, used, timesteps = torch.cat(targets), torch.cat(inputs), torch.cat(timesteps)
    return model.noise_scheduler.add_noise(latents, used, timesteps), noise, timesteps
