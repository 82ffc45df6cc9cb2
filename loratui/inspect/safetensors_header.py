"""Read a ``.safetensors`` file's header in pure Python: tensor names, dtypes, shapes and metadata.

The format: 8 bytes holding the header's length N (little-endian unsigned), then N bytes of
JSON — ``{"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}}``
— then the tensors' bytes, the offsets counting from the end of the header. Nothing here loads
a tensor; ``read_scalar`` reads the few bytes of a one-number tensor (a LoRA's ``alpha``).

Every file is treated as possibly hostile: a length past the end of the file or above
``MAX_HEADER_BYTES``, JSON that does not parse or has the wrong shape, offsets outside the data
or sizes that disagree with the shape all raise ``InspectError`` naming the file, never a
traceback.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

MAX_HEADER_BYTES = 100_000_000
"""safetensors' own reader refuses headers above 100 MB; so does this one."""

DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
               "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
"""Bytes per element of every dtype safetensors writes."""

_SCALAR_FORMATS = {"F16": "<e", "F32": "<f", "F64": "<d", "I8": "<b", "U8": "<B", "I16": "<h", "U16": "<H",
                   "I32": "<i", "U32": "<I", "I64": "<q", "U64": "<Q", "BOOL": "<?"}


class InspectError(Exception):
    """A file that cannot be inspected; the message names the file and says why."""


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the header describes it (its data is never read)."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    """Offset of its first byte, counted from the start of the data (just past the header)."""
    end: int

    @property
    def numel(self) -> int:
        """The number of elements (1 for a scalar)."""
        count = 1
        for size in self.shape:
            count *= size
        return count

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclass(frozen=True)
class SafetensorsHeader:
    """A file's header: its tensors, its metadata and where the data starts."""

    path: Path
    file_size: int
    data_start: int
    """Absolute offset of the data: 8 plus the header's length."""
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str] = field(default_factory=dict)
    header_bytes: int = 0
    """Length of the JSON header (padding included)."""


def _fail(path: Path, why: str) -> InspectError:
    return InspectError(f"{path}: {why}")


def _open(path: Path) -> BinaryIO:
    if path.is_dir():
        raise _fail(path, "is a folder; give a .safetensors file.")
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise _fail(path, "no such file.") from None
    except OSError as exc:
        raise _fail(path, f"cannot be read ({exc.strerror or exc}).") from None


def _not_safetensors(path: Path, first: bytes) -> InspectError:
    # Say what the file probably is: the usual mistake is a pickled .ckpt/.pt checkpoint.
    if first.startswith(b"PK\x03\x04") or first[:1] == b"\x80":
        return _fail(path, "is a PyTorch pickle (.ckpt/.pt), not a .safetensors file; only .safetensors files "
                           "can be inspected (they need no code to read).")
    return _fail(path, "is not a .safetensors file (its first 8 bytes do not give a plausible header length).")


def read_header(path: Path | str) -> SafetensorsHeader:
    """Read and check the header of the ``.safetensors`` file at ``path``.

    Raises ``InspectError`` (naming the file) for anything that is not a well-formed file.
    """
    path = Path(path)
    with _open(path) as handle:
        try:
            handle.seek(0, 2)
            file_size = handle.tell()
            handle.seek(0)
            first = handle.read(8)
            if len(first) < 8:
                raise _fail(path, f"is only {file_size} bytes long: too short to be a .safetensors file.")
            (length,) = struct.unpack("<Q", first)
            if length > MAX_HEADER_BYTES or length > file_size - 8 or length < 2:
                raise _not_safetensors(path, first)
            raw = handle.read(length)
        except OSError as exc:
            raise _fail(path, f"cannot be read ({exc.strerror or exc}).") from None
    if len(raw) != length:
        raise _fail(path, "ended while its header was being read (a truncated file?).")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise _fail(path, "has a header that is not valid JSON: the file is damaged or not a .safetensors "
                          "file.") from None
    if not isinstance(header, dict):
        raise _fail(path, "has a header that is not a JSON object: the file is damaged.")
    data_start = 8 + length
    metadata = _metadata(path, header.pop("__metadata__", None))
    tensors = {name: _tensor(path, name, entry, file_size - data_start) for name, entry in header.items()}
    return SafetensorsHeader(path, file_size, data_start, tensors, metadata, length)


def _metadata(path: Path, raw) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _fail(path, "has a __metadata__ entry that is not a JSON object: the file is damaged.")
    # safetensors writes strings only; a value of another type is kept as its JSON text.
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}


def _tensor(path: Path, name: str, entry, data_size: int) -> TensorInfo:
    def bad(why: str) -> InspectError:
        return _fail(path, f"tensor {name[:120]!r} {why}: the file is damaged.")

    if not isinstance(entry, dict):
        raise bad("has no description")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPE_BYTES:
        raise bad(f"has an unknown dtype {str(dtype)[:20]!r}")
    if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                              for s in shape):
        raise bad("has a shape that is not a list of sizes")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
        raise bad("has no valid data_offsets")
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        raise bad(f"lies outside the file (bytes {begin}–{end} of {data_size})")
    info = TensorInfo(dtype, tuple(shape), begin, end)
    if info.numel * DTYPE_BYTES[dtype] != info.nbytes:
        raise bad(f"takes {info.nbytes} bytes, but its shape {list(shape)} in {dtype} needs "
                  f"{info.numel * DTYPE_BYTES[dtype]}")
    return info


def read_scalars(header: SafetensorsHeader, names: list[str]) -> dict[str, float]:
    """The values of one-element tensors ``names`` (an ``alpha`` each), read from the file with ``struct``.

    Tensors of more than one element, or of a dtype without a plain number format (FP8), are
    left out of the result.
    """
    values: dict[str, float] = {}
    wanted = [(n, header.tensors[n]) for n in names if n in header.tensors and header.tensors[n].numel == 1]
    if not wanted:
        return values
    with _open(header.path) as handle:
        try:
            for name, info in sorted(wanted, key=lambda item: item[1].begin):
                value = _scalar(handle, header.data_start, info)
                if value is not None:
                    values[name] = value
        except OSError as exc:
            raise _fail(header.path, f"cannot be read ({exc.strerror or exc}).") from None
    return values


def _scalar(handle: BinaryIO, data_start: int, info: TensorInfo) -> float | None:
    handle.seek(data_start + info.begin)
    raw = handle.read(info.nbytes)
    if len(raw) != info.nbytes:
        return None
    if info.dtype == "BF16":
        # bfloat16 is the top half of a float32.
        return struct.unpack("<f", b"\x00\x00" + raw)[0]
    form = _SCALAR_FORMATS.get(info.dtype)
    return float(struct.unpack(form, raw)[0]) if form else None
