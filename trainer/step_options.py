"""The settings that shape one training step's noise, timesteps and loss, read once from the config.

``diffusion_loss`` takes this one object instead of a growing list of arguments; the loop builds
it once per run with ``StepOptions.from_config``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepOptions:
    """Noise, timestep range and loss of a training step (the defaults are plain training)."""

    noise_offset: float = 0.0
    multires_noise_iterations: int = 0
    multires_noise_discount: float = 0.3
    ip_noise_gamma: float = 0.0
    min_timestep: int = 0
    max_timestep: int = 1000
    """Exclusive: timesteps are drawn from [min_timestep, max_timestep)."""
    min_snr_gamma: float = 0.0
    debiased_estimation: bool = False
    loss_type: str = "l2"
    huber_c: float = 0.1
    huber_schedule: str = "snr"

    @classmethod
    def from_config(cls, training) -> StepOptions:
        """The options of a config's ``training`` section."""
        return cls(noise_offset=training.noise_offset,
                   multires_noise_iterations=training.multires_noise_iterations,
                   multires_noise_discount=training.multires_noise_discount,
                   ip_noise_gamma=training.ip_noise_gamma, min_timestep=training.min_timestep,
                   max_timestep=training.max_timestep, min_snr_gamma=training.min_snr_gamma,
                   debiased_estimation=training.debiased_estimation, loss_type=training.loss_type,
                   huber_c=training.huber_c, huber_schedule=training.huber_schedule)
