"""The inspector's offer for a file above the guide's size range: the ``loratui resize`` command that fixes it.

The dim is computed from the file's own tensor shapes (``trainer.contract.resize_plan``): the
largest one whose resized file is at most the guide's upper bound, rounded down to a multiple of
8 (of 4 below 16) when that still leaves it within the range. Only LoRA and LoCon files in the kohya layout get
an offer, as only they can be resized.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from loratui.inspect.safetensors_header import DTYPE_BYTES, SafetensorsHeader
from loratui.rules import guide
from loratui.rules.output import MB
from trainer.contract.resize_plan import ResizeRefused, dim_for_size, lora_shapes, size_after


@dataclass(frozen=True)
class ResizeOffer:
    """A resize that brings the file into the guide's size range."""

    dim: int
    from_dim: int
    """The file's largest rank now."""
    size: int
    """The resized file's size in bytes (its header's few changed bytes aside)."""
    out: Path
    command: str
    """The exact command, quoted for a POSIX shell."""

    def to_json(self) -> dict:
        return {"dim": self.dim, "from_dim": self.from_dim, "bytes": self.size, "out": str(self.out),
                "command": self.command}


def resize_offer(header: SafetensorsHeader, verdict: str) -> ResizeOffer | None:
    """The offer for a file whose size ``verdict`` is ``above``; None for any other file, or one that cannot shrink."""
    if verdict != "above":
        return None
    try:
        found = lora_shapes(header.path, {name: (info.shape, DTYPE_BYTES[info.dtype])
                                          for name, info in header.tensors.items()})
    except ResizeRefused:
        return None
    low, high = guide.FILE_SIZE_MB
    dim = dim_for_size(found, header.file_size, low * MB, high * MB)
    if dim is None:
        return None
    path = Path(header.path)
    out = path.with_name(f"{path.stem}-dim{dim}.safetensors")
    command = f"loratui resize {shlex.quote(str(path))} --dim {dim} --out {shlex.quote(str(out))}"
    return ResizeOffer(dim, found.max_rank, size_after(found, header.file_size, dim), out, command)
