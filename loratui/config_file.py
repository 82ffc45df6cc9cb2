"""Saving a config the way its user wrote it: only the values that changed are rewritten.

A config edited by hand carries the user's notes (comments), their order, and their way of
writing values (``5e-4``, not ``0.0005``). Regenerating the file from the config lost all of that
the first time the app saved. tomlkit reads the file into a document that keeps every comment and
space; each changed value is replaced in place (its trailing comment kept), a setting the file did
not have is added to its section, and everything else is written back byte for byte: a key the
schema does not know (a typo the app has flagged) stays as it was, for the user to correct.

This is app-side: the trainer's contract stays on the standard library, and a run's own copy of
its config (``trainer.contract.rundir``) is generated, not edited.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError

from trainer.contract.config.schema import FIELDS, Config, from_dict, get_value
from trainer.contract.config.toml_io import dumps, toml_value
from trainer.contract.fileio import atomic_write_text

_DEFAULTS = Config()


def updated_text(original: str, config: Config) -> str:
    """``original`` (a config file's text) with the values that differ from ``config`` rewritten.

    Falls back to a freshly generated file when ``original`` is not TOML at all.
    """
    try:
        document = tomlkit.parse(original)
        as_written, problems = from_dict(document.unwrap())
    except (TOMLKitError, ValueError):
        return dumps(config)
    unreadable = {problem.field for problem in problems}
    for key in FIELDS:
        value = get_value(config, key)
        if _present(document, key):
            if key not in unreadable and get_value(as_written, key) == value:
                continue  # the file says this already, in the user's own words
        elif value == get_value(_DEFAULTS, key):
            continue  # left to its default, and still the default
        _assign(document, key, value)
    text = tomlkit.dumps(document)
    return text if text.endswith("\n") or not text else text + "\n"


def save_preserving(config: Config, path: Path, written_from: Path | None = None) -> None:
    """Write ``config`` to ``path`` atomically, editing the file that is there rather than replacing it.

    A new file starts from ``written_from`` (the file the config was loaded from, on "save as"), so the
    user's notes travel with it; with neither, the file is generated with every setting documented.
    """
    original = None
    for source in (path, written_from):
        if source is None:
            continue
        try:
            original = source.read_text(encoding="utf-8")
            break
        except (OSError, UnicodeDecodeError):
            continue
    atomic_write_text(path, dumps(config) if original is None else updated_text(original, config))


def _present(document: Any, key: str) -> bool:
    section, _, name = key.rpartition(".")
    if not section:
        return key in document
    table = document.get(section)
    return hasattr(table, "get") and name in table


def _assign(document: Any, key: str, value: Any) -> None:
    item = tomlkit.parse(f"v = {toml_value(value)}")["v"]  # written as the generated files write it
    section, _, name = key.rpartition(".")
    if not section:
        document[key] = item
        return
    if section not in document or not hasattr(document[section], "get"):
        if section not in document:
            _blank_line_at_end(document)
        document[section] = tomlkit.table()
    document[section][name] = item


def _blank_line_at_end(document: Any) -> None:
    """End the document with a blank line, so a section added after it stands apart as people write them."""
    text = tomlkit.dumps(document)
    if not text or text.endswith("\n\n"):
        return
    keys = list(document.keys())
    last = document[keys[-1]] if keys else None
    # After a table, the newlines must go inside it (tomlkit attaches trailing whitespace to the last table).
    target = last if isinstance(last, tomlkit.items.Table) else document
    for _ in range(1 if text.endswith("\n") else 2):
        target.add(tomlkit.nl())
