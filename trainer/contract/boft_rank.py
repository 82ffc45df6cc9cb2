"""Which BOFT ranks a model can take, known before the model loads (no torch).

LyCORIS' BOFT splits each adapted layer's output width into butterfly blocks: it needs an even
block size ``m`` no larger than the rank with ``width / m`` a power of two (lycoris'
``power2factorization``). Writing a width as ``odd × 2^k``, that exists exactly when ``k ≥ 1`` and
the rank is at least ``2 × odd``. SD1.5's 320-wide layers (5 × 64) therefore need a rank of at
least 10: the default 8 fails, after minutes of loading, with "impossible to decompose 320".

The widths come from a diffusers folder's configs when there is one, else from the real
architectures (the same layers ``loratui/data/lora_shapes.json`` lists).
"""

from __future__ import annotations

import json
from pathlib import Path

STANDARD_WIDTHS = {
    "sd15": {"unet": (320, 640, 1280, 2560, 5120, 10240), "text_encoders": (768, 3072)},
    "sdxl": {"unet": (640, 1280, 5120, 10240), "text_encoders": (768, 1280, 3072, 5120)},
}
"""The output widths of every layer BOFT adapts in the full-size models (UNet attention blocks:
the block's channels, and 8× them for the feed-forward's GEGLU projection; text encoders: hidden
and MLP sizes)."""


def _odd_part(width: int) -> int:
    while width % 2 == 0:
        width //= 2
    return width


def smallest_rank(width: int) -> int | None:
    """The smallest BOFT rank that splits ``width`` (None for an odd width, which none can)."""
    return None if width % 2 else 2 * _odd_part(width)


def rank_fits(rank: int, width: int) -> bool:
    """Whether LyCORIS' BOFT can split a layer of this output width at this rank."""
    least = smallest_rank(width)
    return least is not None and rank >= least


def suitable_rank(rank: int, widths: tuple[int, ...] | list[int]) -> int | None:
    """``rank`` when it fits every width, else the nearest rank that does (None if no rank can)."""
    needs = [smallest_rank(width) for width in widths]
    if any(least is None for least in needs):
        return None
    return max([rank, *needs])


def model_widths(base: str, arch: str, train_text_encoders: bool) -> tuple[int, ...]:
    """The output widths of the layers BOFT adapts in this model, from its configs where it has them."""
    folder = Path(base)
    widths: set[int] = set()
    try:
        unet = json.loads((folder / "unet" / "config.json").read_text())
        for channels, kind in zip(unet["block_out_channels"], unet["down_block_types"]):
            if "CrossAttn" in kind:
                widths |= {channels, 8 * channels}  # attention layers, and the GEGLU projection (2 × 4c)
        if "CrossAttn" in unet.get("mid_block_type", "UNetMidBlock2DCrossAttn") and unet["block_out_channels"]:
            last = unet["block_out_channels"][-1]
            widths |= {last, 8 * last}
        if train_text_encoders:
            for name in ("text_encoder", "text_encoder_2"):
                config_path = folder / name / "config.json"
                if config_path.is_file():
                    encoder = json.loads(config_path.read_text())
                    widths |= {encoder["hidden_size"], encoder["intermediate_size"]}
    except (OSError, ValueError, KeyError, TypeError):
        standard = STANDARD_WIDTHS[arch]
        return tuple(sorted(set(standard["unet"]) | (set(standard["text_encoders"]) if train_text_encoders else set())))
    return tuple(sorted(widths))


def boft_rank_message(rank: int, widths: tuple[int, ...]) -> str | None:
    """Why this rank cannot work for BOFT on these widths, with the rank that would (None if it works)."""
    bad = [width for width in widths if not rank_fits(rank, width)]
    if not bad:
        return None
    fixed = suitable_rank(rank, widths)
    shown = ", ".join(str(width) for width in bad[:3])
    advice = f"use network.dim = {fixed} or more" if fixed else "this model's layer widths suit no BOFT rank; " \
        "choose another network type"
    return (f"BOFT at rank {rank} cannot split this model's {shown}-wide layers into butterfly blocks "
            f"(a width of odd × 2^k needs a rank of at least 2 × odd); {advice}.")
