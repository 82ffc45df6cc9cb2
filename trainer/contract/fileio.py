"""Atomic file writes shared by the app and the trainer (no torch).

A write goes to a temporary file in the same folder, is flushed to disk, and only then renamed
over the target. A crash or a full disk therefore never leaves a truncated file where a good
one was: readers see the old file or the new one, nothing in between. A write that fails because
the disk is full is raised as ``DiskFullError`` naming the target, whatever library did the writing.

A process killed mid-write (``kill -9``, a power cut) cannot remove its temporary file; those are
named ``.<target name>.<random>.tmp``, never match a reader's pattern, and
``remove_stale_temps`` clears them once nothing writes in that folder any more.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import tempfile
import traceback
from pathlib import Path
from typing import Callable

from trainer.contract import faults

DISK_FULL_ERRNOS = frozenset(getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG") if hasattr(errno, name))
"""Errors that mean "this filesystem (or quota, or file size limit) has no room for the file"."""

_DISK_FULL_TEXT = {
    # Libraries that write through their own code (safetensors' Rust writer) report the OS error
    # only in their message, in the OS's words ("… No space left on device (os error 28)").
    code: os.strerror(code).lower() for code in DISK_FULL_ERRNOS
}

NEARLY_FULL_BYTES = 1 << 20
"""A write that failed for an unstated reason while less than this is free failed for lack of space.

torch.save's zip writer, for one, reports a full disk as "unexpected pos 576 vs 534"."""

_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
"""``tempfile.mkstemp(prefix=".<name>.", suffix=".tmp")``: the names ``atomic_write`` uses."""


class DiskFullError(OSError):
    """A file could not be written because its filesystem, quota or file size limit is full.

    ``filename`` is the file that was being written (not its temporary name), ``free_bytes``
    what is left on that filesystem after the failed write was cleaned up (None if unknown).
    """

    def __init__(self, path: Path, code: int, free_bytes: int | None) -> None:
        super().__init__(code, os.strerror(code), str(path))
        self.path = Path(path)
        self.free_bytes = free_bytes


def disk_full_errno(exc: BaseException) -> int | None:
    """ENOSPC, EDQUOT or EFBIG if ``exc`` (or what caused it) says the disk is full, else None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return exc.errno
        text = str(exc).lower()
        for code, words in _DISK_FULL_TEXT.items():
            if words in text:
                return code
        exc = exc.__cause__ or exc.__context__
    return None


def free_bytes(folder: Path) -> int | None:
    """Bytes an ordinary user may still write in ``folder``'s filesystem (None if it cannot be told)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` and move the finished file to ``path`` atomically.

    The temporary file is removed if ``write`` (or the flush) fails, and the error is re-raised;
    a failure for lack of space is re-raised as ``DiskFullError`` naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # no room even for an empty file's entry
        if exc.errno in DISK_FULL_ERRNOS:
            raise DiskFullError(path, exc.errno, free_bytes(path.parent)) from exc
        raise
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        faults.at_write(path, tmp)
        # mkstemp makes the file private (0600); give it the mode the file it replaces had, or an
        # ordinary new file's, so a web UI running as another user can still read the LoRA.
        os.chmod(tmp, _mode_for(path))
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        # Judged before the temporary file goes: while it is there a full disk is still full.
        code = _disk_full_cause(exc, path.parent)
        tmp.unlink(missing_ok=True)
        if code is not None and not isinstance(exc, DiskFullError):
            # A writer that failed midway may still hold the deleted file open from its frame
            # (torch.save does), and with it the space; let it go before counting what is free.
            _release_frames(exc)
            raise DiskFullError(path, code, free_bytes(path.parent)) from exc
        raise
    _fsync_dir(path.parent)


def _mode_for(path: Path) -> int:
    """The permission bits for a file written to ``path``: its current ones, or 0666 less the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    # Linux shows the umask in /proc without changing it; os.umask can only be read by setting it,
    # which would race with other threads creating files.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _disk_full_cause(exc: BaseException, folder: Path) -> int | None:
    if not isinstance(exc, Exception):
        return None  # KeyboardInterrupt, SystemExit: not a write failure
    code = disk_full_errno(exc)
    if code is None and not isinstance(exc, OSError):
        free = free_bytes(folder)
        if free is not None and free < NEARLY_FULL_BYTES:
            code = errno.ENOSPC
    return code


def _release_frames(exc: BaseException | None) -> None:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        traceback.clear_frames(exc.__traceback__)
        exc = exc.__cause__ or exc.__context__


def atomic_write_text(path: Path, text: str) -> None:
    """Write text (UTF-8) atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write bytes atomically."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def is_temp_file(path: Path) -> bool:
    """True for the name of an ``atomic_write`` temporary file (never a finished file)."""
    return bool(_TEMP_NAME.match(Path(path).name))


def remove_stale_temps(folder: Path, recursive: bool = False) -> list[Path]:
    """Delete the temporary files that killed writers left in ``folder``; return them.

    Only call this while nothing else writes there: a live writer's temporary file looks the same.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    candidates = folder.rglob(".*.tmp") if recursive else folder.glob(".*.tmp")
    removed = []
    for path in candidates:
        if is_temp_file(path) and path.is_file():
            try:
                path.unlink()
            except OSError:
                continue
            removed.append(path)
    return removed


def _fsync_dir(folder: Path) -> None:
    # The rename itself lives in the folder's entry table; syncing the folder makes it durable.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
