"""Rules about the held-out share of the images (``training.validation_split``)."""

from __future__ import annotations

from loratui.rules import guide
from loratui.rules.engine import Context, Fix, rule


def held_out(images: int, split: float) -> int:
    """About how many images a split holds out: the nearest whole number, at least one."""
    return max(1, round(images * split)) if split > 0 else 0


def _kind_floor(ctx: Context) -> int:
    return guide.DATASET_SIZE.get(ctx.config.kind, guide.DATASET_SIZE["character"])[0]


SUGGESTED_SHARES = (0.1, 0.05)
"""The shares a fix may set, largest first: a tenth is plenty to see the validation loss turn."""


def suggested_split(ctx: Context) -> float:
    """The share both rules' fixes set, so they never offer two: the largest suggested share that leaves
    the kind's minimum to train on (any, while the dataset is unknown), else no split."""
    count = ctx.image_count
    if not count:
        return SUGGESTED_SHARES[0]
    return next((s for s in SUGGESTED_SHARES if count - held_out(count, s) >= _kind_floor(ctx)), 0.0)


def _fix(share: float) -> Fix:
    return Fix({"training.validation_split": share},
               f"hold out {share:g} of the images" if share else "hold out no images")


@rule("validation.too_few_left", "training.validation_split",
      "A validation split that leaves fewer images than the guide's minimum for the kind.")
def too_few_left(ctx: Context):
    split, count = ctx.config.training.validation_split, ctx.image_count
    if not split or not count:
        return None
    floor, held = _kind_floor(ctx), held_out(count, split)
    left = count - held
    if left >= floor:
        return None
    return "warn", (f"Holding out {held} of {count} images leaves {left} to learn from, below the {floor} the guide "
                    f"asks for a {ctx.config.kind} LoRA. A small dataset needs every image; judge it by its samples "
                    "instead."), _fix(suggested_split(ctx))


@rule("validation.large_share", "training.validation_split", "A validation split above 0.2.")
def large_share(ctx: Context):
    split = ctx.config.training.validation_split
    if split <= guide.VALIDATION_SHARE_MAX:
        return None
    return "warn", (f"Holding out {split:g} of the images takes them from training: a tenth is plenty to show the "
                    "validation loss turning up."), _fix(suggested_split(ctx))


@rule("validation.schedule_without_split", "training.validate_every_n_steps",
      "A validation schedule without a validation split.")
def schedule_without_split(ctx: Context):
    if ctx.config.training.validation_split or not ctx.config.training.validate_every_n_steps:
        return None
    return "tip", ("Validating every few steps needs held-out images, and validation_split holds out none: "
                   "nothing is measured."), Fix({"training.validate_every_n_steps": 0}, "stop validating every N steps")
