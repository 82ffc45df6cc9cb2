"""The ``loratui resize`` command: a LoRA or LoCon file cut to a lower rank, so a bloated file gets small.

    loratui resize FILE (--dim N | --fro F) [--conv-dim N] --out OUT [--force] [--format text|json]

The file is checked here first, from its header alone and without torch (``trainer.contract.
resize_plan``): what is not a LoRA/LoCon in the kohya layout, a damaged file, a ``--dim`` that
would change nothing, an OUT that exists or is FILE itself are refused with exit status 2 and one
line naming the file and what to do. The work itself (an SVD per module) runs in a child process,
``python -m trainer.resize``, because the app never imports torch; it writes OUT atomically and
reports per module, and this command prints the kept ranks, the kept share of the norm and the
old and new sizes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from loratui.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from loratui.inspect.safetensors_header import DTYPE_BYTES, InspectError, read_header
from loratui.inspect.size import megabytes
from trainer.contract.resize_plan import ResizeRefused, check_request, check_target, lora_shapes


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loratui resize", description=(
        "Make a LoRA or LoCon file smaller by lowering its rank: each module's update is split by its singular "
        "values and cut, which keeps as much of what it learned as that rank can hold. The result applies the "
        "same way in A1111, ComfyUI and diffusers; the original file is never changed."))
    parser.add_argument("file", type=Path, metavar="FILE", help="the LoRA or LoCon .safetensors file (kohya layout)")
    parser.add_argument("--dim", type=int, metavar="N", help="the new rank (modules already at or below it stay)")
    parser.add_argument("--fro", type=float, metavar="F",
                        help="per module, the lowest rank that keeps this share of its update's Frobenius norm "
                             "(e.g. 0.9; sd-scripts' sv_fro); with --dim, --dim caps it")
    parser.add_argument("--conv-dim", type=int, metavar="N",
                        help="a rank of their own for a LoCon's 3×3 convolutions (default: --dim; "
                             "sd-scripts' --new_conv_rank)")
    parser.add_argument("--out", type=Path, required=True, metavar="OUT", help="the new .safetensors file")
    parser.add_argument("--force", action="store_true", help="replace OUT when it exists")
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="json: the per-module report as one object")
    return parser


def check(file: Path, out: Path, dim: int | None, fro: float | None, force: bool,
          conv_dim: int | None = None) -> str | None:
    """Why this resize cannot run (one line naming the file and what to do), or None. Reads only headers."""
    try:
        header = read_header(file)
        check_target(file, out, force)
        found = lora_shapes(file, {name: (info.shape, DTYPE_BYTES[info.dtype])
                                   for name, info in header.tensors.items()})
        check_request(file, found, dim, fro, conv_dim)
    except (InspectError, ResizeRefused) as exc:
        return str(exc)
    return None


def _range(values) -> str:
    low, high = min(values), max(values)
    return f"{low}" if low == high else f"{low}–{high}"


def format_resize(report: dict) -> list[str]:
    """The report as text: where it went, kept ranks per kind of layer, kept norm, old and new sizes."""
    modules = report["modules"]
    lines = [f"{report['file']} → {report['out']}"]
    groups = (("linear and 1×1", [m for m in modules if not m["kernel"] or m["kernel"][0] * m["kernel"][1] == 1]),
              ("3×3 conv", [m for m in modules if m["kernel"] and m["kernel"][0] * m["kernel"][1] > 1]))
    for label, members in groups:
        if members:
            lines.append(f"  {label:<16}{len(members):>4} modules: rank {_range([m['old'] for m in members])} → "
                         f"{_range([m['new'] for m in members])}")
    kept = [m["kept"] for m in modules]
    lines.append(f"  kept            norm share per module {min(kept):.1%}–{max(kept):.1%} "
                 f"(mean {sum(kept) / len(kept):.1%}; 100% = the update unchanged)")
    lines.append(f"  size            {megabytes(report['old_bytes'])} → {megabytes(report['new_bytes'])}")
    return lines


def resize_main(argv: list[str]) -> int:
    """Entry point of ``loratui resize``; returns the exit status."""
    args = _parser().parse_args(argv)
    why = check(args.file, args.out, args.dim, args.fro, args.force, args.conv_dim)
    if why is not None:
        print(f"loratui: {why}", file=sys.stderr)
        return EXIT_BAD_INPUT
    command = [sys.executable, "-m", "trainer.resize", str(args.file), "--out", str(args.out)]
    command += ["--dim", str(args.dim)] if args.dim is not None else []
    command += ["--fro", repr(args.fro)] if args.fro is not None else []
    command += ["--conv-dim", str(args.conv_dim)] if args.conv_dim is not None else []
    command += ["--force"] if args.force else []
    print(f"resizing {args.file} …", file=sys.stderr)
    done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        said = next((line for line in reversed(lines) if line.startswith("resize: ")), None)
        message = said.removeprefix("resize: ") if said else \
            f"resizing {args.file} failed (exit status {done.returncode}): {lines[-1] if lines else 'no message'}"
        print(f"loratui: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT if done.returncode == EXIT_BAD_INPUT else EXIT_FAILED
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if args.format == "json":
        print(json.dumps(report, indent=2))
    else:
        print("\n".join(format_resize(report)))
    return EXIT_OK
