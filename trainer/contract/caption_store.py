"""Caption edits that can always be undone: back up first, then write atomically (no torch).

Every tool that rewrites captions (the ``loratui dataset`` commands, the dataset screen, the
auto-tagger child process) hands its new texts to :func:`apply_edits`, which

1. reads every target and drops the edits that would change nothing;
2. checks that every remaining target can be written, and refuses the whole change, touching
   nothing, when one cannot (:class:`CaptionWriteError` names the files and what to do);
3. copies the current bytes of every file it is about to change into a backup folder, and writes
   that change's ``manifest.json`` last and atomically, so a half-made backup is never mistaken
   for a complete one;
4. only then writes each caption atomically (``trainer.contract.fileio``).

Captions are only ever written inside the dataset: a caption file that is a link to a file
outside it, or that lies in a linked folder outside it, is refused like an unwritable one (writing
through the link would change a file the user never pointed loratui at), and a backup record
that names a path outside the dataset is refused by undo. A link inside the dataset to another
file inside it is written through, so the link stays a link.

Backups live outside the dataset, under :func:`backup_root`, so a dataset stays clean to zip or
upload. Each dataset has its own folder there, named after it plus a short hash of its resolved
path, holding one sub-folder per change, named by its sortable time-based id.

:func:`undo_last` walks back one change at a time. It never clobbers work done since: a caption
that was edited after the change is kept as it is, and the text from before the change is put
beside it as ``NAME.undo-conflict`` (a file the change created and that was edited since is
simply kept). Nothing is lost either way, and the other files of the change are still restored.

A change may also remove captions; undo writes them back (beside a file of that name made since).
"""

from __future__ import annotations

import calendar
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterator

from trainer.contract.captions import read_regular_file
from trainer.contract.fileio import atomic_write, atomic_write_bytes, atomic_write_text

MANIFEST = "manifest.json"
"""The file that makes a change's backup folder complete; it is written last."""
MANIFEST_VERSION = 1
CONFLICT_SUFFIX = ".undo-conflict"
"""Added to a caption's name for the pre-change text that undo could not put back in place."""
_OUTSIDE = "outside the dataset"
_ID_FORMAT = "%Y%m%d-%H%M%S"
_ID_PATTERN = re.compile(r"^(\d{8}-\d{6})-(\d{6})$")


class CaptionWriteError(Exception):
    """A caption change (or undo) that cannot be made; nothing was changed.

    The message is one sentence naming the files or folder and what to do about it; ``problems``
    lists each file that is in the way with the reason, for a screen that wants to show them all.
    """

    def __init__(self, message: str, problems: list[tuple[Path, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])


@dataclass(frozen=True)
class FileBackup:
    """What undo needs to put one caption file back as it was before a change."""

    path: Path
    """The caption file (absolute)."""
    existed: bool
    """Whether the file existed before the change (if not, undo removes it)."""
    backup: Path | None
    """The copy of its bytes from before the change; None when it did not exist."""
    before_sha256: str | None
    """The hash of those bytes, to check the copy is intact before restoring it."""
    after_sha256: str | None
    """The hash of what the change wrote, to tell whether the file was edited since; None when the
    change removed the file."""
    mode: int | None
    """Its permission bits before the change (restored with it)."""


@dataclass
class ChangeSet:
    """One change to a dataset's captions, as recorded in its backup folder."""

    id: str
    """Time-based and sortable: a later change always has a greater id."""
    dataset: Path
    action: str
    """What was done, in words, e.g. "add trigger word 'mychar'"."""
    created: float
    """When (seconds since the epoch)."""
    files: list[Path]
    """The caption files changed or created, in the order they were written."""
    backups: list[FileBackup] = field(default_factory=list)
    """One entry per file in ``files``: how to undo it."""
    folder: Path | None = None
    """The backup folder of this change."""
    undone_at: float | None = None
    """When the change was undone, or None while it stands."""
    undo_conflicts: list[tuple[Path, Path | None]] = field(default_factory=list)
    """Files undo left alone because they were edited after the change, each with the side file
    holding its text from before the change (None for a file the change created)."""

    @property
    def undone(self) -> bool:
        """Whether the change has been undone."""
        return self.undone_at is not None

    @property
    def created_files(self) -> list[Path]:
        """The caption files this change created (they did not exist before)."""
        return [entry.path for entry in self.backups if not entry.existed]

    @property
    def removed_files(self) -> list[Path]:
        """The caption files this change removed (undo writes them back)."""
        return [entry.path for entry in self.backups if entry.after_sha256 is None]


def backup_root() -> Path:
    """Where caption backups live: ``$XDG_STATE_HOME/loratui/caption-backups``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "loratui" / "caption-backups"


def dataset_backup_dir(dataset: Path) -> Path:
    """The backup folder of one dataset: its name (for people) plus a hash of its resolved path."""
    resolved = Path(dataset).resolve()
    digest = hashlib.sha256(os.fsencode(resolved)).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", resolved.name).strip("-.")[:40] or "dataset"
    return backup_root() / f"{name}-{digest}"


# ── applying a change ────────────────────────────────────────────────────────────────────────

def apply_edits(dataset: Path, edits: dict[Path, str | None], action: str) -> ChangeSet | None:
    """Write new caption texts, backing up every file first; None when nothing would change.

    ``edits`` maps caption paths inside ``dataset`` to their new text; a missing file counts as
    empty, so an edit with text creates it. None as the text removes the file (backed up like the
    others; undo writes it back); removing a file that is not there changes nothing. The ending
    of an existing file (no newline, ``\\n`` or ``\\r\\n`` after the last line) is kept whatever
    the new text ends with; a new file is written as given. Files are written as UTF-8 without a
    byte-order mark.

    Raises CaptionWriteError, having changed nothing, when a target cannot be written or the
    backup cannot be made.
    """
    given = Path(os.path.abspath(dataset))
    dataset = Path(dataset).resolve()
    folder = dataset_backup_dir(dataset)
    with _locked(folder):
        planned = _plan(dataset, given, edits)
        if not planned:
            return None
        _refuse_unwritable(dataset, [(path, "write" if new is not None else "remove") for path, _, new in planned],
                           "nothing was changed")
        change = _back_up(dataset, folder, planned, action)
        written = 0
        try:
            for (path, old, new), entry in zip(planned, change.backups):
                if new is None:
                    path.unlink()  # a link is removed itself, never the file it leads to
                else:
                    _ensure_inside(dataset, path)
                    _write_file(path, new, entry.mode if entry.mode is not None else _new_file_mode(path))
                written += 1
        except OSError as exc:
            raise _rolled_back(change, planned[written][0], exc) from exc
        return change


def _plan(dataset: Path, given: Path,
          edits: dict[Path, str | None]) -> list[tuple[Path, bytes | None, bytes | None]]:
    """(path, current bytes or None, new bytes or None to remove it) for each edit that changes a file.

    ``given`` is the dataset folder as the caller named it (absolute, links not resolved): a
    caption under it whose folder is a link out of the dataset is refused, not a programming error.
    """
    texts: dict[Path, str | None] = {}
    outside = []
    for key, text in edits.items():
        try:
            path = _inside(dataset, key)
        except ValueError:
            lexical = Path(os.path.abspath(key))
            if not (lexical.is_relative_to(given) or lexical.is_relative_to(dataset)) or lexical in (given, dataset):
                raise
            real = Path(os.path.abspath(lexical.parent)).resolve()
            outside.append((lexical, f"its folder is a link to {real}, {_OUTSIDE}; captions are only written "
                                     "inside it (copy that folder in to caption it)"))
            continue
        if path in texts and texts[path] != text:
            raise ValueError(f"two different edits for {path}")
        texts[path] = text
    if outside:
        raise CaptionWriteError(_refusal(dataset, outside, "nothing was changed"), outside)
    planned, unreadable = [], []
    for path, text in texts.items():
        try:
            old = _read_bytes(path)
        except OSError as exc:
            unreadable.append((path, f"cannot be read ({exc.strerror or exc})"))
            continue
        if text is None:
            if old is not None:
                planned.append((path, old, None))
            continue
        new = _encode(text, old)
        if new != (old if old is not None else b""):
            planned.append((path, old, new))
    if unreadable:
        raise CaptionWriteError(_refusal(dataset, unreadable, "nothing was changed"), unreadable)
    return planned


def _back_up(dataset: Path, folder: Path, planned: list[tuple[Path, bytes | None, bytes | None]],
             action: str) -> ChangeSet:
    """Copy the files about to change into a new backup folder; the manifest goes in last."""
    change_id = _new_id(folder)
    change_dir = folder / change_id
    change = ChangeSet(id=change_id, dataset=dataset, action=action, created=time.time(),
                       files=[path for path, _, _ in planned], folder=change_dir)
    try:
        change_dir.mkdir(parents=True)
        for index, (path, old, new) in enumerate(planned):
            backup = None
            if old is not None:
                backup = change_dir / "files" / f"{index:05d}"
                atomic_write_bytes(backup, old)
            change.backups.append(FileBackup(
                path=path, existed=old is not None, backup=backup,
                before_sha256=_sha256(old) if old is not None else None,
                after_sha256=_sha256(new) if new is not None else None,
                mode=stat.S_IMODE(path.stat().st_mode) if old is not None else None))
        _write_manifest(change)
    except OSError as exc:
        shutil.rmtree(change_dir, ignore_errors=True)
        raise CaptionWriteError(
            f"cannot back up the captions of {dataset} to {change_dir} ({exc.strerror or exc}), so nothing "
            f"was changed; free some space there or set XDG_STATE_HOME to a writable folder") from exc
    return change


def _rolled_back(change: ChangeSet, failed: Path, exc: OSError) -> CaptionWriteError:
    """Put back what a change that failed half-way had written, and say how that went."""
    why = exc.strerror or str(exc)
    try:
        _undo(change)
    except CaptionWriteError:
        return CaptionWriteError(
            f"writing {failed} failed ({why}) after some captions of {change.dataset} had been changed; "
            f"`loratui dataset undo {change.dataset}` puts them back from the backup in {change.folder}")
    return CaptionWriteError(f"writing {failed} failed ({why}); the captions already written were put back, "
                             "so nothing was changed")


# ── history and undo ─────────────────────────────────────────────────────────────────────────

def history(dataset: Path) -> list[ChangeSet]:
    """Every recorded change to a dataset's captions, newest first (undone ones included)."""
    return list(_changes(Path(dataset).resolve(), strict=False))


def _changes(dataset: Path, strict: bool) -> Iterator[ChangeSet]:
    """The recorded changes of a (resolved) dataset, newest first, read one at a time.

    A record naming a path outside the dataset is left out of the history; with ``strict`` (undo)
    it stops with a CaptionWriteError instead, since an older change must not be undone in its place.
    """
    folder = dataset_backup_dir(dataset)
    try:
        children = sorted((c for c in folder.iterdir() if _ID_PATTERN.match(c.name)), reverse=True)
    except OSError:
        return
    for child in children:
        try:
            change = _read_manifest(child, dataset)
        except CaptionWriteError:
            if strict:
                raise
            continue
        if change is not None:
            yield change


def undo_last(dataset: Path) -> ChangeSet | None:
    """Undo the newest change that still stands; None when there is nothing to undo.

    Files the change created are removed and the others get their earlier bytes back, written
    atomically. A file edited since the change is kept (see the module notes); the returned
    change lists those in ``undo_conflicts``. Raises CaptionWriteError, having changed nothing,
    when a file cannot be written or the backup is damaged. A second call goes one further back.
    """
    dataset = Path(dataset).resolve()
    with _locked(dataset_backup_dir(dataset)):
        for change in _changes(dataset, strict=True):
            if not change.undone:
                _undo(change)
                return change
    return None


def _undo(change: ChangeSet) -> None:
    """Restore a change's files, keeping the ones edited since, then mark it undone."""
    restore, conflicts = [], []
    for entry in change.backups:
        before = _verified_backup(change, entry)
        try:
            current = _read_bytes(entry.path)
        except OSError:  # a folder or an unreadable file in its place: keep it, never clobber it
            conflicts.append((entry, before))
            continue
        if current == before:
            continue  # already as it was (a change that failed half-way, or an earlier undo)
        if (_sha256(current) if current is not None else None) == entry.after_sha256:
            restore.append((entry, before))  # as the change left it (removed, or with the text it wrote)
        else:
            conflicts.append((entry, before))
    targets = [(entry.path, "write" if before is not None else "remove") for entry, before in restore]
    targets += [(_conflict_path(entry.path), "write") for entry, before in conflicts if before is not None]
    _refuse_unwritable(change.dataset, targets, "nothing was undone")
    change.undo_conflicts = []
    path = change.dataset
    try:
        for entry, before in restore:
            path = entry.path
            if before is None:
                path.unlink()
            else:
                _ensure_inside(change.dataset, path)
                _write_file(path, before, entry.mode if entry.mode is not None else _new_file_mode(path))
        for entry, before in conflicts:
            side = None
            if before is not None:
                path = side = _conflict_path(entry.path)
                _ensure_inside(change.dataset, side)
                _write_file(side, before, entry.mode if entry.mode is not None else _new_file_mode(side))
            change.undo_conflicts.append((entry.path, side))
    except OSError as exc:
        # Undo can simply be run again: the files already put back read as "as before" and are skipped.
        raise CaptionWriteError(
            f"undoing '{change.action}' stopped at {path} ({exc.strerror or exc}); fix that and undo again "
            "to finish (the files already put back are skipped)") from exc
    change.undone_at = time.time()
    _write_manifest(change)


def _verified_backup(change: ChangeSet, entry: FileBackup) -> bytes | None:
    """A file's bytes from before the change (None: it did not exist), checked against its hash."""
    if not entry.existed:
        return None
    try:
        data = entry.backup.read_bytes() if entry.backup is not None else None
    except OSError:
        data = None
    if data is None or _sha256(data) != entry.before_sha256:
        raise CaptionWriteError(
            f"the backup of {entry.path} in {change.folder} is missing or damaged, so nothing was undone; "
            "the captions are as the change left them")
    return data


def _conflict_path(path: Path) -> Path:
    """A free name beside ``path`` for its pre-change text: NAME.undo-conflict, then -2, -3 …"""
    candidate = path.with_name(path.name + CONFLICT_SUFFIX)
    number = 2
    while candidate.exists() or candidate.is_symlink():
        candidate = path.with_name(f"{path.name}{CONFLICT_SUFFIX}-{number}")
        number += 1
    return candidate


# ── manifests ────────────────────────────────────────────────────────────────────────────────

def _write_manifest(change: ChangeSet) -> None:
    assert change.folder is not None
    dataset = change.dataset

    def rel(path: Path) -> str:
        return path.relative_to(dataset).as_posix()

    data = {
        "version": MANIFEST_VERSION, "id": change.id, "dataset": str(dataset), "action": change.action,
        "created": change.created, "undone_at": change.undone_at,
        "files": [{"path": rel(e.path), "existed": e.existed,
                   "backup": e.backup.relative_to(change.folder).as_posix() if e.backup else None,
                   "before_sha256": e.before_sha256, "after_sha256": e.after_sha256, "mode": e.mode}
                  for e in change.backups],
        "undo_conflicts": [[rel(path), rel(side) if side else None] for path, side in change.undo_conflicts],
    }
    atomic_write_text(change.folder / MANIFEST, json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def _read_manifest(folder: Path, dataset: Path) -> ChangeSet | None:
    """The change recorded in a backup folder, or None when it is incomplete or not this dataset's.

    Raises CaptionWriteError when the record names a caption outside the dataset or a backup
    outside its folder: undo writes and removes the files a record names, so a record edited by
    hand (or by anything else) must never steer it to another file.
    """
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        if data.get("version") != MANIFEST_VERSION or Path(data["dataset"]) != dataset:
            return None

        def caption(text: object) -> Path:
            return _recorded_path(dataset, text, folder, "a caption file inside " + str(dataset))

        backups = [FileBackup(path=caption(f["path"]), existed=bool(f["existed"]),
                              backup=_recorded_path(folder, f["backup"], folder, "a file in the backup folder")
                              if f["backup"] else None,
                              before_sha256=f["before_sha256"], after_sha256=f["after_sha256"], mode=f["mode"])
                   for f in data["files"]]
        conflicts = [(caption(path), caption(side) if side else None) for path, side in data["undo_conflicts"]]
        return ChangeSet(id=data["id"], dataset=dataset, action=data["action"], created=float(data["created"]),
                         files=[b.path for b in backups], backups=backups, folder=folder,
                         undone_at=data["undone_at"], undo_conflicts=conflicts)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _recorded_path(base: Path, text: object, record: Path, expected: str) -> Path:
    """``base / text`` for a relative path read from a backup record, refused unless it stays in ``base``."""
    relative = PurePosixPath(text) if isinstance(text, str) else None
    path = base / relative if relative is not None else None
    if (path is None or not text or "\0" in text or relative.is_absolute() or ".." in relative.parts
            or not _resolves_inside(base, path)):
        raise CaptionWriteError(
            f"the backup record {record / MANIFEST} names {text!r}, which is not {expected}, so nothing was "
            f"undone; the record was damaged or edited. Move the folder {record} out of {record.parent} to undo "
            "the changes recorded before it")
    return path


def _resolves_inside(base: Path, path: Path) -> bool:
    """Whether ``path``'s folder, links followed, is ``base`` or inside it (the file may be a link)."""
    real = Path(os.path.abspath(path.parent)).resolve()
    return real.is_relative_to(base.resolve()) and path != base


def _new_id(folder: Path) -> str:
    """A time-based id greater than every id already in ``folder`` (even if the clock went back)."""
    micros = time.time_ns() // 1000
    try:
        names = [child.name for child in folder.iterdir()]
    except OSError:
        names = []
    for name in names:
        match = _ID_PATTERN.match(name)
        if match:
            seconds = calendar.timegm(time.strptime(match.group(1), _ID_FORMAT))
            micros = max(micros, seconds * 1_000_000 + int(match.group(2)) + 1)
    return f"{time.strftime(_ID_FORMAT, time.gmtime(micros // 1_000_000))}-{micros % 1_000_000:06d}"


# ── files ────────────────────────────────────────────────────────────────────────────────────

def _inside(dataset: Path, key: Path) -> Path:
    """A caption path made absolute, its folder resolved but the file name kept (it may be a link)."""
    key = Path(key)
    path = (Path(os.path.abspath(key.parent)).resolve() / key.name)
    if not path.is_relative_to(dataset) or path == dataset:
        raise ValueError(f"{key} is not a file inside the dataset {dataset}")
    return path


def _read_bytes(path: Path) -> bytes | None:
    """A file's bytes, or None when there is no file (a folder, pipe or device in its place is an
    error; a pipe is never opened for a blocking read)."""
    try:
        return read_regular_file(path)
    except FileNotFoundError:
        return None


def _encode(text: str, old: bytes | None) -> bytes:
    """New caption bytes, ending as the old file did (no newline, LF or CRLF)."""
    if old is not None:
        ending = "\r\n" if old.endswith(b"\r\n") else "\n" if old.endswith(b"\n") else ""
        text = text.rstrip("\r\n") + ending
    return text.encode("utf-8")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _new_file_mode(path: Path) -> int:
    # A new caption gets its folder's read/write bits (a 0755 folder gives 0644), like a file an
    # editor would create there; the temporary file's private 0600 would hide it from other users.
    try:
        return stat.S_IMODE(path.parent.stat().st_mode) & 0o666 or 0o644
    except OSError:
        return 0o644


def _ensure_inside(dataset: Path, path: Path) -> None:
    """Raise PermissionError unless writing ``path`` (through a link if it is one) stays in ``dataset``.

    Checked once more just before each write, so a link made after the up-front checks can never
    turn a caption write into a write elsewhere.
    """
    target = Path(os.path.abspath(path)).resolve()
    if not target.is_relative_to(dataset):
        raise PermissionError(errno.EACCES, f"it leads to {target}, outside the dataset", str(path))


def _write_file(path: Path, data: bytes, mode: int) -> None:
    """Write bytes atomically with the given permission bits, through a symbolic link if it is one."""
    target = path.resolve() if path.is_symlink() else path

    def write(tmp: Path) -> None:
        tmp.write_bytes(data)
        os.chmod(tmp, mode)

    atomic_write(target, write)
    # atomic_write gives a new file the ordinary mode; a caption that undo brings back keeps its own.
    if stat.S_IMODE(target.stat().st_mode) != mode:
        os.chmod(target, mode)


def _why_unwritable(dataset: Path, path: Path, operation: str) -> str | None:
    """Why ``path`` cannot be written (or removed), or None when it can."""
    if operation == "remove":
        # Removing a link removes the link itself, never its target; the link's folder must be writable.
        if path.is_dir() and not path.is_symlink():
            return "a folder is in the way"
        return None if os.access(path.parent, os.W_OK | os.X_OK) else "its folder is read-only"
    target = path.resolve() if path.is_symlink() else path
    if not target.is_relative_to(dataset):
        # Writing through it would change a file outside the dataset; refusing is what a user expects
        # (replacing the link with a plain file would silently change what it shares).
        return f"it is a link to {target}, {_OUTSIDE}; captions are only written inside it"
    folder = target.parent
    if not folder.is_dir():
        return "its folder does not exist"
    if target.exists() and not target.is_file():
        return "a folder or special file is in the way"
    if operation == "write" and target.exists() and not os.access(target, os.W_OK):
        return "the file is read-only"
    # Both an atomic write (a temporary file, then a rename) and a removal change the folder.
    if not os.access(folder, os.W_OK | os.X_OK):
        return "its folder is read-only"
    return None


def _refuse_unwritable(dataset: Path, targets: list[tuple[Path, str]], outcome: str) -> None:
    problems = [(path, why) for path, operation in targets if (why := _why_unwritable(dataset, path, operation))]
    if problems:
        raise CaptionWriteError(_refusal(dataset, problems, outcome), problems)


def _refusal(dataset: Path, problems: list[tuple[Path, str]], outcome: str) -> str:
    """One sentence: which files are in the way, why, and what to do."""
    def name(path: Path) -> str:
        return path.relative_to(dataset).as_posix() if path.is_relative_to(dataset) else str(path)

    shown = "; ".join(f"{name(path)}: {why}" for path, why in problems[:3])
    more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
    count = "1 caption" if len(problems) == 1 else f"{len(problems)} captions"
    if any(_OUTSIDE in why for _, why in problems):
        advice = "put the files themselves in place of links that lead out of it, or work on a copy of the dataset"
    else:
        advice = f"make the folder and its caption files writable (chmod -R u+w '{dataset}') or work on a copy " \
                 "of the dataset"
    return f"cannot write {count} in {dataset} ({shown}{more}), so {outcome}; {advice}"


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold the dataset's backup lock, so two tools never interleave changes to one dataset."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / ".lock", "a+")
    except OSError as exc:
        raise CaptionWriteError(
            f"cannot use the caption backup folder {folder} ({exc.strerror or exc}), so nothing was changed; "
            "set XDG_STATE_HOME to a writable folder") from exc
    with handle:
        try:
            import fcntl
        except ImportError:  # not on POSIX: no locking, one tool at a time is then up to the user
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
