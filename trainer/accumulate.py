"""Gradient accumulation: the gradients of several batches added up into one optimizer update.

A step is an update everywhere (events, schedule, checkpoints, the plan): an epoch's batches are
taken in groups of ``training.gradient_accumulation_steps`` from its start, and the last group
may be shorter (sd-scripts' ceil(batches / accumulation) steps an epoch). Each batch's loss is
scaled by 1 / (its group's size) before its backward pass, so the update follows the mean
gradient of the group's batches, and the step's reported loss is the mean of their losses. (sd-scripts,
through accelerate, divides by the full N even in an epoch's short last group, which shrinks that
group's gradient; Adam-like optimizers hardly feel the scale, and here every group follows its mean.)

A stop, a save or a sample asked for mid-group waits for the update in progress (N batches at most).

Checkpoints, stops and the app's requests happen only between updates, so a saved state always
sits at a group boundary and a resumed run continues exactly where the uninterrupted one would.
"""

from __future__ import annotations

import torch

from trainer.fused import make_update
from trainer.step import backward, finish_update


def group_size(position: int, batches: int, accumulation: int) -> int:
    """How many batches the update that batch ``position`` (0-based in its epoch) belongs to adds up."""
    start = position - position % accumulation
    return min(accumulation, batches - start)


def ends_update(position: int, batches: int, accumulation: int) -> bool:
    """Whether the update happens after batch ``position``: its group is complete, or the epoch ends."""
    return (position + 1) % accumulation == 0 or position + 1 == batches


class Accumulator:
    """Gathers the gradients of one update's batches and applies them as one optimizer step.

    With the fused backward pass each ``add`` is a whole update (the config checks forbid
    accumulating with it: it updates the weights inside the backward pass).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, scaler, params: list[torch.Tensor], max_grad_norm: float,
                 fused: bool, after_backward=None) -> None:
        self.optimizer, self.scaler, self.params = optimizer, scaler, params
        self.max_grad_norm, self.after_backward = max_grad_norm, after_backward
        self._fused = make_update(optimizer, scaler, params, max_grad_norm, fused, after_backward) if fused else None

    def add(self, loss: torch.Tensor, share: float) -> None:
        """Backward pass of one batch's loss, weighted by its ``share`` of the update (1 / group size)."""
        if self._fused is not None:
            self._fused(loss)
        else:
            backward(loss * share if share != 1 else loss, self.scaler)

    def finish(self) -> None:
        """The optimizer step on everything added since the last one."""
        if self._fused is None:
            finish_update(self.optimizer, self.scaler, self.params, self.max_grad_norm, self.after_backward)

    def discard(self) -> None:
        """Drop the gathered gradients without updating (a group with a non-finite loss)."""
        self.optimizer.zero_grad(set_to_none=True)
