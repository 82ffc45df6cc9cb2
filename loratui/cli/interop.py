"""The ``loratui export`` and ``loratui import`` commands: configs to and from other trainers.

    loratui export CONFIG --to sd-scripts DIR [--set section.key=value …] [--force] [--format text|json]
    loratui import FILE [--out loratui.toml] [--dataset-config FILE] [--force] [--format text|json]

``export`` writes the kohya-ss/sd-scripts equivalent of a loratui config into DIR (config.toml,
dataset.toml, command.sh and, with prompts, sample_prompts.txt) and lists what sd-scripts has no
exact equivalent for. ``import`` reads an sd-scripts config (with its dataset config) or a
LoRA_Easy_Training_Scripts config into a loratui config and reports every setting: mapped,
approximate, without equivalent, or defaulted.

Nothing is overwritten without ``--force``, every file is written atomically, and bad input gets
one line naming the file and what to do. Exit status: 0 done; 1 the imported config was written
but loratui's validation found problems to fix before training; 2 the input could not be used
(nothing written).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from loratui.cli.common import DEFAULT_CONFIG, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, add_overrides

TARGETS = ("sd-scripts",)
"""Trainers ``export`` can write for."""


def _export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loratui export", description=(
        "Write the kohya-ss/sd-scripts equivalent of a loratui config into DIR: config.toml (--config_file), "
        "dataset.toml (--dataset_config), command.sh (the accelerate launch line, run from the sd-scripts folder) "
        "and sample_prompts.txt when there are prompts. Settings sd-scripts has no exact equivalent for are "
        "listed here and at the top of config.toml."))
    parser.add_argument("config", type=Path, help="the loratui config (TOML)")
    parser.add_argument("--to", choices=TARGETS, required=True, help="the trainer to write for")
    parser.add_argument("dir", type=Path, help="the folder to write into (made when missing)")
    add_overrides(parser)
    parser.add_argument("--force", action="store_true", help="replace files of the same names already in DIR")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    return parser


def _import_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loratui import", description=(
        "Read an sd-scripts config (--config_file TOML, with the --dataset_config it names) or a config saved by "
        "LoRA_Easy_Training_Scripts, and write the loratui config that trains the same LoRA as closely as loratui "
        "can. Every setting is reported: mapped, approximate, without equivalent (with its value) or defaulted. "
        "A command.sh beside an sd-scripts config (as `loratui export` writes) tells the script and process count."))
    parser.add_argument("file", type=Path, help="the sd-scripts or LoRA_Easy_Training_Scripts TOML")
    parser.add_argument("--out", type=Path, default=DEFAULT_CONFIG,
                        help=f"the loratui config to write (default: ./{DEFAULT_CONFIG})")
    parser.add_argument("--dataset-config", type=Path, metavar="FILE",
                        help="the sd-scripts dataset config, when the file does not name it (or names another)")
    parser.add_argument("--force", action="store_true", help="replace --out when it exists")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    return parser


def _error(message: str) -> int:
    print(f"loratui: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def export_main(argv: list[str]) -> int:
    """Entry point of ``loratui export …`` (argv without the leading "export")."""
    from loratui.interop import export_sdscripts
    from trainer.contract.config.toml_io import ConfigFileError, load_config
    from trainer.contract.fileio import atomic_write_text

    args = _export_parser().parse_args(argv)
    try:
        config, problems = load_config(args.config, args.overrides)
    except ConfigFileError as exc:
        return _error(str(exc))
    if problems:
        for problem in problems:
            print(f"loratui: {args.config}: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.dir.exists() and not args.dir.is_dir():
        return _error(f"{args.dir}: is a file; give a folder to write the sd-scripts files into")
    export = export_sdscripts(config, args.dir, args.config)
    existing = [args.dir / name for name in export.files if (args.dir / name).exists()]
    if existing and not args.force:
        names = ", ".join(str(p) for p in existing)
        return _error(f"{names}: already there; nothing was written (--force replaces, or choose another DIR)")
    try:
        for name, text in export.files.items():
            target = args.dir / name
            atomic_write_text(target, text)
            if name in export.executable:
                os.chmod(target, 0o755)
    except OSError as exc:
        return _error(f"{args.dir}: cannot write there ({exc.strerror or exc})")
    written = [str(args.dir / name) for name in export.files]
    if args.format == "json":
        print(json.dumps({"script": export.script, "arch": export.arch, "files": written,
                          "report": export.report.to_json()}, indent=2))
        return EXIT_OK
    print(f"wrote {', '.join(written)}", file=sys.stderr)
    lines = export.report.lines(include_mapped=False)
    print("\n".join(lines) if lines else "Every setting has an sd-scripts equivalent.")
    print(f"\nrun it from your sd-scripts folder: sh {args.dir / 'command.sh'}  ({export.script})")
    return EXIT_OK


def import_main(argv: list[str]) -> int:
    """Entry point of ``loratui import …`` (argv without the leading "import")."""
    from loratui.interop import InteropError, import_file
    from trainer.contract.config.toml_io import save_config

    args = _import_parser().parse_args(argv)
    if args.out.exists() and not args.force:
        return _error(f"{args.out}: already exists; nothing was written (--force replaces it, or --out picks "
                      "another file)")
    try:
        result = import_file(args.file, args.dataset_config)
    except InteropError as exc:
        return _error(f"{args.file}: {exc}")
    try:
        save_config(result.config, args.out)
    except OSError as exc:
        return _error(f"{args.out}: cannot be written ({exc.strerror or exc})")
    if args.format == "json":
        print(json.dumps({"format": result.format, "out": str(args.out), "read": [str(p) for p in result.read],
                          "problems": [str(p) for p in result.problems], "report": result.report.to_json()},
                         indent=2))
    else:
        sources = ", ".join([str(args.file)] + [str(p) for p in result.read])
        print(f"{result.format} config read from {sources}")
        print("\n".join(result.report.lines()))
        print(f"\nwrote {args.out}")
    for problem in result.problems:
        print(f"loratui: {args.out}: {problem}", file=sys.stderr)
    if result.problems:
        print(f"loratui: fix these in {args.out} before training (`loratui check {args.out}` tells more)",
              file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
