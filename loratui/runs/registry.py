"""Finding runs and telling what each is doing (pure Python: no torch, no Textual).

A user who logs back in after a dropped SSH link is usually in their home folder, not in the
project, so every run the app or ``loratui train`` starts is also recorded in a small registry
(``$XDG_STATE_HOME/loratui/runs``, one run folder per line). ``loratui runs`` and
``loratui attach`` read that registry plus any folder they are pointed at.

A run's state comes from its files alone: the events it wrote, whether its process is alive,
and for a run that died without a final event, the end of ``trainer.log``. Reading a run never
replays a huge history in full: the first and the last part of ``events.jsonl`` are enough to
know its plan and where it stands.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from loratui.runs.state import RunState
from trainer.contract.events import FINAL_TYPES, parse_event
from trainer.contract.rundir import RunPaths, pid_alive, read_pid

HEAD_BYTES = 64 * 1024
"""How much of the start of an events file is read for the plan (the start event comes early)."""
TAIL_BYTES = 256 * 1024
"""How much of the end is read for the latest state (a few hundred events)."""
STARTING_GRACE_SECONDS = 60
"""A run folder younger than this with no process and no events is still being started."""
LOG_TAIL_LINES = 12

STATUSES = ("starting", "running", "finished", "stopped", "failed")
"""What ``loratui runs`` says about a run."""


def registry_path() -> Path:
    """The file that lists every run started on this machine by this user."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "loratui" / "runs"


def register_run(run: RunPaths) -> None:
    """Add a run folder to the registry (best effort: a read-only home must not stop training)."""
    path = registry_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One short line appended with O_APPEND: concurrent writers cannot interleave inside it.
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{run.root.resolve()}\n")
    except OSError:
        pass


def registered_runs() -> list[Path]:
    """The registered run folders that still exist, without repeats."""
    try:
        lines = registry_path().read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    seen: dict[str, None] = {}
    for line in lines:
        if line.strip():
            seen.setdefault(line.strip(), None)
    return [Path(p) for p in seen if (Path(p) / "config.toml").is_file()]


def runs_in(folder: Path) -> list[Path]:
    """Run folders in ``folder``: the folder itself when it is a run, else its run subfolders."""
    folder = Path(folder)
    if (folder / "config.toml").is_file() and ((folder / "events.jsonl").exists() or (folder / "pid").exists()
                                               or (folder / "trainer.log").exists()):
        return [folder.resolve()]
    try:
        children = list(folder.iterdir())
    except OSError:
        return []
    return sorted(child.resolve() for child in children if (child / "config.toml").is_file() and child.is_dir())


@dataclass
class RunSummary:
    """One run as the runs list and the attach offer show it."""

    paths: RunPaths
    state: RunState
    status: str
    """One of ``STATUSES``."""
    pid: int | None = None
    created: float = 0.0
    """When the run folder was made (for "newest first")."""
    log_tail: list[str] = field(default_factory=list)
    """The last lines of trainer.log, for a run that died without saying why."""

    @property
    def name(self) -> str:
        return self.paths.root.name

    @property
    def alive(self) -> bool:
        return self.status in ("starting", "running")


def _read_slice(path: Path, start: int, size: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(start)
        return handle.read(size)


def read_run_events(path: Path) -> list[dict]:
    """The events needed to know a run's state: all of a small file, the head and tail of a big one."""
    try:
        size = path.stat().st_size
    except OSError:
        return []
    if size <= HEAD_BYTES + TAIL_BYTES:
        chunks = [_read_slice(path, 0, size)]
    else:
        head = _read_slice(path, 0, HEAD_BYTES)
        tail = _read_slice(path, size - TAIL_BYTES, TAIL_BYTES)
        # Drop the torn line at each cut; parse_event skips anything that is not a whole event.
        chunks = [head[: head.rfind(b"\n") + 1], tail[tail.find(b"\n") + 1:]]
    events = []
    for chunk in chunks:
        for line in chunk.split(b"\n"):
            event = parse_event(line.decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
    return events


def last_lines(path: Path, count: int = LOG_TAIL_LINES) -> list[str]:
    """The last ``count`` non-empty lines of a text file (progress-bar redraws collapsed)."""
    try:
        size = path.stat().st_size
        data = _read_slice(path, max(0, size - 32 * 1024), 32 * 1024)
    except OSError:
        return []
    lines = []
    for raw in data.decode("utf-8", errors="replace").split("\n"):
        segments = [s for s in raw.split("\r") if s.strip()]
        if segments:
            lines.append(segments[-1].rstrip())
    return lines[-count:]


def summarize(folder: Path | str, now: float | None = None) -> RunSummary:
    """What one run folder says about its run."""
    paths = RunPaths(Path(folder).resolve())
    state = RunState()
    events = read_run_events(paths.events)
    for event in events:
        state.apply(event)
    pid = read_pid(paths)
    alive = pid is not None and pid_alive(pid)
    try:
        created = paths.config.stat().st_mtime
    except OSError:
        created = 0.0
    ended = bool(events) and events[-1].get("type") in FINAL_TYPES
    if alive and not ended:
        status = "running" if events else "starting"
    elif ended or state.finished:
        status = {"done": "finished", "stopped": "stopped"}.get(state.phase, "failed")
    elif not events and pid is None and (now or time.time()) - created < STARTING_GRACE_SECONDS:
        status = "starting"
    else:
        # The process is gone and never wrote a final event: killed, or crashed hard.
        status = "failed"
        state.phase = "failed"
        state.error_message = "The trainer stopped without a final event (killed, or it crashed)."
        state.advice = f"Its last output is in {paths.log}."
    tail = last_lines(paths.log) if status == "failed" else []
    return RunSummary(paths, state, status, pid if alive else None, created, tail)


def find_runs(folders: list[Path] | tuple[Path, ...] = ()) -> list[RunSummary]:
    """Every known run (the registry plus ``folders``), newest first."""
    roots: dict[Path, None] = {}
    for folder in folders:
        for root in runs_in(folder):
            roots.setdefault(root, None)
    for root in registered_runs():
        roots.setdefault(root.resolve(), None)
    summaries = [summarize(root) for root in roots]
    return sorted(summaries, key=lambda s: s.created, reverse=True)


def choose_run(summaries: list[RunSummary], wanted: str | None) -> tuple[RunSummary | None, str]:
    """The run ``wanted`` names (a path, a folder name or its start), else the newest live one, else the newest.

    Returns (None, why) when nothing matches.
    """
    if not summaries and wanted is None:
        return None, "no runs found; start one with `loratui train CONFIG` or from the app"
    if wanted is None:
        live = [s for s in summaries if s.alive]
        return (live or summaries)[0], ""
    candidate = Path(wanted).expanduser()
    if (candidate / "config.toml").is_file():
        return summarize(candidate), ""
    matches = [s for s in summaries if s.name == wanted] or [s for s in summaries if s.name.startswith(wanted)]
    if len(matches) == 1:
        return matches[0], ""
    if not matches:
        return None, f"no run called {wanted!r}; `loratui runs` lists them"
    names = ", ".join(s.name for s in matches[:5])
    return None, f"{wanted!r} matches several runs ({names}); give more of the name"


def newest_lora(run: RunPaths, state: RunState | None = None) -> Path | None:
    """The run's newest LoRA file: the finished one, else the newest checkpoint; None while it has none.

    The files themselves decide, not only the events: a checkpoint saved just before the app attached,
    or one whose event is still being read, counts too.
    """
    if state is not None and state.output and Path(state.output).is_file():
        return Path(state.output)
    candidates = [*run.checkpoints.glob("*.safetensors"), *run.root.glob("*.safetensors")]
    if state is not None and state.last_checkpoint:
        candidates.append(Path(state.last_checkpoint))
    stamped = []
    for path in candidates:
        try:
            stamped.append((path.stat().st_mtime_ns, path))
        except OSError:
            continue  # pruned or not written yet
    return max(stamped)[1] if stamped else None
