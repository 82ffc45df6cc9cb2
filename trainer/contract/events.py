"""The events file: how the trainer tells the world what it is doing (no torch).

The trainer appends one JSON object per line to ``events.jsonl`` in its run directory and
flushes each line as it is written, so a reader can tail the file while training runs, and a
reader that arrives late (the app reopened after an SSH drop) replays the whole history.

Every event has ``type`` and ``time`` (Unix seconds). docs/contract.md lists each type's fields.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Iterator

EVENT_TYPES = ("start", "status", "step", "epoch", "validation", "sample", "checkpoint", "warning", "error",
               "stopped", "done")
"""Every event type the trainer writes. Readers ignore types they do not know."""

FINAL_TYPES = ("error", "stopped", "done")
"""Types that end a run: exactly one of them is the last event of a run that ended cleanly."""


def _clean(value: Any) -> Any:
    # JSON has no NaN or infinity; a diverged loss is written as null (the error event says why).
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class EventWriter:
    """Appends events to a file, one flushed JSON line each."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._file = open(self.path, "a", encoding="utf-8")

    def emit(self, type: str, **fields: Any) -> dict[str, Any]:
        """Write one event and return it."""
        if type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type!r}")
        record = {"type": type, "time": round(time.time(), 3), **_clean(fields)}
        self._file.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
        self._file.flush()
        return record

    def close(self) -> None:
        """Flush the file to disk and close it."""
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def __enter__(self) -> "EventWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_event(line: str) -> dict[str, Any] | None:
    """One event from one line, or None for a line that is not an event (torn or foreign)."""
    line = line.strip()
    if not line:
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("type"), str):
        return None
    return record


def read_events(path: Path | str) -> list[dict[str, Any]]:
    """Every complete event in a file (an unfinished last line is left out)."""
    tail = LineTail(path)
    return [e for e in (parse_event(line) for line in tail.read_lines()) if e is not None]


class LineTail:
    """Reads the complete lines appended to a file since the last call.

    A line is complete once its newline is written; a partial last line is kept back until the
    writer finishes it, so a reader never sees half an event. The file may not exist yet.
    """

    @staticmethod
    def end_of(path: Path | str) -> int:
        """The current size of a file (0 when it does not exist): an offset that skips its history."""
        try:
            return Path(path).stat().st_size
        except FileNotFoundError:
            return 0

    def __init__(self, path: Path | str, max_chunk: int = 1 << 20, offset: int = 0) -> None:
        self.path = Path(path)
        self._offset = offset
        """Where the next read starts; a reader that only wants what comes next starts at the end."""
        self._pending = b""
        self._max_chunk = max_chunk

    def read_lines(self, limit: int | None = None) -> list[str]:
        """New complete lines (decoded as UTF-8, newline stripped), at most about ``limit`` bytes."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read(limit or -1)
        except FileNotFoundError:
            return []
        if not data:
            return []
        self._offset += len(data)
        data = self._pending + data
        *complete, self._pending = data.split(b"\n")
        return [line.decode("utf-8", errors="replace").rstrip("\r") for line in complete]

    def iter_chunks(self) -> Iterator[list[str]]:
        """Everything currently in the file, in bounded chunks (for replaying a long history)."""
        while True:
            before = self._offset
            lines = self.read_lines(self._max_chunk)
            if self._offset == before:
                return
            if lines:
                yield lines
