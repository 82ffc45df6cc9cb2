"""The tiny-dataset settings as one plan: repeats, epochs and batch chosen together.

The guide's tiny-dataset rules (15–25 repeats, 15–20 epochs, batch 1–2) each sound right alone, but
together they multiply: 15 images × 20 repeats × 15 epochs ÷ 2 is 2250 steps, past the 2000 where
the guide warns of an overcooked LoRA. Fixed one rule at a time they fought (the step-count fix
computed at batch 4, then the batch fix doubling it). Here they are chosen jointly, and the rules
``tiny.repeats``, ``tiny.epochs``, ``tiny.batch`` and the step count's fix for a tiny dataset all
read this one plan, so their fixes agree and applying them all lands where the plan says:

- values already within the guide's ranges stay as they are (the smallest change);
- repeats set by kohya folders (``N_name``) stay the folders' while their average is in range;
  when it is not, the plan turns ``dataset.folder_name_repeats`` off, so that ``dataset.repeats``
  reaches every image (the folders keep their names; renaming them is the way to keep
  different weights per folder, which the advice names);
- the run must stay between the guide's danger limits (200 and 2000 steps); among what does, the
  count nearest the middle of the tiny aim (800–1200) wins;
- when no choice within the ranges keeps it between 200 and 2000 (repeats fixed by folders, very
  few images), the epochs leave their range as little as they can, and the rule says why.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass

from loratui.rules import guide
from loratui.rules.engine import Context
from loratui.rules.targets import batch_toward, targets_of
from loratui.rules.updates import accumulation, effective_batch
from trainer.contract.dataset_scan import parse_repeat_folder
from trainer.contract.plan import assign_bucket, steps_per_epoch
from trainer.contract.validation_split import split_images


@dataclass(frozen=True)
class TinyPlan:
    """The tiny-dataset settings the rules steer to, and the steps they give."""

    repeats: int
    """``dataset.repeats`` (unchanged when every image is in a kohya folder that keeps its repeats)."""
    epochs: int
    batch_size: int
    steps: int
    accumulation: int = 1
    """``training.gradient_accumulation_steps``, chosen with the batch so that the effective batch is 1–2
    (``tiny_batch_choice``)."""
    folder_name_repeats: bool = True
    """``dataset.folder_name_repeats``: off when the folders' names give too few or too many repeats."""
    epochs_outside: bool = False
    """True when no epoch count within 15–20 keeps the run between 200 and 2000 steps, so the plan leaves it."""


def in_repeat_folder(ctx: Context, image) -> bool:
    """Whether an image is in a kohya ``N_name`` folder (whatever ``dataset.folder_name_repeats`` says)."""
    return image.path.parent != ctx.scan.root and parse_repeat_folder(image.path.parent.name) is not None


def uses_default_repeats(ctx: Context, image, folder_name_repeats: bool | None = None) -> bool:
    """Whether ``dataset.repeats`` applies to an image: it is not in a kohya ``N_name`` folder, or
    ``folder_name_repeats`` (by default the config's) is off."""
    if folder_name_repeats is None:
        folder_name_repeats = ctx.config.dataset.folder_name_repeats
    return not folder_name_repeats or not in_repeat_folder(ctx, image)


def epoch_batches(ctx: Context, batch_size: int, folder_name_repeats: bool | None = None, accumulate: int = 1):
    """Steps (optimizer updates) per epoch as a function of ``dataset.repeats``, at this batch size and
    accumulation: the batches of the user's own images, shared among ``training.num_processes`` and added
    up ``accumulate`` at a time (the last group rounded up).

    The buckets are counted once: the advice searches hundreds of repeat and epoch pairs, and
    recounting every image for each made the settings screen's checks slow on large folders.
    """
    config = ctx.config
    resolution = config.dataset.resolution or guide.RESOLUTION.get(ctx.arch or "sd15", 768)
    fixed: Counter[tuple[int, int]] = Counter()
    loose: Counter[tuple[int, int]] = Counter()
    # Only the images the validation split leaves are trained on, as the trainer and the app's plan count.
    training, _ = split_images(ctx.scan.images, config.training.validation_split, config.training.validation_seed)
    for image in training:
        bucket = assign_bucket(image.width, image.height, resolution, config.dataset.buckets,
                               config.dataset.bucket_upscale)
        if uses_default_repeats(ctx, image, folder_name_repeats):
            loose[bucket] += 1
        else:
            fixed[bucket] += parse_repeat_folder(image.path.parent.name)[0]
    # Regularization images are left out: the guide's steps count how often the subject is seen, which
    # they do not change (``StepPlan.guide_steps``).
    processes = config.training.num_processes

    @functools.lru_cache(maxsize=None)  # the search asks for each repeat count once per epoch count
    def batches(repeats: int) -> int:
        total = sum(-(-(fixed[b] + repeats * loose[b]) // batch_size) for b in set(fixed) | set(loose))
        return steps_per_epoch(total, accumulate, processes)
    return batches


def tiny_batch_choice(ctx: Context) -> tuple[int, int]:
    """(batch size, accumulation) for a tiny dataset: the effective batch brought to the guide's 1–2,
    the way every batch fix brings it (``targets.batch_toward``); kept as it is when already there."""
    if effective_batch(ctx) <= guide.TINY_BATCH_MAX and not ctx.config.training.fused_backward_pass:
        return ctx.config.training.batch_size, accumulation(ctx)
    return batch_toward(ctx, targets_of(ctx).batch_size)


def tiny_plan(ctx: Context) -> TinyPlan | None:
    """The jointly chosen settings for a tiny dataset; None when the dataset is not tiny or not known."""
    if not ctx.is_tiny_dataset or ctx.plan is None or not ctx.scan.images:
        return None
    config = ctx.config
    repeats, epochs = config.dataset.repeats, config.training.epochs
    batch, accumulate = tiny_batch_choice(ctx)
    r_low, r_high = guide.TINY_REPEATS
    e_low, e_high = guide.TINY_EPOCHS
    folder_names = config.dataset.folder_name_repeats
    average = ctx.plan.samples_per_epoch / ctx.plan.images
    # (folder_name_repeats, repeats) choices. When dataset.repeats reaches every image, any count in the tiny
    # range. When kohya folders set some repeats by their names: those stay while the average is in range
    # (dataset.repeats for the other images would move the average out of it); else the switch goes off, so
    # that dataset.repeats reaches every image.
    tiny_range = range(r_low, r_high + 1)
    if all(uses_default_repeats(ctx, i) for i in ctx.scan.images):
        repeat_options = [(folder_names, r) for r in tiny_range]
    elif r_low <= average <= r_high:
        repeat_options = [(folder_names, repeats)]
    else:
        repeat_options = [(False, r) for r in tiny_range]
    epoch_options = range(e_low, e_high + 1)
    low, high = guide.TINY_STEPS_AIM
    aim = (low + high) / 2
    batches = {flag: epoch_batches(ctx, batch, flag, accumulate) for flag in {flag for flag, _ in repeat_options}}

    def changed(flag: bool, r: int, e: int) -> int:
        return (flag != folder_names) + (r != repeats) + (e != epochs)

    def score(flag: bool, r: int, e: int, steps: int) -> tuple:
        # Within the aim, the smallest change wins (values already in range stay); outside it, the nearest.
        if low <= steps <= high:
            return (0, changed(flag, r, e), abs(steps - aim))
        return (1, abs(steps - aim), changed(flag, r, e))

    scored = [(score(flag, r, e, steps), flag, r, e, steps) for flag, r in repeat_options for e in epoch_options
              if guide.STEPS_DANGER_BELOW <= (steps := batches[flag](r) * e) <= guide.STEPS_DANGER_ABOVE]
    if scored:
        _, flag, r, e, steps = min(scored)
        return TinyPlan(r, e, batch, steps, accumulate, folder_name_repeats=flag)
    # No choice within the ranges stays between the danger limits (very few images): the step count's
    # limits come first, so the epochs leave their range, as little as they can.
    outside = [(max(e_low - e, e - e_high, 0), abs(steps - aim), changed(flag, r, e), flag, r, e, steps)
               for flag, r in repeat_options for e in range(1, 201)
               if guide.STEPS_DANGER_BELOW <= (steps := batches[flag](r) * e) <= guide.STEPS_DANGER_ABOVE]
    if not outside:
        return None  # no epoch count helps; the step count's danger says so
    *_, flag, r, e, steps = min(outside)
    return TinyPlan(r, e, batch, steps, accumulate, epochs_outside=True, folder_name_repeats=flag)


def plan_changes(ctx: Context, plan: TinyPlan) -> dict[str, int]:
    """The settings that differ from the plan, as fix changes."""
    config = ctx.config
    changes = {"dataset.folder_name_repeats": plan.folder_name_repeats, "dataset.repeats": plan.repeats,
               "training.epochs": plan.epochs, "training.batch_size": plan.batch_size,
               "training.gradient_accumulation_steps": plan.accumulation}
    current = {"dataset.folder_name_repeats": config.dataset.folder_name_repeats,
               "dataset.repeats": config.dataset.repeats, "training.epochs": config.training.epochs,
               "training.batch_size": config.training.batch_size,
               "training.gradient_accumulation_steps": config.training.gradient_accumulation_steps}
    return {key: value for key, value in changes.items() if current[key] != value}
