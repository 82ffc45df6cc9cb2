"""Messages shared across the app (messages a single widget sends live with that widget)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message


@dataclass
class RunUpdate(Message):
    """New events and trainer output lines read from a run directory (one batch per poll)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    log_lines: list[str] = field(default_factory=list)
    exited: bool = False
    """True when the training process is gone and its files are read to the end."""
