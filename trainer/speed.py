"""Speed and memory settings of the training process that need no config field.

Each is a lever whose effect can only be measured on a GPU, so each has an environment switch
(``0``, ``false``, ``no`` or ``off`` turns it off) that lets one GPU run compare it on and off
without editing the code or the config:

* ``LORATUI_TF32=0``: fp32 matrix multiplications stay full fp32 instead of TF32.
* ``LORATUI_EXPANDABLE_SEGMENTS=0``: torch's CUDA allocator keeps its default fixed-size segments.

This module imports no torch at module level: ``trainer.__main__`` calls
``configure_allocator`` before torch is imported, which is the only time the allocator's
environment variable has any effect.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

TF32_SWITCH = "LORATUI_TF32"
EXPANDABLE_SEGMENTS_SWITCH = "LORATUI_EXPANDABLE_SEGMENTS"
ALLOCATOR_VARIABLES = ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF")
"""Torch's allocator settings: the old CUDA name and the newer generic one (either set means the user chose)."""
EXPANDABLE_SEGMENTS = "expandable_segments:True"


def switched_off(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment switch ``name`` turns its lever off (unset means on)."""
    value = (os.environ if environ is None else environ).get(name, "")
    return value.strip().lower() in {"0", "false", "no", "off"}


def allocator_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The allocator variables to add to a trainer's environment (none when the user set their own).

    Why: a LoRA step allocates activations of a different size at every bucket resolution, and
    the default allocator's fixed segments fragment under that pattern until a step that fits in
    the free total still fails with "out of memory"; expandable segments grow one mapping
    instead. ``PYTORCH_CUDA_ALLOC_CONF`` is the name every torch 2.x honours (the newer
    ``PYTORCH_ALLOC_CONF`` was ignored for this setting by some releases).
    """
    if switched_off(EXPANDABLE_SEGMENTS_SWITCH, environ):
        return {}
    if any(environ.get(name, "").strip() for name in ALLOCATOR_VARIABLES):
        return {}  # the user's own allocator settings win, whatever they are
    return {"PYTORCH_CUDA_ALLOC_CONF": EXPANDABLE_SEGMENTS}


def configure_allocator(environ: MutableMapping[str, str] | None = None) -> str:
    """Put ``allocator_settings`` into this process's environment; return a line for trainer.log.

    Must run before torch initialises CUDA, which reads the variable once; the trainer calls it
    before it imports torch at all.
    """
    environ = os.environ if environ is None else environ
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return "CUDA allocator: unchanged (CUDA was initialised before the trainer could set it)."
    added = allocator_settings(environ)
    environ.update(added)
    if added:
        return f"CUDA allocator: {EXPANDABLE_SEGMENTS} ({EXPANDABLE_SEGMENTS_SWITCH}=0 turns it off)."
    chosen = [f"{name}={environ[name]}" for name in ALLOCATOR_VARIABLES if environ.get(name, "").strip()]
    return "CUDA allocator: " + (", ".join(chosen) + " (set by the user)" if chosen else
                                 f"torch's default ({EXPANDABLE_SEGMENTS_SWITCH}=0)") + "."


def use_tf32(precision: Any) -> bool:
    """Let fp32 matrix multiplications on a GPU use TF32 tensor cores; return whether it was turned on.

    Why: a run with ``mixed_precision = "no"`` computes the UNet in fp32, and without TF32 its
    matmuls run on the GPU's far slower full-fp32 path (Ampere and later: several times slower).
    TF32 keeps fp32's range with a 10-bit mantissa, which is what diffusers' and sd-scripts'
    ``--allow_tf32`` do; convolutions already use TF32 by torch's own default. Runs with bf16 or
    fp16 autocast compute their matmuls in that type, so only fp32 runs on CUDA are changed.

    The legacy flag is set, not ``fp32_precision``: torch raises when code reads one API after the
    other was written, and ``torch.compile``'s inductor still reads the legacy one.
    """
    import torch

    if precision.device.type != "cuda" or precision.weight_dtype != torch.float32 or switched_off(TF32_SWITCH):
        return False
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return True
