"""A LoRA file's size against the guide's 20–100 MB, and against a standard network of its shape.

The guide's range and proven dim come from ``loratui.rules.guide`` and the judgement follows the
setup screen's ``output.file_size`` rule, so a finished file is judged as its config was. The
size a standard network of the same architecture, type and dim would have comes from
``loratui.estimates`` (the real SD1.5 and SDXL layer shapes), for LoRA and LoCon.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

from loratui.estimates import load_tables, lora_file_size
from loratui.inspect.base_model import ARCH_LABELS
from loratui.inspect.lora_file import TYPE_LABELS, AdaptedModule
from loratui.inspect.safetensors_header import SafetensorsHeader
from loratui.rules import guide
from loratui.rules.output import MB

SAVE_PRECISIONS = {"F16": "fp16", "BF16": "bf16", "F32": "fp32"}
"""safetensors dtype → the trainer's ``output.save_precision`` name."""
SMALL_BY_DESIGN = frozenset({"lokr", "ia3", "boft", "oft", "diag-oft"})
"""Types whose files are small at any dim."""


@dataclass(frozen=True)
class SizeVerdict:
    """The file's size, where it falls in the guide's range, and what a standard network would weigh."""

    size: int
    verdict: str
    """``within``, ``above`` or ``below`` the guide's range."""
    message: str
    standard_size: int | None = None
    """The size of a standard network of this architecture, type and dim (LoRA and LoCon only)."""
    standard_layers: bool | None = None
    """Whether the file adapts exactly the standard layer set (None: not known for this type)."""

    def to_json(self) -> dict:
        low, high = guide.FILE_SIZE_MB
        return {"bytes": self.size, "guide_range_mb": [low, high], "verdict": self.verdict,
                "message": self.message, "standard_bytes": self.standard_size,
                "standard_layers": self.standard_layers}


def megabytes(size: int) -> str:
    """``76 kB``, ``9.6 MB`` or ``143 MB`` (decimal units, as the guide's 20–100 MB)."""
    value = size / MB
    if value < 1:
        return f"{size / 1000:.0f} kB" if size >= 1000 else f"{size} B"
    return f"{value:.1f} MB" if value < 100 else f"{value:.0f} MB"


def save_precision(header: SafetensorsHeader) -> str | None:
    """The dtype most of the file's bytes are stored in, as ``fp16``, ``bf16`` or ``fp32``."""
    weight: Counter = Counter()
    for info in header.tensors.values():
        weight[info.dtype] += info.nbytes
    if not weight:
        return None
    return SAVE_PRECISIONS.get(weight.most_common(1)[0][0])


def _standard(arch: str | None, kind: str | None, modules: tuple[AdaptedModule, ...], header: SafetensorsHeader,
              dim: int | None, conv_dim: int | None) -> tuple[int | None, bool | None]:
    tables = load_tables()
    precision = save_precision(header)
    if arch not in tables or kind not in ("lora", "locon") or dim is None or precision is None:
        return None, None
    if any(m.dora for m in modules):
        return None, None
    with_te = any(m.part != "unet" for m in modules)
    groups = {"unet_attention"} | ({"unet_conv"} if kind == "locon" else set()) \
        | ({"text_encoder"} if with_te else set())
    standard = {layer.name for layer in tables[arch].layers if layer.group in groups}
    # The metadata counts in the header exactly as the trainer's own estimate takes it.
    meta = len(json.dumps(header.metadata, separators=(",", ":"), ensure_ascii=False).encode()) \
        if header.metadata else 0
    size = lora_file_size(arch, kind, dim, float(dim), conv_dim or dim, float(conv_dim or dim), with_te, precision,
                          metadata_bytes=meta)
    return size, {m.name for m in modules} == standard


def size_verdict(header: SafetensorsHeader, arch: str | None, kind: str | None, modules: tuple[AdaptedModule, ...],
                 dim: int | None, conv_dim: int | None) -> SizeVerdict:
    """Judge the file's size as the ``output.file_size`` rule judges a config's estimate."""
    size, (low, high) = header.file_size, guide.FILE_SIZE_MB
    proven = guide.PROVEN_DIM_ALPHA[0]
    shown = megabytes(size)
    dim_text = f"dim {dim}" if dim is not None else "its rank"
    standard, same_layers = _standard(arch, kind, modules, header, dim, conv_dim)
    if size > high * MB:
        verdict, message = "above", (f"{shown}: above the guide's {low}–{high} MB. {dim_text.capitalize()} holds far "
                                     "more than one subject needs; big LoRAs overfit and crowd out others.")
    elif size >= low * MB:
        verdict, message = "within", f"{shown}: within the guide's {low}–{high} MB."
    elif dim is not None and dim < proven and kind not in SMALL_BY_DESIGN:
        verdict, message = "below", (f"{shown}: below the guide's {low}–{high} MB, and dim {dim} is below the proven "
                                     f"{proven}: it may not hold the subject's detail.")
    elif standard is not None and size < 0.9 * standard:
        # Say the real reason: the dim alone would make a bigger file (the inspector shows that size).
        verdict, message = "below", (f"{shown}: below the guide's {low}–{high} MB, and smaller than a standard "
                                     f"network at {dim_text} because it adapts fewer layers; fine when that was "
                                     "the plan (a UNet-only LoRA, say).")
    else:
        why = f"{TYPE_LABELS.get(kind or '', 'this type')} files are small by design" if kind in SMALL_BY_DESIGN \
            else f"a standard {ARCH_LABELS['sd15']} LoRA at {dim_text} is this small too" if arch == "sd15" \
            else f"{dim_text} with these layers is this small"
        verdict, message = "below", f"{shown}: below the guide's {low}–{high} MB; not a problem in itself ({why})."
    return SizeVerdict(size, verdict, message, standard, same_layers)
