"""The ``loratui inspect`` command: what is inside a LoRA file, from any kohya-compatible trainer.

    loratui inspect FILE.safetensors [FILE …] [--tags N] [--format text|json]

Reads only each file's header (and its ``alpha`` numbers): the network type, dim and alpha per
block, the base model, the training settings and tag counts of the ``ss_*`` metadata, and the
size against the guide's 20–100 MB. Pure Python: nothing here imports torch.

Exit status: 0 when every file was inspected, 2 when any could not be (named on stderr, one
line each; the others are still reported).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from loratui.cli.common import EXIT_BAD_INPUT, EXIT_OK
from loratui.inspect import InspectError, format_report, inspect_file

DEFAULT_TAGS = 10


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loratui inspect", description=(
        "Show what is inside LoRA files — from loratui or any kohya-compatible trainer (sd-scripts, kohya_ss, "
        "LoRA_Easy_Training_Scripts, OneTrainer's kohya export …): the network type (LoRA, LoCon, LoHa, LoKr, "
        "(IA)³, BOFT, GLoRA, DoRA), dim and alpha per block, the base model, the training settings and the most "
        "frequent tags from the metadata, and the file size against the guide's 20–100 MB. Only the file's "
        "header is read."))
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="a .safetensors LoRA (several allowed)")
    parser.add_argument("--tags", type=int, default=DEFAULT_TAGS, metavar="N",
                        help=f"how many of the most frequent training tags to list (default {DEFAULT_TAGS}; 0: none)")
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="json prints a list with one object per file ({\"file\", \"error\"} for a failed one)")
    return parser


def inspect_main(argv: list[str]) -> int:
    """Entry point of ``loratui inspect``; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.tags < 0:
        print("loratui: --tags must be 0 or more.", file=sys.stderr)
        return EXIT_BAD_INPUT
    failed, results = False, []
    for number, path in enumerate(args.files):
        try:
            report = inspect_file(path)
        except InspectError as exc:
            failed = True
            print(f"loratui: {exc}", file=sys.stderr)
            results.append({"file": str(path), "error": str(exc)})
            continue
        if args.format == "json":
            results.append(report.to_json(tags=args.tags))
        else:
            if number:
                print()
            print("\n".join(format_report(report, tags=args.tags)))
    if args.format == "json":
        print(json.dumps(results, indent=2, ensure_ascii=False))
    return EXIT_BAD_INPUT if failed else EXIT_OK
