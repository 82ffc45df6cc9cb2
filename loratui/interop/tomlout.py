"""Writing the small TOML files an export produces (no torch, no third-party TOML writer).

Values are written by ``trainer.contract.config.toml_io.toml_value``, the writer our own configs use, so
strings, numbers, booleans and lists of them come out the same way everywhere.
"""

from __future__ import annotations

from typing import Any, Iterable

from trainer.contract.config.toml_io import toml_value

Group = tuple[str, list[tuple[str, Any]]]
"""A comment heading and the ``key = value`` pairs under it."""


def comment_lines(lines: Iterable[str]) -> list[str]:
    """Lines turned into TOML comments."""
    return [f"# {line}".rstrip() for line in lines]


def flat_toml(header: Iterable[str], groups: Iterable[Group]) -> str:
    """A TOML file of top-level keys only, each group under a comment heading.

    sd-scripts' ``--config_file`` merges every table into one flat namespace anyway, so flat
    keys are its simplest form and read the same with any TOML parser.
    """
    out = comment_lines(header)
    for title, pairs in groups:
        if not pairs:
            continue
        out += ["", f"# {title}"]
        out += [f"{key} = {toml_value(value)}" for key, value in pairs]
    return "\n".join(out).lstrip("\n") + "\n"


def dataset_toml(header: Iterable[str], general: list[tuple[str, Any]],
                 subsets: list[list[tuple[str, Any]]]) -> str:
    """An sd-scripts dataset config: ``[general]``, one ``[[datasets]]`` and its ``[[datasets.subsets]]``."""
    out = comment_lines(header) + ["", "[general]"]
    out += [f"{key} = {toml_value(value)}" for key, value in general]
    out += ["", "[[datasets]]"]
    for subset in subsets:
        out += ["", "  [[datasets.subsets]]"]
        out += [f"  {key} = {toml_value(value)}" for key, value in subset]
    return "\n".join(out).lstrip("\n") + "\n"
