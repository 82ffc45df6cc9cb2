"""One optimizer call for the whole LoRA: its weights packed into one flat buffer per parameter group.

Why: bitsandbytes' 8-bit optimizers step each weight tensor on its own, from Python, and after each
one wait for the GPU to finish (``Optimizer8bit.step`` calls ``torch.cuda.synchronize()`` per
tensor). An SDXL LoRA at dim 8 has 1,444 weight tensors, so every step stopped and restarted the
GPU 1,444 times: 148 ms of a 570 ms step on an H200 (docs/benchmarks.md). Packed, the same update is
one call per group (the UNet's and the text encoder's, which keep their own learning rates).

How: each packed weight's data becomes a view into its group's flat buffer, and its gradient a view
into a flat gradient buffer, so autograd accumulates straight into the flat gradient and the
optimizer sees one tensor per group. Every weight starts on a multiple of 256 elements (bitsandbytes'
quantisation block) and the gaps stay zero (a zero gradient on a zero weight with zero state moves
nothing), so each block of the 8-bit state belongs to one weight and the update is exactly the
per-tensor one. Tensors below bitsandbytes' ``min_8bit_size`` would keep 32-bit state if stepped
alone, so they stay unpacked and are stepped alone, as before.

What changes besides speed: gradients are zeroed in place instead of freed between steps (they
exist at every step's peak anyway), and the optimizer part of the resume state has the packed
layout, so a state saved before packing cannot be resumed by a packed run (it says so).
``LORATUI_PACKED_OPTIMIZER=0`` turns packing off.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

PACKED_OPTIMIZERS = ("adamw8bit",)
"""Optimizers whose update of each element depends only on that element's own history (and its
quantisation block), so packing leaves it unchanged, and that step tensor by tensor in Python."""
BLOCK = 256
"""bitsandbytes' blockwise quantisation block: packed weights start on multiples of it."""
MIN_PACKED_SIZE = 4096
"""bitsandbytes' default ``min_8bit_size``: smaller tensors keep 32-bit state, so they stay unpacked."""


def packing_wanted(optimizer_name: str, fused_backward_pass: bool) -> bool:
    """Whether a run's optimizer is stepped packed: the per-tensor ones, unless the fused pass or the switch says no.

    The fused backward pass steps each weight from its own gradient hook, which packing would defeat.
    """
    if os.environ.get("LORATUI_PACKED_OPTIMIZER", "1").strip() == "0":
        return False
    return optimizer_name in PACKED_OPTIMIZERS and not fused_backward_pass


@dataclass
class _Pack:
    param: torch.nn.Parameter
    """The flat buffer the optimizer steps; every packed weight's data is a view into it."""
    grad: torch.Tensor
    """Its gradient; every packed weight's ``.grad`` is a view into it."""


def _padded(count: int, align: int) -> int:
    return -(-count // align) * align


def _pack(params: list[torch.Tensor], align: int) -> _Pack:
    first = params[0]
    if any(p.dtype != first.dtype or p.device != first.device for p in params):
        raise ValueError("packed weights must share one dtype and device")
    flat = torch.zeros(sum(_padded(p.numel(), align) for p in params), dtype=first.dtype, device=first.device)
    grad = torch.zeros_like(flat)
    offset = 0
    with torch.no_grad():
        for p in params:
            count = p.numel()
            flat[offset:offset + count].copy_(p.reshape(-1))
            p.data = flat[offset:offset + count].view_as(p)
            p.grad = grad[offset:offset + count].view_as(p)
            offset += _padded(count, align)
    packed = torch.nn.Parameter(flat)
    packed.grad = grad
    return _Pack(packed, grad)


class PackedParameters:
    """The network's parameter groups with their large weights packed; ``groups`` go to the optimizer.

    Call ``bind(optimizer)`` once the optimizer exists: its ``zero_grad`` then zeroes the packed
    gradients in place (freeing them would cut the weights' gradients off from the flat one).
    """

    def __init__(self, groups: list[dict], min_size: int = MIN_PACKED_SIZE, align: int = BLOCK) -> None:
        self.packs: list[_Pack] = []
        self.unpacked: list[torch.Tensor] = []
        self.groups: list[dict] = []
        for group in groups:
            large = [p for p in group["params"] if p.numel() >= min_size]
            small = [p for p in group["params"] if p.numel() < min_size]
            params: list[torch.Tensor] = []
            if large:
                pack = _pack(large, align)
                self.packs.append(pack)
                params.append(pack.param)
            params += small
            self.unpacked += small
            self.groups.append({**group, "params": params})

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero every gradient: the packed ones in place, the unpacked ones as the optimizer would."""
        for pack in self.packs:
            pack.grad.zero_()
            pack.param.grad = pack.grad
        for p in self.unpacked:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def optimizer_params(self) -> list[torch.Tensor]:
        """The tensors the optimizer steps (flat and unpacked): their gradients hold every gradient once."""
        return [pack.param for pack in self.packs] + self.unpacked

    def bind(self, optimizer: torch.optim.Optimizer) -> None:
        """Route ``optimizer.zero_grad`` here (a GradScaler and the loop call it as usual)."""
        optimizer.zero_grad = self.zero_grad  # type: ignore[method-assign]


def build_packed_optimizer(config, groups: list[dict], trainable: list[torch.Tensor], fused: bool,
                           allowed: bool = True) -> tuple[torch.optim.Optimizer, list[torch.Tensor]]:
    """The run's optimizer over ``groups``, packed when ``packing_wanted`` (and ``allowed``); with the
    tensors it steps, whose gradients the caller clips and averages."""
    from trainer.optim import build_optimizer

    if not (allowed and packing_wanted(config.name, fused)):
        return build_optimizer(config, groups, fused), trainable
    packed = PackedParameters(groups)
    optimizer = build_optimizer(config, packed.groups, fused)
    packed.bind(optimizer)
    print(f"Optimizer: {config.name} steps {len(packed.optimizer_params())} tensors, {len(packed.packs)} of them "
          "packed (LORATUI_PACKED_OPTIMIZER=0 steps each weight on its own).", flush=True)
    return optimizer, packed.optimizer_params()
