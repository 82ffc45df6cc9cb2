"""Starting the training process (no torch here: the trainer is a child).

A detached start goes through a short-lived helper (``python -m loratui.detach``) that starts
the trainer in a new session and exits at once, so the trainer is nobody's child: closing the
app, a dropped SSH link (SIGHUP goes to the terminal's session, not the trainer's) or a killed
app leaves it running. Starting the trainer directly from asyncio would not do: an asyncio
subprocess transport kills its child when it is closed or garbage-collected.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from trainer.rundir import RunPaths, pid_alive, read_pid, write_pid


def trainer_command(run: RunPaths, resume: bool = False) -> list[str]:
    """The command line of the training process for a run."""
    return [sys.executable, "-m", "trainer", str(run.root)] + (["--resume"] if resume else [])


def _detach_command(run: RunPaths, resume: bool = False) -> list[str]:
    return [sys.executable, "-m", "loratui.detach", str(run.log), "--", *trainer_command(run, resume)]


def _record_pid(run: RunPaths, output: str) -> int:
    try:
        pid = int(output.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f"the trainer did not start: {output.strip() or 'no output'}") from None
    # The trainer writes its pid too; writing it here makes the run visible at once.
    write_pid(run, pid)
    return pid


def start_detached(run: RunPaths, resume: bool = False) -> int:
    """Start the trainer detached from this process and terminal; return its pid."""
    result = subprocess.run(_detach_command(run, resume), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            cwd=run.root, timeout=60)
    return _record_pid(run, result.stdout + result.stderr if result.returncode else result.stdout)


async def start_detached_async(run: RunPaths, resume: bool = False) -> int:
    """``start_detached`` for the app's event loop (the helper exits at once, so nothing is left to kill)."""
    process = await asyncio.create_subprocess_exec(*_detach_command(run, resume), stdin=subprocess.DEVNULL,
                                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                   cwd=run.root)
    stdout, stderr = await process.communicate()
    text = stdout.decode() if process.returncode == 0 else (stdout + stderr).decode()
    return _record_pid(run, text)


def start_foreground(run: RunPaths, resume: bool = False) -> subprocess.Popen:
    """Start the trainer as an ordinary child (same terminal session: Ctrl-C reaches it too)."""
    with open(run.log, "ab") as log:
        return subprocess.Popen(trainer_command(run, resume), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, cwd=run.root)


def resumable_run(folder: Path | str) -> tuple[RunPaths | None, str]:
    """The run in ``folder`` if it can be resumed, else (None, why not)."""
    run = RunPaths(Path(folder).resolve())
    if not run.config.is_file():
        return None, f"{folder} is not a run folder (it has no config.toml)"
    pid = read_pid(run)
    if pid is not None and pid_alive(pid):
        return None, f"{folder} is still training (pid {pid})"
    if not run.resume_state.is_file():
        return None, f"{folder} has no saved state; runs save it with each checkpoint and when stopped"
    return run, ""
