"""The guide's targets for one situation: the single source the rules, their fixes, the presets and
the checklist all read, so no two of them can recommend different values.

A situation is the kind of LoRA (character, style, concept), whether the dataset is tiny (fewer
than 16 images, where the guide's special rules apply) and the architecture (which sets the
resolution). Before this model the checklist asked for the character run's 5e-4 / 1e-4 and
500–750 steps while the tiny-dataset fixes set 3e-4 / 5e-5 and 800–1200 steps, and a style preset
set rates the checklist then marked wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from loratui.rules import guide
from loratui.rules.weights_file import trained_rate


@dataclass(frozen=True)
class Targets:
    """What the guide recommends for one situation."""

    kind: str
    tiny: bool
    """True for a tiny dataset (fewer than 16 images)."""
    arch: str | None
    network_type: str
    dim: int
    alpha: float
    unet_lr: float
    text_encoder_lr: float
    optimizer: str
    scheduler: str
    restarts: int
    batch_size: int
    repeats: int
    """The starting repeats (the step count's fix adjusts them to the dataset)."""
    epochs: int
    """The starting epochs (likewise)."""
    steps_aim: tuple[int, int]
    resolution: int | None
    """The architecture's training size; None while the architecture is unknown."""

    @property
    def situation(self) -> str:
        """A few words naming the situation ("a tiny-dataset character"), for labels and messages."""
        return f"a tiny-dataset {self.kind}" if self.tiny else f"a {self.kind}"

    def values(self) -> dict[str, Any]:
        """The config values of this situation's proven run (what its preset sets)."""
        values: dict[str, Any] = {
            "kind": self.kind, "network.type": self.network_type, "network.dim": self.dim, "network.alpha": self.alpha,
            "optimizer.name": self.optimizer, "optimizer.unet_lr": self.unet_lr,
            "optimizer.text_encoder_lr": self.text_encoder_lr, "scheduler.name": self.scheduler,
            "scheduler.restarts": self.restarts, "training.batch_size": self.batch_size,
            "training.epochs": self.epochs, "dataset.repeats": self.repeats,
        }
        if self.network_type == "locon":
            values |= {"network.conv_dim": self.dim, "network.conv_alpha": self.alpha}
        if self.resolution is not None:
            values["dataset.resolution"] = self.resolution
        return values


_STARTING_COUNTS = {"character": (10, 10), "style": (2, 15), "concept": (5, 10)}
"""(repeats, epochs) each kind's preset starts from: the guide's 25 × 10 × 10 ÷ 4 example for a character,
more epochs over fewer repeats for a style's larger dataset, fewer repeats for a concept's 20–100 images."""


def targets_for(kind: str = "character", arch: str | None = None, tiny: bool = False) -> Targets:
    """The guide's targets for a kind of LoRA, an architecture (None: unknown) and a dataset size."""
    kind = kind if kind in guide.DATASET_SIZE else "character"
    gentle = tiny or kind == "style"
    if tiny:
        repeats, epochs = guide.TINY_REPEATS[0], guide.TINY_EPOCHS[0]
    else:
        repeats, epochs = _STARTING_COUNTS[kind]
    dim, alpha = guide.PROVEN_DIM_ALPHA
    return Targets(
        kind=kind, tiny=tiny, arch=arch,
        network_type="locon" if kind == "style" else "lora", dim=dim, alpha=float(alpha),
        unet_lr=guide.GENTLE_UNET_LR if gentle else guide.PROVEN_UNET_LR,
        text_encoder_lr=guide.GENTLE_TE_LR if gentle else guide.PROVEN_TE_LR,
        optimizer="adamw8bit", scheduler="cosine_with_restarts", restarts=3,
        batch_size=guide.TINY_BATCH_MAX if tiny else 4, repeats=repeats, epochs=epochs,
        steps_aim=guide.TINY_STEPS_AIM if tiny else guide.STEPS_AIM,
        resolution=guide.RESOLUTION.get(arch) if arch else None,
    )


def is_tiny(image_count: int | None) -> bool:
    """The guide's "tiny dataset": fewer than 16 images, where its special rules apply."""
    return image_count is not None and image_count <= guide.TINY_DATASET[1]


def targets_of(context) -> Targets:
    """The targets for what a rules ``Context`` knows: its kind, dataset size and architecture, and the
    GPU. When the run does not fit the GPU and the memory savers lower the batch without accumulating
    (the fused backward pass cannot), that batch is the target (the guide's "batch 4, or 2 if VRAM is
    crying"), so no fix raises it again; when they accumulate, the effective batch stays the guide's."""
    targets = targets_for(context.config.kind, context.arch, is_tiny(context.image_count))
    cap = memory_batch(context)
    if cap is not None and "training.gradient_accumulation_steps" not in context.estimates.savers.changes:
        targets = replace(targets, batch_size=min(targets.batch_size, cap))
    return targets


def memory_batch(context) -> int | None:
    """The batch size the memory savers set when the run does not fit the GPU; None when they leave it."""
    estimates = context.estimates
    savers = estimates.savers if estimates is not None and estimates.fits is False else None
    if savers is None:
        return None
    return savers.changes.get("training.batch_size")


def batch_toward(context, target: int) -> tuple[int, int]:
    """(batch size, accumulation) whose effective batch (× processes) is ``target``, or as near as whole
    numbers get, for the fixes of the batch rules: a batch that fits in memory keeps it and accumulates up
    to the target (the guide's batch 4 as 2 × 2 when memory is short); a larger one comes down to the target
    with no accumulation. Never above the memory savers' batch, and batch 1 without accumulation for the
    fused backward pass."""
    config = context.config
    if config.training.fused_backward_pass:
        return 1, 1
    processes = max(1, config.training.num_processes)
    cap = memory_batch(context)
    batch = config.training.batch_size if cap is None else min(config.training.batch_size, cap)
    if batch * processes <= target:
        return batch, max(1, target // (batch * processes))
    return max(1, target // processes), 1


def guide_unet_lr(ctx) -> float:
    """The guide's UNet rate for the situation: its proven rate, or the gentle 3e-4 when the run has many
    epochs (where ``epochs.high_lr`` would flag the proven 5e-4)."""
    if ctx.config.training.epochs > guide.MANY_EPOCHS:
        return min(targets_of(ctx).unet_lr, guide.GENTLE_UNET_LR)
    return targets_of(ctx).unet_lr


def safe_unet_lr(ctx) -> float:
    """The UNet rate every fix that lowers it sets: the guide's for the situation, and no more than the rate
    a ``network.weights`` file was trained at when the run continues from one (``continue.rate_restart``)."""
    rate = guide_unet_lr(ctx)
    continued = trained_rate(ctx.config.network.weights)
    return min(rate, continued) if continued else rate


def safe_te_lr(ctx) -> float:
    """The text-encoder rate every fix that lowers it sets: the situation's proven rate while it stays at
    most half the UNet's, else a fifth of the UNet's (so the rules on both never offer two values)."""
    proven, unet = targets_of(ctx).text_encoder_lr, ctx.config.optimizer.unet_lr
    if unet <= 0 or proven <= unet / 2:
        return proven
    return float(f"{unet / 5:.0e}")
