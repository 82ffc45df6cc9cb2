"""Reading another trainer's config files into a loratui config (no torch).

Two formats are understood:

- **sd-scripts**: a ``--config_file`` TOML (flat, or in tables, which sd-scripts merges) and the
  ``--dataset_config`` TOML it names with ``dataset_config`` (or that ``--dataset-config`` gives). A
  ``command.sh`` beside the file, as ``loratui export`` writes, tells the script (SD1.5 or SDXL) and
  the process count; sd-scripts' own config files do not say either.
- **LoRA_Easy_Training_Scripts**: the TOML its interface saves. Each panel is a table with an
  ``args`` part (training arguments) and a ``dataset_args`` part (dataset ``[general]`` values):
  ``[general_args.args]``, ``[general_args.dataset_args]``, ``[network_args.args]`` with
  ``[network_args.args.network_args]``, ``[optimizer_args.args]`` with ``optimizer_args`` and
  ``lr_scheduler_args`` tables, ``[saving_args.args]``, ``[bucket_args.dataset_args]``,
  ``[noise_args.args]``, ``[sample_args.args]``, ``[logging_args.args]``, and the image folders as
  top-level ``[[subsets]]`` (read in derrian-distro/LoRA_Easy_Training_Scripts, ``main_ui_files/``
  ``MainUI.py`` ``save_toml``/``process_toml`` and the panels' ``*UI.py``). SDXL is ``sdxl = true``;
  the network module is not stored, and is inferred as its backend does (``algo`` → LyCORIS).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loratui.interop.report import MappingReport
from loratui.interop.sdscripts import SD15_SCRIPT, SDXL_SCRIPT
from loratui.interop.sdscripts_import import Importer
from loratui.interop.sdscripts_source import Hints, Source
from trainer.contract.config.schema import SECTIONS, Config, Problem
from trainer.contract.config.toml_io import ConfigFileError, read_toml

SD_SCRIPTS = "sd-scripts"
LORA_EASY = "LoRA_Easy_Training_Scripts"

LORA_EASY_PANELS = ("general_args", "network_args", "optimizer_args", "saving_args", "bucket_args", "noise_args",
                    "sample_args", "logging_args")
"""The tables LoRA_Easy_Training_Scripts' interface saves, one per panel."""

COMMAND_FILE = "command.sh"
"""The launch script ``loratui export`` writes beside config.toml."""


class InteropError(Exception):
    """A file that cannot be imported at all; the message names it and says what to do."""


@dataclass
class ImportResult:
    """A converted config, loratui's problems with it, and the report of every setting."""

    config: Config
    problems: list[Problem]
    report: MappingReport
    format: str
    read: list[Path] = field(default_factory=list)
    """Every file read besides the one named (dataset config, command.sh, prompt file)."""


def detect_format(data: dict[str, Any]) -> str:
    """``sd-scripts`` or ``LoRA_Easy_Training_Scripts`` for a parsed file; InteropError for anything else."""
    tables = {key for key, value in data.items() if isinstance(value, dict)}
    if tables & set(SECTIONS) and all(key in SECTIONS or key in ("config_version", "kind") for key in data):
        raise InteropError("is already a loratui config; open it with `loratui CONFIG` or `loratui train CONFIG`")
    panels = [data[key] for key in LORA_EASY_PANELS if isinstance(data.get(key), dict)]
    if isinstance(data.get("subsets"), list) or any("args" in p or "dataset_args" in p for p in panels):
        return LORA_EASY
    if "datasets" in data and set(data) <= {"general", "datasets"}:
        raise InteropError("is an sd-scripts dataset config (--dataset_config), not a training config; import the "
                           "training config (--config_file) and give this file with --dataset-config")
    return SD_SCRIPTS


def flatten_sdscripts(data: dict[str, Any]) -> dict[str, Any]:
    """Merge tables into one namespace, as sd-scripts' ``read_config_from_file`` does."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return flat


def flatten_lora_easy(data: dict[str, Any], report: MappingReport, hints: Hints) -> tuple[dict, dict, list[dict]]:
    """LoRA_Easy's panels as sd-scripts' training arguments, dataset ``[general]`` and datasets."""
    args: dict[str, Any] = {}
    general: dict[str, Any] = {}
    for key, value in data.items():
        if key == "subsets":
            continue
        if isinstance(value, dict) and (key in LORA_EASY_PANELS or "args" in value or "dataset_args" in value):
            args.update(value.get("args") or {})
            general.update(value.get("dataset_args") or {})
            for extra, extra_value in value.items():
                if extra not in ("args", "dataset_args"):
                    report.drop(f"{key}.{extra}", extra_value, "not a LoRA_Easy args table")
        else:
            report.drop(key, value, "no equivalent in loratui")
    if args.pop("sdxl", False):
        hints.arch, hints.arch_source = "sdxl", "sdxl = true"
    else:
        hints.arch, hints.arch_source = "sd15", "no sdxl = true (LoRA_Easy runs train_network.py)"
    if "network_module" not in args:
        network_args = args.get("network_args") if isinstance(args.get("network_args"), dict) else {}
        if args.pop("fa", False):
            args["network_module"] = "networks.lora_fa"
        elif "algo" in network_args:
            args["network_module"] = "lycoris.kohya"
        elif "unit" in network_args:
            args["network_module"] = "networks.dylora"
        else:
            args["network_module"] = "networks.lora"
    subsets = data.get("subsets") if isinstance(data.get("subsets"), list) else []
    return args, general, [{"subsets": subsets}]


def read_command(path: Path) -> dict[str, Any]:
    """The script, process count and dataset config of an ``accelerate launch`` line in a shell file."""
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    found: dict[str, Any] = {}
    for line in text.splitlines():
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            continue
        for index, token in enumerate(tokens):
            following = tokens[index + 1] if index + 1 < len(tokens) else ""
            if token.endswith(".py") and "train" in Path(token).name and "script" not in found:
                found["script"] = Path(token).name
            elif token == "--num_processes" and following.isdigit():
                found["num_processes"] = int(following)
            elif token.startswith("--num_processes=") and token.split("=", 1)[1].isdigit():
                found["num_processes"] = int(token.split("=", 1)[1])
            elif token == "--dataset_config" and following:
                found["dataset_config"] = following
    return found


def _find(reference: str, base: Path) -> Path | None:
    """A file a config names: as written when absolute, else beside the config, else from here."""
    path = Path(reference).expanduser()
    candidates = [path] if path.is_absolute() else [base / path, path]
    return next((c for c in candidates if c.is_file()), None)


def parse_prompt_line(line: str) -> tuple[str, dict[str, str]]:
    """An sd-scripts prompt line: the prompt and its ``--x value`` options by letter."""
    parts = line.split(" --")
    options = {}
    for part in parts[1:]:
        key, _, value = part.strip().partition(" ")
        if key:
            options[key] = value.strip()
    return parts[0].strip(), options


def read_prompts(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The prompts of a ``.txt`` prompt file and each one's options."""
    prompts, options = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        prompt, opts = parse_prompt_line(line)
        prompts.append(prompt)
        options.append(opts)
    return prompts, options


def _load(path: Path, what: str = "") -> dict[str, Any]:
    """Parse a TOML file; InteropError naming ``what`` (the dataset config) or, for the main file, nothing."""
    try:
        return read_toml(path)
    except ConfigFileError as exc:
        raise InteropError(f"{what} {exc}" if what else exc.message) from None


def _dataset_tables(path: Path, data: dict[str, Any]) -> tuple[dict, list[dict]]:
    general = data.get("general", {})
    datasets = data.get("datasets", [])
    if not isinstance(general, dict) or not isinstance(datasets, list):
        raise InteropError(f"its dataset config {path}: has no [general] table and [[datasets]] list as sd-scripts "
                           "dataset configs do")
    return general, datasets


def import_file(path: Path | str, dataset_config: Path | str | None = None) -> ImportResult:
    """Read an sd-scripts or LoRA_Easy_Training_Scripts config into a loratui config.

    Raises InteropError, with a message naming the file, when the input cannot be used at all.
    """
    path = Path(path)
    data = _load(path)
    fmt = detect_format(data)
    report = MappingReport()
    hints = Hints()
    read: list[Path] = []
    base = path.resolve().parent
    if fmt == LORA_EASY:
        args, general, datasets = flatten_lora_easy(data, report, hints)
    else:
        args = flatten_sdscripts(data)
        general, datasets = {}, []
        command = base / COMMAND_FILE
        if command.is_file():
            _read_command(command, hints, args, report)
            read.append(command)
    reference = str(dataset_config) if dataset_config else args.get("dataset_config")
    if reference:
        found = _find(str(reference), base)
        if found is None and dataset_config:
            raise InteropError(f"--dataset-config {reference}: no such file")
        if found is None:
            raise InteropError(f"names the dataset config {str(reference)!r}, which is not there (looked beside it "
                               "and in the current folder); give it with --dataset-config PATH")
        general, datasets = _dataset_tables(found, _load(found, "its dataset config"))
        read.append(found)
        if fmt == LORA_EASY:
            report.drop("subsets", len(data.get("subsets", [])), f"replaced by the datasets of {found}")
    prompts_ref = args.get("sample_prompts")
    if prompts_ref:
        _read_prompt_file(str(prompts_ref), base, hints, read)
    importer = Importer(Source(args, general, datasets), hints, report)
    try:
        config, problems = importer.run()
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        # A value of a shape no sd-scripts or LoRA_Easy file has (a table where a number belongs …).
        raise InteropError(f"has a setting loratui cannot read ({type(exc).__name__}: {exc}); check the file's "
                           "values against sd-scripts' documentation") from None
    _relative_paths(config, report)
    return ImportResult(config, problems, report, fmt, read)


def _relative_paths(config: Config, report: MappingReport) -> None:
    """Warn about relative paths: sd-scripts read them from where it ran, loratui from the config's folder."""
    from trainer.contract.model_ref import looks_like_hub_id

    for dotted, value in (("model.base", config.model.base), ("dataset.path", config.dataset.path),
                          ("output.dir", config.output.dir)):
        if not value or Path(value).expanduser().is_absolute() or dotted in report.names("defaulted"):
            continue
        if dotted == "model.base" and looks_like_hub_id(value):
            continue
        report.approx(dotted, dotted, value, "a relative path: sd-scripts read it from the folder it ran in, "
                      "loratui reads it from the new config's folder; make it absolute if that differs")


def _read_command(command: Path, hints: Hints, args: dict[str, Any], report: MappingReport) -> None:
    try:
        found = read_command(command)
    except (OSError, UnicodeDecodeError) as exc:
        report.drop(COMMAND_FILE, str(command), f"could not be read ({exc})")
        return
    script = found.get("script")
    if script == SDXL_SCRIPT:
        hints.arch, hints.arch_source = "sdxl", f"{COMMAND_FILE}: {script}"
    elif script == SD15_SCRIPT:
        hints.arch, hints.arch_source = "sd15", f"{COMMAND_FILE}: {script}"
    elif script:
        report.drop(f"{COMMAND_FILE} script", script, "loratui trains SD1.5 and SDXL LoRAs only")
    hints.num_processes = found.get("num_processes")
    if "dataset_config" in found and not args.get("dataset_config"):
        args["dataset_config"] = found["dataset_config"]


def _read_prompt_file(reference: str, base: Path, hints: Hints, read: list[Path]) -> None:
    found = _find(reference, base)
    if found is None:
        hints.prompt_source = "the prompt file is not here"
        return
    if found.suffix.lower() != ".txt":
        hints.prompt_source = "only .txt prompt files are read (one prompt per line)"
        return
    try:
        hints.prompts, hints.prompt_options = read_prompts(found)
    except (OSError, UnicodeDecodeError) as exc:
        hints.prompt_source = f"could not be read ({exc})"
        return
    hints.prompt_source = found.name
    read.append(found)
