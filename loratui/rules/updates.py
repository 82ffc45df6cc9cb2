"""Batches, updates and the effective batch, as the guide means them.

The guide's "batch size" is how many images one update of the weights averages over, and its
step counts count those updates. With gradient accumulation the trainer adds up the gradients of
several batches before one update, and with several processes each process trains its own batch
into the same update, so the guide's batch is ``batch_size × gradient_accumulation_steps ×
num_processes`` and its step count is the batches of an epoch over the accumulation (rounded up:
the last, shorter group of an epoch still makes an update, as in sd-scripts).

The app's step plan (``trainer.contract.plan``) counts updates as the trainer does; ``updates``
turns a number of batches into updates for the fixes' searches, so every rule counts the same thing.
"""

from __future__ import annotations

import math

from loratui.rules.engine import Context


def accumulation(ctx: Context) -> int:
    """``training.gradient_accumulation_steps`` (at least 1)."""
    return max(1, ctx.config.training.gradient_accumulation_steps)


def effective_batch(ctx: Context, batch_size: int | None = None, accumulate: int | None = None) -> int:
    """Images behind one update: batch × accumulation × processes (the config's, or the ones given)."""
    batch = ctx.config.training.batch_size if batch_size is None else batch_size
    steps = accumulation(ctx) if accumulate is None else accumulate
    return batch * steps * max(1, ctx.config.training.num_processes)


def updates(batches_per_epoch: int, epochs: int, accumulate: int) -> int:
    """Updates of a run whose epochs have this many batches each."""
    return math.ceil(batches_per_epoch / max(1, accumulate)) * epochs


def guide_steps(ctx: Context) -> int | None:
    """The steps the guide's targets judge: updates of the user's own images, regularization images left
    out (they double a run's steps without showing the subject more often); None before the dataset is read."""
    return ctx.plan.guide_steps if ctx.plan is not None else None


def steps_words(ctx: Context, steps: int) -> str:
    """``620 steps``, or with regularization images which steps those are and how many the run has in all."""
    plan = ctx.plan
    if plan is None or plan.own_steps is None or steps != plan.own_steps:
        return f"{steps} steps"
    return f"{steps} steps of your own images ({plan.total_steps} with the regularization images)"


def total_updates(ctx: Context) -> int | None:
    """The run's updates (the guide's steps), from the plan; None before the dataset is read."""
    plan = ctx.plan
    if plan is None:
        return None
    return plan.total_steps  # the plan counts updates (accumulation and processes included)
