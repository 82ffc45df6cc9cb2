"""How config messages quote values and limits, and the "did you mean" hint (no torch).

Kept apart from the schema in trainer/contract/config/schema.py so that file stays about the settings; every
function here must never raise, whatever odd value a user's file holds.
"""

from __future__ import annotations

import difflib
import math
from typing import Any


def suggest(name: str, options: list[str] | tuple[str, ...]) -> str:
    """A " Did you mean …?" hint for a misspelt name, or an empty string.

    difflib finds the near names; among those the fewest typed letters apart wins, so ``loqr``
    suggests ``lokr`` (one letter off) rather than ``lora`` (two), which difflib rates the same.
    """
    close = difflib.get_close_matches(str(name), [str(o) for o in options], n=3, cutoff=0.6)
    if not close:
        return ""
    return f" Did you mean '{min(close, key=lambda option: edit_distance(str(name), option))}'?"


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: the letters to insert, delete or change to turn ``a`` into ``b``."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        diagonal, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (ca != cb))
    return row[-1]


def limit_text(number: float) -> str:
    """A schema limit as a message writes it: 4096, 0.1, 4294967295 (never 4.29497e+09)."""
    return str(int(number)) if float(number).is_integer() and abs(number) < 1e15 else f"{number:g}"


def number_text(value: float) -> str:
    """A user's number for a message; an integer too long to print whole is described by its length."""
    if isinstance(value, int) and value.bit_length() > 64:
        # str() of an int with over 4300 digits raises, and a 300-digit echo helps nobody.
        return f"a {int(value.bit_length() * math.log10(2)) + 1}-digit number"
    return f"{value:g}" if isinstance(value, float) else str(value)


def quoted(value: Any, limit: int = 60) -> str:
    """A value quoted in a message: its repr, cut short, and never raising (huge or odd values included)."""
    if isinstance(value, bool):
        return "true" if value else "false"  # as the TOML file spells it
    if isinstance(value, int):
        return number_text(value)
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int with thousands of digits inside a list, a deep nest
        text = f"a {type(value).__name__}"
    return text if len(text) <= limit else text[:limit - 1] + "…"


def finite_float(value: int | float) -> float | None:
    """``value`` as a float, or None when it is nan, ±inf or an integer too large for a float."""
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
