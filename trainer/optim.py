"""Optimizers and learning-rate schedules, built from the config.

The optional optimizer packages (pytorch-optimizer, prodigyopt, prodigy-plus-schedule-free) are
imported only when chosen, so a plain AdamW run does not pay for them.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from trainer.contract.config.schema import OptimizerConfig, SchedulerConfig
from trainer.contract.errors import TrainerError

CAME_BETAS = (0.9, 0.999, 0.9999)
"""CAME's three decay rates, as its authors and LoRA_Easy_Training_Scripts use them."""

_CLASSES = {
    "adamw": "torch.optim.AdamW",
    "adamw8bit": "bitsandbytes.optim.AdamW8bit",
    "came": "pytorch_optimizer.CAME",
    "adafactor": "transformers.optimization.Adafactor",
    "prodigy": "prodigyopt.Prodigy",
    "prodigy_plus": "prodigyplus.ProdigyPlusScheduleFree",
}
"""The class behind each optimizer name, as sd-scripts writes it into ``ss_optimizer``."""


def build_optimizer(config: OptimizerConfig, groups: list[dict], fused: bool = False) -> torch.optim.Optimizer:
    """The configured optimizer over the network's parameter groups (each group carries its own lr).

    ``fused`` asks for an optimizer that will be stepped one weight at a time from gradient hooks
    (see ``trainer.fused``); only Prodigy Plus needs to know, the others are stepped the same way.
    """
    name, decay = config.name, config.weight_decay
    if name == "adamw":
        return torch.optim.AdamW(groups, weight_decay=decay)
    if name == "adamw8bit":
        bnb = _load("bitsandbytes", name, "bitsandbytes")
        return bnb.optim.AdamW8bit(groups, weight_decay=decay)
    if name == "came":
        pytorch_optimizer = _load("pytorch_optimizer", name, "pytorch-optimizer")
        return pytorch_optimizer.CAME(groups, lr=config.unet_lr, betas=CAME_BETAS, weight_decay=decay)
    if name == "adafactor":
        # Fixed rate, no update scaling by parameter size: Adafactor as a plain optimizer at the given rate,
        # as sd-scripts runs it with a schedule (its relative-step mode would ignore the configured rate).
        from transformers.optimization import Adafactor

        return Adafactor(groups, lr=config.unet_lr, relative_step=False, scale_parameter=False,
                         warmup_init=False, weight_decay=decay)
    if name == "prodigy":
        prodigyopt = _load("prodigyopt", name, "prodigyopt")
        return prodigyopt.Prodigy(groups, lr=1.0, weight_decay=decay)
    if name == "prodigy_plus":
        prodigyplus = _load("prodigyplus", name, "prodigy-plus-schedule-free")
        return prodigyplus.ProdigyPlusScheduleFree(groups, lr=1.0, weight_decay=decay, fused_back_pass=fused)
    raise TrainerError("optimizer", f"unknown optimizer {name!r}")


def _load(module: str, name: str, package: str):
    """Import an optimizer's package, turning a missing or broken install into advice."""
    import importlib

    try:
        return importlib.import_module(module)
    except Exception as exc:  # a broken CUDA install (bitsandbytes) surfaces here, not as ImportError only
        raise TrainerError("optimizer", f"{name} needs {package}, which failed to load: {exc}",
                           f"Install it (pip install {package}), or set optimizer.name = \"adamw\".") from exc


def build_scheduler(config: SchedulerConfig, optimizer: torch.optim.Optimizer, total_steps: int):
    """The configured learning-rate schedule, stepped once per training step."""
    if config.name == "rex":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: rex_factor(step, config.warmup_steps,
                                                                                    total_steps))
    from diffusers.optimization import get_scheduler

    name = config.name
    if name == "constant" and config.warmup_steps:
        name = "constant_with_warmup"
    return get_scheduler(name, optimizer, num_warmup_steps=config.warmup_steps,
                         num_training_steps=total_steps, num_cycles=config.restarts)


def rex_factor(step: int, warmup: int, total: int) -> float:
    """The REX schedule's multiplier of each group's rate at ``step`` (0-based), after a linear warmup.

    The curve is pytorch-optimizer's ``REXScheduler`` (Chen et al., "REX: Revisiting Budgeted
    Training"): ``(1 - p) / (1 - p / 2)`` for progress ``p`` from 0 to 1, with a minimum of 0. That
    class is not used directly because it gives every group the same rate (the UNet and text
    encoder rates differ here), has no warmup, and trains its first step at the minimum rate;
    as a multiplier the first step after warmup trains at the full rate. Warmup rises from 0
    as diffusers' warmups do.
    """
    if step < warmup:
        return step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if progress >= 1:
        return 0.0
    return (1 - progress) / (1 - progress / 2)


def is_schedule_free(optimizer: torch.optim.Optimizer) -> bool:
    """Whether the optimizer keeps averaged weights that it swaps in with ``eval()``."""
    return callable(getattr(optimizer, "eval", None)) and callable(getattr(optimizer, "train", None))


def start_training(optimizer: torch.optim.Optimizer) -> None:
    """Put a schedule-free optimizer's weights in their training form (a no-op for the others).

    A resumed run's saved weights are the averaged form (saving happens in eval mode), and the
    optimizer's state remembers that, so this also restores the training form after a resume.
    """
    if is_schedule_free(optimizer):
        optimizer.train()


@contextlib.contextmanager
def averaged_weights(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Within the block the network holds the weights to use (sample or save); training form after.

    Schedule-free optimizers train on an interpolation of their iterates; the averaged weights
    they converge to are the ones that should be drawn with and saved.
    """
    if not is_schedule_free(optimizer):
        yield
        return
    optimizer.eval()
    try:
        yield
    finally:
        optimizer.train()


def optimizer_description(config: OptimizerConfig) -> str:
    """How sd-scripts names the optimizer in its metadata: ``Class(args)``."""
    args = f"weight_decay={config.weight_decay}"
    if config.name == "came":
        args += f",betas={CAME_BETAS}"
    return f"{_CLASSES[config.name]}({args})"
