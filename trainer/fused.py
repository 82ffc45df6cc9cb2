"""The fused backward pass: each weight is updated as soon as its gradient is ready.

In an ordinary step every gradient of the network exists at once between ``backward()`` and
``optimizer.step()``. Here a post-accumulate-grad hook on each trainable weight steps the
optimizer for that weight alone and frees its gradient, so at most a few gradients exist at any
moment. The result is the same update as the ordinary loop for optimizers whose update of one
weight depends only on that weight (AdamW, CAME, Adafactor), and Prodigy Plus supports it itself.

What cannot carry over: clipping the norm of *all* gradients together (they never exist
together), so each weight's gradient is clipped on its own, as sd-scripts' fused pass does; and
fp16 loss scaling, whose unscale-and-check needs every gradient before any update.

What it is worth for a LoRA, honestly: the only gradients are the LoRA's own (the base model is
frozen), so it saves at most their fp32 size, 4 bytes per trained weight. An SDXL UNet LoRA at
dim 8 has 21.3 M weights in 1,444 tensors (``loratui.estimates.lora_parameter_tensors("sdxl",
"lora", 8, 8, False)``): about 85 MB saved, against ~6.8 GB of bf16 base weights (dim 32: 340 MB;
SD1.5 at dim 8: 14 MB). The pass was made for full fine-tuning, where the gradients are as big as
the model. The cost: one optimizer call per tensor (1,444 per step for that SDXL LoRA) instead of
one fused multi-tensor step, and per-tensor instead of global gradient clipping.
"""

from __future__ import annotations

from typing import Callable

import torch

from trainer.contract.errors import TrainerError
from trainer.step import apply_update


class FusedBackward:
    """Hooks that step ``optimizer`` weight by weight during ``loss.backward()``."""

    def __init__(self, optimizer: torch.optim.Optimizer, params: list[torch.Tensor], max_grad_norm: float) -> None:
        self.optimizer = optimizer
        self.max_grad_norm = max_grad_norm
        self._group_of = {p: group for group in optimizer.param_groups for p in group["params"]}
        # Prodigy Plus built with fused_back_pass=True steps one weight with step_param and counts
        # the weights it has seen to know when a whole step is done.
        self._own_step = optimizer.param_groups[0].get("fused_back_pass", False) and hasattr(optimizer, "step_param")
        self._stepped: set[int] = set()
        self._handles = [p.register_post_accumulate_grad_hook(self._hook) for p in params]

    def _hook(self, param: torch.Tensor) -> None:  # must return None: torch refuses hooks that return a value
        if self.max_grad_norm:
            torch.nn.utils.clip_grad_norm_([param], self.max_grad_norm)
        group = self._group_of[param]
        if self._own_step:
            self.optimizer.step_param(param, group)
        else:
            self._step_one(param, group)
        self._stepped.add(id(param))
        param.grad = None  # the memory saving: this gradient is gone before the next one is computed

    def _step_one(self, param: torch.Tensor, group: dict) -> None:
        """One ordinary ``optimizer.step()`` that sees only ``param``.

        Every group's list is narrowed for the call (and restored), so the step costs the same
        whatever the size of the network; state is kept per weight, so nothing else changes.
        """
        saved = [g["params"] for g in self.optimizer.param_groups]
        try:
            for g in self.optimizer.param_groups:
                g["params"] = [param] if g is group else []
            self.optimizer.step()
        finally:
            for g, params in zip(self.optimizer.param_groups, saved):
                g["params"] = params

    def update(self, loss: torch.Tensor) -> None:
        """Backward pass with the updates inside it."""
        self._stepped.clear()
        loss.backward()
        if self._own_step:
            # Weights that got no gradient still count towards Prodigy Plus's end of step.
            for param, group in self._group_of.items():
                if id(param) not in self._stepped:
                    self.optimizer.step_param(param, group)

    def remove(self) -> None:
        """Take the hooks off the weights."""
        for handle in self._handles:
            handle.remove()


def make_update(optimizer: torch.optim.Optimizer, scaler, params: list[torch.Tensor], max_grad_norm: float,
                fused: bool, after_backward: Callable[[], None] | None = None) -> Callable[[torch.Tensor], None]:
    """The function that turns a step's loss into an update: ordinary, or fused into the backward pass.

    ``after_backward`` (ordinary updates only) sees the gradients before they are used.
    """
    if not fused:
        return lambda loss: apply_update(loss, optimizer, scaler, params, max_grad_norm, after_backward)
    if after_backward is not None:
        raise TrainerError("config", "the fused backward pass updates each weight before the processes could "
                           "average its gradient, so it cannot train with several processes.",
                           "Set training.num_processes = 1 or turn training.fused_backward_pass off.")
    if scaler is not None:
        raise TrainerError("config", "the fused backward pass cannot be used with fp16 loss scaling, which must "
                           "see every gradient before any update.",
                           "Set training.mixed_precision = \"bf16\" (or \"no\"), or turn the fused backward pass off.")
    return FusedBackward(optimizer, params, max_grad_norm).update
