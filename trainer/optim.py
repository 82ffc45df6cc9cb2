"""Optimizers and learning-rate schedules, built from the config."""

from __future__ import annotations

import torch

from trainer.config import OptimizerConfig, SchedulerConfig
from trainer.errors import TrainerError


def build_optimizer(config: OptimizerConfig, groups: list[dict]) -> torch.optim.Optimizer:
    """The configured optimizer over the network's parameter groups."""
    if config.name == "adamw":
        return torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    if config.name == "adamw8bit":
        try:
            import bitsandbytes as bnb
        except Exception as exc:  # a broken CUDA install surfaces here, not as ImportError only
            raise TrainerError("optimizer", f"adamw8bit needs bitsandbytes, which failed to load: {exc}",
                               "Install bitsandbytes for this machine, or set optimizer.name = \"adamw\".") from exc
        return bnb.optim.AdamW8bit(groups, weight_decay=config.weight_decay)
    raise TrainerError("optimizer", f"unknown optimizer {config.name!r}")


def build_scheduler(config: SchedulerConfig, optimizer: torch.optim.Optimizer, total_steps: int):
    """The configured learning-rate schedule, stepped once per training step."""
    from diffusers.optimization import get_scheduler

    name = config.name
    if name == "constant" and config.warmup_steps:
        name = "constant_with_warmup"
    return get_scheduler(name, optimizer, num_warmup_steps=config.warmup_steps,
                         num_training_steps=total_steps, num_cycles=config.restarts)


def optimizer_description(config: OptimizerConfig) -> str:
    """How sd-scripts names the optimizer in its metadata: ``Class(args)``."""
    cls = {"adamw": "torch.optim.AdamW", "adamw8bit": "bitsandbytes.optim.AdamW8bit"}[config.name]
    return f"{cls}(weight_decay={config.weight_decay})"
