"""Starting the training process (no torch here: the trainer is a child).

A detached start goes through a short-lived helper (``python -m trainer.contract.detach``) that starts
the trainer in a new session and exits at once, so the trainer is nobody's child: closing the
app, a dropped SSH link (SIGHUP goes to the terminal's session, not the trainer's) or a killed
app leaves it running. Starting the trainer directly from asyncio would not do: an asyncio
subprocess transport kills its child when it is closed or garbage-collected.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

from trainer.contract.config.toml_io import ConfigFileError, load_config
from trainer.contract.rundir import RunPaths, pid_alive, read_pid, write_pid


def trainer_command(run: RunPaths, resume: bool = False) -> list[str]:
    """The command line of the training process for a run.

    With ``training.num_processes`` > 1 in the run's config, ``accelerate launch`` (through
    ``trainer.launcher``, which ends a requested stop with status 0) starts that many
    trainers (one per GPU; gloo on a machine without CUDA) and is itself the run's process: the
    pid recorded is the launcher's, and it passes a stop on to every trainer. Its command line
    still names the trainer, which is how a run's pid is recognised as alive.
    """
    trainer = ["-m", "trainer", str(run.root)] + (["--resume"] if resume else [])
    processes = _num_processes(run)
    if processes <= 1:
        return [sys.executable, *trainer]
    # --multi_gpu selects torch's process launcher, which works without GPUs too (accelerate's --cpu
    # would start a single process). The port is a free one, so two runs on one machine do not collide.
    return [sys.executable, "-m", "trainer.launcher", "--multi_gpu", "--num_machines", "1",
            "--num_processes", str(processes), "--main_process_ip", "127.0.0.1",
            "--main_process_port", str(_free_port()), "--mixed_precision", "no", "--dynamo_backend", "no",
            *trainer]


def _num_processes(run: RunPaths) -> int:
    """``training.num_processes`` of the run's frozen config (1 when it cannot be read: the trainer reports why)."""
    try:
        config, _ = load_config(run.config)
    except (ConfigFileError, OSError):
        return 1
    return max(1, int(config.training.num_processes or 1))


def _free_port() -> int:
    """A TCP port nothing listens on now, for the processes to meet at."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _detach_command(run: RunPaths, resume: bool = False) -> list[str]:
    return [sys.executable, "-m", "trainer.contract.detach", str(run.log), "--", *trainer_command(run, resume)]


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
