"""Start ``python -m trainer RUN_DIR`` from a process that has already imported torch.

A fresh trainer process spends about 5 s of CPU importing torch, diffusers and transformers
before its first step, more than a tiny training takes. Tests about what the loop writes (files,
events, metadata) do not need that fresh interpreter, so they start the trainer here: a
``multiprocessing`` fork server imports the trainer's modules once, and each run is a fork of it
that calls the same ``main`` the command line does, with the run's own environment, working
folder and log. Tests about the process itself (signals, kills, detaching, the command line,
faults armed through the environment at import) start a real interpreter instead
(``helpers.start_trainer``).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path

PRELOAD = ["trainer.__main__", "trainer.loop", "trainer.models", "trainer.networks.lora",
           "trainer.networks.lycoris_net", "trainer.optim", "trainer.sampling", "trainer.data"]
"""Imported once by the fork server; everything they import (torch, diffusers, …) comes with them."""

READ_AT_IMPORT = ("LORATUI_", "HF_", "HUGGINGFACE_", "TRANSFORMERS_", "DIFFUSERS_", "TORCH", "PYTORCH_",
                  "CUDA_", "XDG_CACHE_HOME")
"""Variables libraries (and our fault points) read when they are imported: a fork inherits the
server's values, so a run whose environment differs in any of them needs a fresh interpreter."""

_context = None
_server_environment: dict[str, str] | None = None


def _read_at_import(environ) -> dict[str, str]:
    return {name: value for name, value in environ.items() if name.startswith(READ_AT_IMPORT)}


def usable(environ=os.environ) -> bool:
    """Whether a fork of the server runs exactly as a fresh ``python -m trainer`` would here."""
    return _server_environment is None or _read_at_import(environ) == _server_environment


def _fork_server():
    global _context, _server_environment
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
        # The server starts with the next process, in this environment.
        _server_environment = _read_at_import(os.environ)
    return _context


def _run(run_dir: str, log: str, env: dict[str, str], cwd: str) -> None:
    """The forked child: the command line's ``main`` with its output going to ``log``."""
    descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    os.close(descriptor)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    import torch

    # The fork server read OMP_NUM_THREADS when it imported torch; the run's own setting wins, and
    # without one a single thread, as ``helpers.start_trainer`` gives a fresh interpreter.
    torch.set_num_threads(int(env.get("OMP_NUM_THREADS") or 1))
    from trainer.__main__ import main

    try:
        status = main([run_dir])
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    sys.exit(status)


def run_trainer(run_dir: Path, log: Path, timeout: float) -> int:
    """Train ``run_dir`` to the end in a forked, pre-warmed trainer; return its exit status.

    A run still going after ``timeout`` seconds is killed and reported as a failure (-9). Call only
    when ``usable()``.
    """
    assert usable(), "this environment differs from the fork server's in a variable read at import"
    process = _fork_server().Process(target=_run, args=(str(run_dir), str(log), dict(os.environ), os.getcwd()))
    process.start()
    process.join(timeout)
    if process.exitcode is None:
        process.kill()
        process.join()
    return process.exitcode
