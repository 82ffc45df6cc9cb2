"""Sample-image samplers by sd-scripts' names, each built from the model's own noise schedule.

``output.sample_sampler`` (and a prompt's ``--ss``) name the sampler as sd-scripts does; each maps
to the diffusers scheduler sd-scripts uses for it. Every one is made ``from_config`` of the
schedule the model trains with, so its betas and prediction type (epsilon or v-prediction) are the
model's, whichever sampler draws.

Zero terminal SNR needs two things from a sampler: the first step must start from the last
timestep, the pure-noise one the model was trained on ("trailing" spacing), and the schedule must
be the rescaled one. Euler, Euler a, DDIM and DPM++ rescale it themselves (their
``rescale_betas_zero_snr``, which also keeps the last step's noise level finite). Heun, LMS and PNDM
cannot; they are given the model's rescaled betas directly, with the last step's signal nudged from
zero to the same tiny value the others use, since a step with no signal at all has an infinite
noise level that those three would divide by.
"""

from __future__ import annotations

from typing import Any

import torch

from trainer.contract.sample_prompts import SAMPLERS

SAMPLER_LABELS = {"euler": "Euler", "euler_a": "Euler a", "ddim": "DDIM", "dpmsolver++": "DPM++ 2M",
                  "heun": "Heun", "lms": "LMS", "pndm": "PNDM"}
"""Each sampler as A1111 names it, for the pictures' parameters text."""

_RESCALING = ("euler", "euler_a", "ddim", "dpmsolver++")
"""Samplers whose diffusers scheduler rescales the schedule for zero terminal SNR itself."""

_LAST_SIGNAL = 2.0**-24
"""What diffusers sets the last step's alphas_cumprod to for zero terminal SNR (instead of 0)."""


def build_scheduler(name: str, noise_scheduler: Any) -> Any:
    """The diffusers scheduler sd-scripts uses for sampler ``name``, on the model's own schedule."""
    from diffusers import (
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        EulerAncestralDiscreteScheduler,
        EulerDiscreteScheduler,
        HeunDiscreteScheduler,
        PNDMScheduler,
    )

    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; one of {', '.join(SAMPLERS)}")
    kinds = {"euler": EulerDiscreteScheduler, "euler_a": EulerAncestralDiscreteScheduler, "ddim": DDIMScheduler,
             "dpmsolver++": DPMSolverMultistepScheduler, "heun": HeunDiscreteScheduler, "pndm": PNDMScheduler}
    # LMS only when asked for: diffusers before 0.36 imports scipy with its LMS module, and scipy is not a
    # dependency, so building it for every sampler broke sampling altogether on those versions.
    scheduler = _lms_scheduler() if name == "lms" else kinds[name]
    config = noise_scheduler.config
    extra: dict[str, Any] = {}
    if name == "dpmsolver++":
        extra["algorithm_type"] = "dpmsolver++"
    if name == "pndm":
        extra["skip_prk_steps"] = True  # as the diffusers Stable Diffusion pipelines configure it
    if bool(config.get("rescale_betas_zero_snr", False)):
        extra["timestep_spacing"] = "trailing"
        if name not in _RESCALING:
            extra["trained_betas"] = _zero_snr_betas(noise_scheduler.betas).tolist()
            extra["rescale_betas_zero_snr"] = False
    return scheduler.from_config(config, **extra)


def _zero_snr_betas(betas: torch.Tensor) -> torch.Tensor:
    """The rescaled betas with the last step's alphas_cumprod raised from 0 to ``_LAST_SIGNAL``."""
    cumulative = torch.cumprod(1 - betas.double(), 0)
    cumulative[-1] = _LAST_SIGNAL
    previous = torch.cat([torch.ones(1, dtype=torch.float64), cumulative[:-1]])
    return 1 - cumulative / previous


def _lms_scheduler() -> type:
    """diffusers' LMS scheduler, its coefficients integrated without scipy (not a dependency here).

    Each LMS coefficient is the integral of a Lagrange basis polynomial of degree at most order − 1
    between two noise levels; Gauss–Legendre quadrature with enough points integrates such a
    polynomial exactly, where diffusers asks scipy for an adaptive approximation of it.
    """
    import numpy as np

    try:
        from diffusers.schedulers.scheduling_lms_discrete import LMSDiscreteScheduler
    except ImportError as exc:  # diffusers before 0.36 imports scipy at the top of this module
        raise RuntimeError(f"the lms sampler needs {exc.name or 'scipy'} with this diffusers version: "
                           "`pip install scipy`, or set output.sample_sampler (or the prompt's --ss) to another "
                           "sampler") from exc

    class LMSScheduler(LMSDiscreteScheduler):
        def get_lms_coefficient(self, order: int, t: int, current_order: int) -> float:
            sigmas = [float(s) for s in self.sigmas]
            low, high = sigmas[t], sigmas[t + 1]
            nodes, weights = np.polynomial.legendre.leggauss(max(order, 1))
            taus = (high - low) / 2 * nodes + (high + low) / 2
            basis = np.ones_like(taus)
            for k in range(order):
                if k != current_order:
                    basis *= (taus - sigmas[t - k]) / (sigmas[t - current_order] - sigmas[t - k])
            return float((high - low) / 2 * np.sum(weights * basis))

    return LMSScheduler
