"""Reading and writing configs as TOML, with ``--set section.key=value`` overrides.

Part of the contract (no torch). Loading returns the config *and* every problem found, so a
caller can show them all at once; only a file that cannot be read or parsed at all raises.
"""

from __future__ import annotations

import json
import math
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterable

from trainer.contract.config.schema import (FIELDS, SECTIONS, Config, Problem, from_dict, get_value, suggest, validate,
                            with_value)
from trainer.contract.fileio import atomic_write_text
from trainer.contract.model_ref import looks_like_hub_id

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


class ConfigFileError(Exception):
    """A config file that cannot be used at all: missing, unreadable or not valid TOML."""

    def __init__(self, path: Path | str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = Path(path)
        self.message = message


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``section.key=value`` and read the value as TOML, falling back to plain text.

    ``training.batch_size=2`` gives the number 2, ``dataset.flip=true`` a boolean and
    ``dataset.path=/data/my set`` the text as written, so quoting is rarely needed.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"--set {text!r}: expected section.key=value, such as training.batch_size=2")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except ValueError:  # TOMLDecodeError, or an integer too long for Python to read: take the text
        value = raw
    return key, value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> list[Problem]:
    """Write ``--set`` overrides into raw TOML data (in place); return problems with them."""
    problems = []
    for text in overrides:
        try:
            key, value = parse_override(text)
        except ValueError as exc:
            problems.append(Problem("--set", str(exc)))
            continue
        if key not in FIELDS:
            problems.append(Problem(key, "unknown setting." + suggest(key, list(FIELDS))))
            continue
        if "." in key:
            section, name = key.split(".", 1)
            table = data.setdefault(section, {})
            if not isinstance(table, dict):
                problems.append(Problem(section, f"expected a [{section}] table"))
                continue
            table[name] = value
        else:
            data[key] = value
    return problems


def read_toml(path: Path | str) -> dict[str, Any]:
    """Parse a TOML file, turning every way it can fail into one ConfigFileError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigFileError(path, "no such file") from None
    except IsADirectoryError:
        raise ConfigFileError(path, "is a folder, not a config file") from None
    except UnicodeDecodeError:
        raise ConfigFileError(path, "is not UTF-8 text; is it really a TOML config?") from None
    except OSError as exc:
        raise ConfigFileError(path, f"cannot be read ({exc.strerror})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(path, f"is not valid TOML: {exc}") from None
    except ValueError as exc:
        # tomllib lets Python's own limit through: an integer of more than 4300 digits.
        raise ConfigFileError(path, f"is not valid TOML: it holds a number too long to read ({exc})") from None


def load_config(path: Path | str, overrides: Iterable[str] = ()) -> tuple[Config, list[Problem]]:
    """Load a config file, apply overrides and validate; paths are made absolute.

    Raises ConfigFileError only when the file cannot be parsed at all.
    """
    path = Path(path)
    data = read_toml(path)
    problems = apply_overrides(data, overrides)
    config, parse_problems = from_dict(data)
    problems += parse_problems + validate(config)
    return resolve_paths(config, path.resolve().parent), problems


PATH_FIELDS = ("model.base", "model.single_file_config", "model.vae", "dataset.path", "dataset.cache_dir",
               "output.dir", "dataset.mask_path", "network.weights", "dataset.reg_path")
"""Settings that name local files or folders, read relative to the config file's folder."""
MODEL_REFERENCES = ("model.base", "model.single_file_config")
"""Path settings that may instead be a Hugging Face hub id."""


def resolve_paths(config: Config, base_dir: Path) -> Config:
    """Make the config's local paths absolute, relative to ``base_dir`` (the config's folder).

    A model reference that does not exist locally and looks like ``org/name`` stays a hub id.
    """
    def absolute(value: str) -> str:
        if not value:
            return value
        try:
            return str((base_dir / Path(value).expanduser()).resolve())
        except (ValueError, RuntimeError, OSError):
            # A NUL byte, ~user with no such user, a symlink loop: left as written, so validation
            # or the preflight names the setting instead of a traceback naming pathlib.
            return value

    def model_reference(value: str) -> str:
        if value and looks_like_hub_id(value) and not (base_dir / value).exists():
            return value
        return absolute(value)

    for key in PATH_FIELDS:
        resolve = model_reference if key in MODEL_REFERENCES else absolute
        config = with_value(config, key, resolve(get_value(config, key)))
    return config


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # JSON's escapes (\" \\ \n \t \uXXXX) are all valid in TOML basic strings.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _comment(doc: str) -> list[str]:
    return ["# " + line for line in textwrap.wrap(doc, width=94)]


def dumps(config: Config, *, comments: bool = True) -> str:
    """The config as TOML text, each field preceded by its documentation as a comment."""
    lines: list[str] = []
    for key, info in FIELDS.items():
        if "." in key:
            continue
        if comments:
            lines += _comment(info.doc)
        lines.append(f"{key} = {toml_value(get_value(config, key))}")
    for section in SECTIONS:
        lines += ["", f"[{section}]"]
        for key, info in FIELDS.items():
            if not key.startswith(section + "."):
                continue
            if comments:
                lines += _comment(info.doc)
            lines.append(f"{key.split('.', 1)[1]} = {toml_value(get_value(config, key))}")
    return "\n".join(lines) + "\n"


def save_config(config: Config, path: Path | str) -> None:
    """Write a config atomically: a crash never leaves a half-written file behind."""
    atomic_write_text(Path(path), dumps(config))


def loads(text: str) -> tuple[Config, list[Problem]]:
    """Parse TOML text into a config (no path resolution); for tests and the form."""
    config, problems = from_dict(tomllib.loads(text))
    return config, problems + validate(config)


__all__ = ["ConfigFileError", "apply_overrides", "dumps", "load_config", "loads",
           "parse_override", "read_toml", "resolve_paths", "save_config"]
