"""Resize a LoRA or LoCon file to a lower rank: ``python -m trainer.resize FILE --out OUT (--dim N | --fro F)``.

``--conv-dim N`` gives LoCon's 3×3 convolutions their own rank (sd-scripts' ``--new_conv_rank``).

For each module the update the UIs apply at strength 1, ΔW = (alpha / rank) · up @ down (a 3×3
LoCon's ``lora_down`` flattened to rank × (in·3·3), its ``lora_up`` being 1×1), is split again by
its singular values and cut to the new rank: ``--dim N`` keeps N directions, ``--fro F`` the
fewest that keep the share F of ΔW's Frobenius norm (sd-scripts' ``sv_fro``), ``--dim`` then being
a cap. No module grows above its own rank. The truncation is the best approximation of ΔW at
that rank (Eckart–Young), and exact when ΔW's own rank is no higher.

The SVD never forms ΔW: with up = Qu·Ru and downᵀ = Qd·Rd (thin QR), ΔW/scale = Qu·(Ru·Rdᵀ)·Qdᵀ, so
only the small rank × rank core is decomposed. That is exact, and fast on a large SDXL file
where a full SVD of each 1280×10240 layer would take minutes on a CPU.

Alpha: the new alpha keeps each module's alpha/rank ratio, as sd-scripts' resize does, so the
file reads as the one it came from (dim 32 alpha 16 becomes dim 8 alpha 4: the same scale 0.5).
A1111, ComfyUI and diffusers all apply alpha / rank with the rank taken from ``lora_down``'s
first axis, so each applies the kept ΔW exactly. Alpha is stored in the file's dtype; where that
rounds it (fp16 cannot hold every ratio), the difference is folded into the factors, so the
applied update does not move. The singular values are split evenly between the two factors
(√S each), which keeps both far from fp16's limits.

Metadata: every key is kept; ``ss_network_dim``/``ss_network_alpha`` become the new values (or
``Dynamic`` when they vary by module, or with ``--fro``, as sd-scripts writes), LoCon's
``conv_dim``/``conv_alpha`` in ``ss_network_args`` likewise, ``ss_training_comment`` is prefixed
with what was done in sd-scripts' words, ``sshs_model_hash``/``sshs_legacy_hash`` are
recomputed when the file had them (sd-scripts' files do), and ``modelspec.hash_sha256`` (a hash
of the old weights) is dropped.

Prints one JSON object on stdout (per-module ranks and kept norm, sizes); a refusal is one line
on stderr and exit status 2, an unexpected failure exit status 1. OUT is written atomically.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path

EXIT_FAILED, EXIT_REFUSED = 1, 2
ZERO = 1e-12
"""A module whose largest singular value is below this has learned nothing; it keeps rank 1."""


def _shapes(handle, path: Path) -> dict[str, tuple[tuple[int, ...], int]]:
    """Every tensor's ``(shape, bytes per element)``, read without loading the tensors."""
    from trainer.contract.resize_plan import ResizeRefused

    sizes = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}
    shapes = {}
    for key in handle.keys():
        piece = handle.get_slice(key)
        dtype = piece.get_dtype()
        if dtype not in sizes and not key.endswith(".alpha"):
            raise ResizeRefused(f"{path}: tensor {key} is stored as {dtype}; resize reads fp16, "
                                "bf16 and fp32 files.")
        shapes[key] = (tuple(piece.get_shape()), sizes.get(dtype, 4))
    return shapes


def new_rank(singular, rank_cap: int | None, fro: float | None) -> int:
    """How many singular directions to keep (at least 1, at most ``rank_cap`` and the module's own)."""
    import torch

    count = singular.numel()
    if count == 0 or float(singular[0]) <= ZERO:
        return 1
    keep = count
    if fro is not None:
        energy = torch.cumsum(singular.double() ** 2, 0)
        share = energy / energy[-1]
        # The fewest directions whose norm reaches the share asked for (norm², since the norm is a root).
        keep = int(torch.searchsorted(share, torch.tensor(fro * fro, dtype=share.dtype))) + 1
    if rank_cap is not None:
        keep = min(keep, rank_cap)
    return max(1, min(keep, count))


def split_module(down, up, alpha: float | None, rank_cap: int | None, fro: float | None, alpha_dtype):
    """The resized ``(down, up, alpha, kept)`` of one module, in float64 (``kept``: norm share kept).

    ``down`` is rank × inputs (flattened), ``up`` outputs × rank.
    """
    import torch

    rank = down.shape[0]
    scale = 1.0 if alpha is None else alpha / rank  # no alpha: every UI applies the factors as they are
    q_up, r_up = torch.linalg.qr(up)
    q_down, r_down = torch.linalg.qr(down.T)
    u, singular, vh = torch.linalg.svd(r_up @ r_down.T, full_matrices=False)
    keep = new_rank(singular, rank_cap, fro)
    total = float((singular ** 2).sum())
    kept = 1.0 if total <= ZERO ** 2 else math.sqrt(float((singular[:keep] ** 2).sum()) / total)
    # ``keep`` never exceeds the core's size: a layer narrower than the rank keeps at most its width.
    u_keep, s_keep, v_keep = (q_up @ u)[:, :keep], singular[:keep], (q_down @ vh.T)[:, :keep]
    wanted_alpha = scale * keep
    stored_alpha = float(torch.tensor(wanted_alpha, dtype=torch.float64).to(alpha_dtype))
    # The UIs apply stored_alpha / keep; the factors carry the rest, so the applied ΔW is the kept one.
    factor = scale * keep / stored_alpha if stored_alpha != 0 else 1.0
    root = torch.sqrt(s_keep * factor)
    return (root[:, None] * v_keep.T), (u_keep * root[None, :]), stored_alpha, kept


def resize_tensors(tensors: dict, dim: int | None, fro: float | None,
                   conv_dim: int | None = None) -> tuple[dict, list[dict]]:
    """The resized file's tensors and one report entry per module (name, kernel, old/new rank, kept).

    ``conv_dim`` caps the 3×3 convolutions instead of ``dim`` when given (LoCon's conv dim).
    """
    import torch

    from trainer.contract.resize_plan import PAIR

    out = dict(tensors)
    report = []
    modules = sorted({key.partition(".")[0] for key in tensors
                      if key.startswith("lora_") and key.endswith("." + PAIR[0])})
    for name in modules:
        down, up = tensors[f"{name}.{PAIR[0]}"], tensors[f"{name}.{PAIR[1]}"]
        alpha_tensor = tensors.get(f"{name}.alpha")
        alpha = float(alpha_tensor) if alpha_tensor is not None else None
        rank, kernel = down.shape[0], tuple(down.shape[2:])
        cap = conv_dim if conv_dim is not None and kernel and kernel[0] * kernel[1] > 1 else dim
        # An alpha stored as an integer could not hold the new one (3 × 2/8); it becomes fp32 then.
        alpha_dtype = alpha_tensor.dtype if alpha_tensor is not None else down.dtype
        alpha_dtype = alpha_dtype if alpha_dtype.is_floating_point else torch.float32
        new_down, new_up, new_alpha, kept = split_module(
            down.double().reshape(rank, -1), up.double().reshape(up.shape[0], rank), alpha, cap, fro, alpha_dtype)
        keep = new_down.shape[0]
        out[f"{name}.{PAIR[0]}"] = new_down.reshape(keep, *down.shape[1:]).to(down.dtype).contiguous()
        out[f"{name}.{PAIR[1]}"] = new_up.reshape(up.shape[0], keep, *up.shape[2:]).to(up.dtype).contiguous()
        out[f"{name}.alpha"] = torch.tensor(new_alpha, dtype=alpha_dtype)
        report.append({"name": name, "kernel": list(kernel), "old": rank, "new": keep, "kept": kept,
                       "alpha": new_alpha})
    return out, report


def _uniform(values) -> str:
    values = set(values)
    if len(values) != 1:
        return "Dynamic"
    (value,) = values
    return str(value)


def resized_metadata(metadata: dict[str, str], report: list[dict], dim: int | None, fro: float | None,
                     conv_dim: int | None = None) -> dict:
    """The old metadata with the new dims and alphas, and the resize recorded as sd-scripts records it."""
    meta = dict(metadata)
    flat = [m for m in report if not (m["kernel"] and m["kernel"][0] * m["kernel"][1] > 1)]
    conv = [m for m in report if m not in flat]
    old_dim = max(m["old"] for m in report)
    comment = meta.get("ss_training_comment", "")
    tail = f"; {comment}" if comment else ""
    if fro is not None:
        meta["ss_network_dim"] = meta["ss_network_alpha"] = "Dynamic"
        caps = [f"{dim}" if dim is not None else "", f"conv {conv_dim}" if conv_dim is not None else ""]
        cap = f" (at most {', '.join(c for c in caps if c)})" if any(caps) else ""
        meta["ss_training_comment"] = f"Dynamic resize with sv_fro: {fro:g}{cap} from {old_dim}" + tail
    else:
        if flat:
            meta["ss_network_dim"] = _uniform(m["new"] for m in flat)
            meta["ss_network_alpha"] = _uniform(m["alpha"] for m in flat)
        conv_dim = _uniform(m["new"] for m in conv)
        # As sd-scripts: the conv rank is named only where it differs from the rank of the other layers.
        conv_note = f" (conv: {conv_dim})" if conv and flat and conv_dim != _uniform(m["new"] for m in flat) else ""
        target = dim if dim is not None else _uniform(m["new"] for m in flat or conv)
        meta["ss_training_comment"] = f"dimension is resized from {old_dim} to {target}{conv_note}" + tail
    try:
        args = json.loads(meta.get("ss_network_args") or "null")
    except ValueError:
        args = None
    if isinstance(args, dict) and "conv_dim" in args and conv:
        dynamic = fro is not None
        args["conv_dim"] = "Dynamic" if dynamic else _uniform(m["new"] for m in conv)
        args["conv_alpha"] = "Dynamic" if dynamic else _uniform(m["alpha"] for m in conv)
        meta["ss_network_args"] = json.dumps(args)
    return meta


def model_hashes(tensors: dict, metadata: dict[str, str]) -> tuple[str, str]:
    """sd-scripts' ``sshs_model_hash`` and ``sshs_legacy_hash`` of a file with these tensors and metadata.

    As sd-scripts (and the additional-networks extension that reads them) compute them: the file is
    serialised with its ``ss_*`` metadata only; the model hash is the SHA-256 of everything after the
    header, the legacy hash the first 8 hex digits of the SHA-256 of the 64 KiB at offset 1 MiB.
    """
    from safetensors.torch import save

    raw = save(tensors, {k: v for k, v in metadata.items() if k.startswith("ss_")})
    start = 8 + int.from_bytes(raw[:8], "little")
    return hashlib.sha256(raw[start:]).hexdigest(), hashlib.sha256(raw[0x100000:0x110000]).hexdigest()[:8]


def resize_file(source: Path, out: Path, dim: int | None, fro: float | None, force: bool = False,
                conv_dim: int | None = None) -> dict:
    """Resize ``source`` into ``out`` (atomically); return the report. ``ResizeRefused`` says why not."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import save_file

    from trainer.contract.fileio import atomic_write
    from trainer.contract.resize_plan import ResizeRefused, check_request, check_target, lora_shapes

    check_target(source, out, force)
    try:
        with safe_open(str(source), "pt") as handle:
            shapes = _shapes(handle, source)
            found = lora_shapes(source, shapes)
            check_request(source, found, dim, fro, conv_dim)
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError) as exc:
        raise ResizeRefused(f"{source}: cannot be read as a .safetensors file ({exc}); it is damaged or not a "
                            "LoRA.") from None
    resized, modules = resize_tensors(tensors, dim, fro, conv_dim)
    meta = resized_metadata(metadata, modules, dim, fro, conv_dim)
    if "sshs_model_hash" in metadata or "sshs_legacy_hash" in metadata:
        meta["sshs_model_hash"], meta["sshs_legacy_hash"] = model_hashes(resized, meta)
    # The model-spec hash of the old weights would now be false; one that is absent is honest.
    meta.pop("modelspec.hash_sha256", None)
    atomic_write(out, lambda tmp: save_file(resized, str(tmp), metadata=meta))
    return {"file": str(source), "out": str(out), "old_bytes": source.stat().st_size,
            "new_bytes": out.stat().st_size, "modules": modules}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer.resize", description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dim", type=int)
    parser.add_argument("--fro", type=float)
    parser.add_argument("--conv-dim", type=int)
    parser.add_argument("--force", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; prints the report as JSON and returns the exit status."""
    from trainer.contract.resize_plan import ResizeRefused

    args = _parser().parse_args(argv)
    try:
        report = resize_file(args.file, args.out, args.dim, args.fro, args.force, args.conv_dim)
    except ResizeRefused as exc:
        print(f"resize: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except Exception as exc:  # noqa: BLE001 - said in one line; the caller shows it without a traceback
        print(f"resize: {args.file} could not be resized: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
