"""What ``loratui resize`` can do with a LoRA file, from its tensor names and shapes alone (no torch).

Resizing rebuilds each module's update ΔW = up @ down and keeps its largest singular directions,
so it only applies to files whose modules are plain ``lora_down``/``lora_up`` pairs in the kohya
layout: LoRA and LoCon (and DyLoRA or LoRA-FA files, which are stored the same way). Every other
network type stores ΔW differently, and is refused here, by name, before anything heavy loads.

Both sides use this module: the app (``loratui resize`` checks a file before it starts the
resize process; the inspector sizes its resize offer) and ``trainer.resize`` (which checks again,
as it can be run on its own). ``shapes`` maps a tensor's name to ``(shape, bytes per element)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PAIR = ("lora_down.weight", "lora_up.weight")
"""The two factors of a kohya module, ``<module>.lora_down.weight`` and ``<module>.lora_up.weight``."""
SUPPORTED_SUFFIXES = frozenset(PAIR + ("alpha",))

_OTHER_TYPES = (
    # A suffix (its start) found under a module → the network type it means, for the refusal.
    ("dora_scale", "DoRA"), ("lora_magnitude_vector", "DoRA"), ("hada_", "LoHa"), ("lokr_", "LoKr"),
    ("on_input", "(IA)³"), ("oft_blocks", "BOFT/OFT"), ("oft_diag", "Diag-OFT"), ("a1.weight", "GLoRA"),
    ("a2.weight", "GLoRA"), ("b1.weight", "GLoRA"), ("b2.weight", "GLoRA"), ("bm.weight", "GLoRA"),
    ("lora_mid", "LoCon with a Tucker core (lora_mid)"), ("diff", "full fine-tune (LyCORIS)"),
    ("weight", "(IA)³"),
)
_DIFFUSERS_FACTORS = (".lora_A.weight", ".lora_B.weight", ".lora.down.weight", ".lora.up.weight")


class ResizeRefused(ValueError):
    """A file (or a request) that resize cannot act on; the message names the file and what to do."""


@dataclass(frozen=True)
class ModuleShape:
    """One module of a LoRA/LoCon file, as its two factors' shapes describe it."""

    name: str
    rank: int
    inputs: int
    """Columns of the flattened ``lora_down``: the layer's input width times the kernel's area."""
    outputs: int
    kernel: tuple[int, ...]
    """``()`` for a linear layer, ``(1, 1)`` or ``(3, 3)`` for a convolution."""
    down_bytes: int
    """Bytes per element of ``lora_down`` and of ``lora_up`` as stored."""
    up_bytes: int

    @property
    def spatial(self) -> bool:
        """A 3×3 (or wider) convolution: LoCon's conv dim applies to these."""
        return bool(self.kernel) and self.kernel[0] * self.kernel[1] > 1

    def nbytes(self, rank: int | None = None) -> int:
        """Bytes its two factors take at ``rank`` (default: its own rank)."""
        rank = self.rank if rank is None else rank
        return rank * (self.inputs * self.down_bytes + self.outputs * self.up_bytes)


@dataclass(frozen=True)
class LoraShapes:
    """Every module of a file, plus how many bytes the tensors outside the factors take."""

    modules: tuple[ModuleShape, ...]
    other_bytes: int
    """Alphas and any tensor that is not a factor (kept as they are)."""

    @property
    def max_rank(self) -> int:
        return max(m.rank for m in self.modules)

    def data_bytes(self, dim: int | None = None) -> int:
        """Bytes of tensor data after resizing to ``dim`` (never above a module's own rank)."""
        return self.other_bytes + sum(m.nbytes(None if dim is None else min(dim, m.rank)) for m in self.modules)


def _numel(shape) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def _other_type(suffixes: set[str]) -> str | None:
    for start, label in _OTHER_TYPES:
        if any(s == start or s.startswith(start) for s in suffixes - SUPPORTED_SUFFIXES):
            return label
    return None


def lora_shapes(path, shapes: dict[str, tuple[tuple[int, ...], int]]) -> LoraShapes:
    """The file's modules, or ``ResizeRefused`` saying why this file cannot be resized."""
    grouped: dict[str, dict[str, tuple[tuple[int, ...], int]]] = {}
    other = 0
    for key, (shape, size) in shapes.items():
        if key.startswith("lora_") and "." in key:
            module, _, suffix = key.partition(".")
            grouped.setdefault(module, {})[suffix] = (tuple(shape), size)
            if suffix not in PAIR:
                other += _numel(shape) * size
        else:
            other += _numel(shape) * size
    if not grouped:
        if any(key.endswith(_DIFFUSERS_FACTORS) for key in shapes):
            raise ResizeRefused(f"{path}: this LoRA is in the diffusers layout (lora_A/lora_B); resize reads the "
                                "kohya layout (lora_unet_…/lora_te_… names) that A1111, ComfyUI, sd-scripts and "
                                "loratui write.")
        raise ResizeRefused(f"{path}: this is not a LoRA (no lora_unet_…/lora_te_… tensors). Give a LoRA or LoCon "
                            ".safetensors file.")
    kinds = {label for suffixes in grouped.values() if (label := _other_type(set(suffixes)))}
    if kinds:
        raise ResizeRefused(f"{path}: this is a {' + '.join(sorted(kinds))} file; resize supports LoRA and LoCon "
                            "only (plain lora_down/lora_up pairs), whose update it can split again.")
    return LoraShapes(tuple(_module(path, name, parts) for name, parts in sorted(grouped.items())), other)


def _module(path, name: str, parts: dict[str, tuple[tuple[int, ...], int]]) -> ModuleShape:
    def damaged(why: str) -> ResizeRefused:
        return ResizeRefused(f"{path}: module {name} {why}: the file is damaged or was not written as a kohya "
                             "LoRA; it cannot be resized.")

    if PAIR[0] not in parts or PAIR[1] not in parts:
        missing = PAIR[0] if PAIR[0] not in parts else PAIR[1]
        raise damaged(f"has no {missing}")
    (down, down_bytes), (up, up_bytes) = parts[PAIR[0]], parts[PAIR[1]]
    if "alpha" in parts and _numel(parts["alpha"][0]) != 1:
        raise damaged(f"has an alpha of shape {list(parts['alpha'][0])} (one number expected)")
    linear = len(down) == 2 and len(up) == 2
    conv = len(down) == 4 and len(up) == 4 and tuple(up[2:]) == (1, 1) and down[2] == down[3]
    if not (linear or conv) or down[0] != up[1] or down[0] == 0:
        raise damaged(f"has lora_down {list(down)} and lora_up {list(up)}, which do not multiply")
    return ModuleShape(name, down[0], _numel(down[1:]), up[0], tuple(down[2:]), down_bytes, up_bytes)


def rank_cap(module: ModuleShape, dim: int | None, conv_dim: int | None) -> int | None:
    """The rank a module is cut to at most: ``conv_dim`` for a 3×3 convolution when given, else ``dim``."""
    return conv_dim if module.spatial and conv_dim is not None else dim


def check_request(path, found: LoraShapes, dim: int | None, fro: float | None, conv_dim: int | None = None) -> None:
    """``ResizeRefused`` when ``--dim``/``--conv-dim``/``--fro`` are missing, out of range, or would change nothing."""
    if dim is None and fro is None and conv_dim is None:
        raise ResizeRefused("give --dim N (the new rank) or --fro F (the share of each module's Frobenius norm "
                            "to keep, e.g. 0.9), or both (then --dim caps the rank --fro picks).")
    for flag, value in (("--dim", dim), ("--conv-dim", conv_dim)):
        if value is not None and value < 1:
            raise ResizeRefused(f"{flag} must be 1 or more (got {value}).")
    if fro is not None and not 0 < fro < 1:
        raise ResizeRefused(f"--fro must be above 0 and below 1, such as 0.9 (got {fro:g}); 1 would keep "
                            "everything.")
    convs = [m for m in found.modules if m.spatial]
    if conv_dim is not None and not convs:
        raise ResizeRefused(f"{path}: it has no 3×3 convolution layers, which --conv-dim is for (a LoCon has "
                            "them); use --dim.")
    if fro is not None:
        return  # with --fro, --dim and --conv-dim are only caps
    if all(rank_cap(m, dim, conv_dim) is None or m.rank <= rank_cap(m, dim, conv_dim) for m in found.modules):
        flats = [m for m in found.modules if not m.spatial]
        if conv_dim is not None and dim is None:
            top = max(m.rank for m in convs)
            raise ResizeRefused(f"{path}: its 3×3 layers' largest rank is {top}, so --conv-dim {conv_dim} would "
                                f"change nothing; give a --conv-dim below {top}, or a --dim.")
        top = max(m.rank for m in (flats if conv_dim is not None and flats else found.modules))
        raise ResizeRefused(f"{path}: its largest rank is {top}, so --dim {dim} would change nothing; "
                            f"give a --dim below {top}.")


def dim_for_size(found: LoraShapes, file_size: int, low: int, high: int) -> int | None:
    """The dim whose resized file fits under ``high`` bytes, or None when no dim below the file's own does.

    The largest such dim keeps the most detail; it is rounded down to a multiple of 8 (of 4 below
    16: the dims people train with) when that still leaves the file at ``low`` bytes or more. The size comes
    from the file's own shapes: the header and the tensors that are not factors stay as they are.
    """
    fixed = file_size - found.data_bytes()
    fits = [d for d in range(1, found.max_rank) if fixed + found.data_bytes(d) <= high]
    if not fits:
        return None
    best = max(fits)
    step = 8 if best >= 16 else 4  # 13 becomes 12, not 8: rounding must not cost much of the detail
    rounded = best - best % step
    if rounded >= step and fixed + found.data_bytes(rounded) >= low:
        return rounded
    return best


def size_after(found: LoraShapes, file_size: int, dim: int) -> int:
    """The file's size after ``--dim dim`` (the header's few changed bytes aside)."""
    return file_size - found.data_bytes() + found.data_bytes(dim)


def check_target(source: Path, out: Path, force: bool) -> None:
    """``ResizeRefused`` for an OUT that is FILE itself, exists (without ``force``), or has no folder."""
    source, out = Path(source), Path(out)
    if out.exists() and source.exists() and out.resolve() == source.resolve():
        raise ResizeRefused(f"{out}: that is the file being resized; give --out a new file name (the original is "
                            "never overwritten).")
    if out.is_dir():
        raise ResizeRefused(f"{out}: is a folder; give --out a file name such as {out / source.name}.")
    if out.exists() and not force:
        raise ResizeRefused(f"{out}: already exists; give another --out, or add --force to replace it.")
    if not out.parent.is_dir():
        raise ResizeRefused(f"{out}: its folder {out.parent} does not exist; create it or give another --out.")
    if out.suffix != ".safetensors":
        raise ResizeRefused(f"{out}: give --out a .safetensors name (UIs look for that extension).")
