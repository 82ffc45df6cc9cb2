"""Fault injection for tests: make a chosen write or training step fail the way real ones do (no torch).

The fault suite has to prove what happens when a disk fills up in the middle of a checkpoint,
when the process is killed while a file is half written, or when CUDA runs out of memory at
step N. Waiting for those to happen by chance is not a test, so, like FreeBSD's fail(9) and
the fail-rs crate, the code has a few named *fault points* that do nothing unless the
environment variable ``LORATUI_FAULT`` arms them::

    LORATUI_FAULT="enospc@write:*.safetensors:2"    # the 2nd .safetensors write runs out of space
    LORATUI_FAULT="kill@write:last.pt"              # SIGKILL while the resume state is half written
    LORATUI_FAULT="oom@step:5"                      # CUDA out of memory in this process's 5th step
    LORATUI_FAULT="kill@step:3,enospc@write:test.safetensors"   # several, separated by commas

A spec is ``ACTION@POINT[:NAME][:N]``:

- ``POINT`` ``write``: every ``trainer.contract.fileio.atomic_write`` (checkpoints, the final LoRA, the
  resume state, samples, cache entries, the pid file …), reached once the temporary file has been
  written and before it is flushed and renamed. ``NAME`` is a shell pattern (``fnmatch``) matched
  against the target file's name (``test-e0002.safetensors``, ``last.pt``); it defaults to ``*``.
  Actions: ``enospc`` cuts the temporary file in half and raises ``OSError(ENOSPC)``, as a full
  disk does; ``kill`` cuts it in half and sends the process SIGKILL, leaving the torn temporary
  file behind exactly as a power cut or ``kill -9`` mid-save would.
- ``POINT`` ``step``: each training step, just before the forward pass. Actions: ``oom`` raises
  ``torch.cuda.OutOfMemoryError`` with the text CUDA's allocator uses; ``kill`` sends SIGKILL.
- ``N`` (default 1): the fault fires on the N-th time *this process* reaches a matching point, and
  only then (a resumed run counts from 1 again).

The variable is read once, when this module is first imported; unset, every fault point costs one
test of an empty tuple. Only the environment arms a fault: no config field, file or command-line
option reaches this module, so a config file can never make a run fail on purpose. A spec that
cannot be parsed is ignored with one line on stderr; it never stops the process that reads it.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

ENV_VAR = "LORATUI_FAULT"
"""The environment variable that arms fault points."""

ACTIONS_AT = {"write": ("enospc", "kill"), "step": ("oom", "kill")}
"""The actions each fault point supports."""

CUDA_OOM_MESSAGE = (
    "CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity of 23.65 GiB of which "
    "8.56 MiB is free. Including non-PyTorch memory, this process has 23.63 GiB memory in use. Of the "
    "allocated memory 22.90 GiB is allocated by PyTorch, and 312.48 MiB is reserved by PyTorch but "
    "unallocated. If reserved but unallocated memory is large try setting "
    "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See documentation for "
    "Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)")
"""What PyTorch's CUDA caching allocator says when an allocation fails (torch 2.x wording)."""


@dataclass
class Fault:
    """One armed fault: do ``action`` at the ``count``-th ``point`` whose file name matches ``name``."""

    action: str
    point: str
    name: str = "*"
    count: int = 1
    seen: int = 0
    """Matching points reached so far in this process."""

    def due(self, point: str, file_name: str) -> bool:
        """Count a matching point; True exactly once, when the count is reached."""
        if point != self.point or not fnmatch.fnmatchcase(file_name, self.name):
            return False
        self.seen += 1
        return self.seen == self.count


def parse(spec: str | None) -> tuple[Fault, ...]:
    """The faults a ``LORATUI_FAULT`` value arms; parts that cannot be parsed are skipped with a warning."""
    faults = []
    for part in (spec or "").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            faults.append(_parse_one(part))
        except ValueError as why:
            print(f"{ENV_VAR}: ignoring {part!r}: {why}", file=sys.stderr)
    return tuple(faults)


def _parse_one(part: str) -> Fault:
    action, at, rest = part.partition("@")
    if not at:
        raise ValueError("expected ACTION@POINT[:NAME][:N], e.g. enospc@write:*.safetensors:2")
    point, *options = rest.split(":")
    if point not in ACTIONS_AT:
        raise ValueError(f"unknown point {point!r}; expected one of {', '.join(ACTIONS_AT)}")
    if action not in ACTIONS_AT[point]:
        raise ValueError(f"{action!r} cannot happen at {point}; expected one of {', '.join(ACTIONS_AT[point])}")
    count = 1
    if options and options[-1].isdigit():
        count = int(options.pop())
        if count < 1:
            raise ValueError("N counts from 1")
    if len(options) > 1:
        raise ValueError("too many ':' parts")
    name = options[0] if options else "*"
    if not name:
        raise ValueError("empty file name pattern")
    if point == "step" and name != "*":
        raise ValueError("a step has no file name to match")
    return Fault(action, point, name, count)


_armed: tuple[Fault, ...] = parse(os.environ.get(ENV_VAR))


@contextlib.contextmanager
def armed(spec: str) -> Iterator[tuple[Fault, ...]]:
    """Arm ``spec`` in this process for the duration of a ``with`` block (for in-process tests)."""
    global _armed
    before, _armed = _armed, parse(spec)
    try:
        yield _armed
    finally:
        _armed = before


def at_write(target: Path, tmp: Path) -> None:
    """The fault point of an atomic write: ``tmp`` holds the new content of ``target``, not yet renamed."""
    if not _armed:
        return
    for fault in _armed:
        if fault.due("write", Path(target).name):
            _tear(tmp)
            if fault.action == "kill":
                _kill_self()
            raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (injected by {ENV_VAR})", str(tmp))


def at_step() -> None:
    """The fault point of a training step, before its forward pass."""
    if not _armed:
        return
    for fault in _armed:
        if fault.due("step", ""):
            if fault.action == "kill":
                _kill_self()
            # Looked up, not imported: the training loop that calls this has torch loaded, and this module,
            # which the app imports, then holds no torch import at all (tests/unit/test_walls.py reads it).
            torch = sys.modules["torch"]
            raise torch.cuda.OutOfMemoryError(CUDA_OOM_MESSAGE)


def _tear(tmp: Path) -> None:
    # Half a file is what a full disk or a kill leaves: the writer got part of its data out.
    try:
        size = os.path.getsize(tmp)
        with open(tmp, "r+b") as handle:
            handle.truncate(size // 2)
    except OSError:
        pass


def _kill_self() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
    os._exit(137)  # where SIGKILL does not exist (or is not delivered at once), end just as abruptly
