"""``python -m trainer RUN_DIR [--resume]``: train the LoRA described by RUN_DIR/config.toml.

The process is meant to run detached: it reads nothing from stdin, writes its progress to
RUN_DIR/events.jsonl and lets stdout/stderr (redirected to trainer.log by whoever starts it)
carry library output and tracebacks. Under ``accelerate launch`` (``training.num_processes`` > 1)
every process runs this entry; rank 0 alone writes events and the pid file, and the pid it
records is the launcher's, which forwards a stop to all of them. Exit status: 0 finished or stopped on request, 1 failed,
2 the run directory or its config is unusable.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from trainer.contract.config.toml_io import ConfigFileError, load_config
from trainer.contract.errors import OOM_ADVICE, TrainerError, disk_full
from trainer.contract.events import EventWriter
from trainer.contract.fileio import DiskFullError, disk_full_errno, free_bytes, remove_stale_temps
from trainer.contract.preflight import preflight
from trainer.contract.rundir import RunPaths, pid_alive, read_pid, write_pid
from trainer.contract.stop import StopRequest, install_stop_handlers
from trainer.distributed import Ranks, ranks_from_env
from trainer.quiet import quiet_libraries
from trainer.speed import configure_allocator


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _as_disk_full(exc: BaseException, paths: RunPaths) -> TrainerError | None:
    """The ``disk_full`` error for a failure caused by a full disk, else None."""
    resume_from = paths.root if paths.resume_state.is_file() else None
    if isinstance(exc, DiskFullError):
        return disk_full(str(exc.path), exc.strerror, exc.free_bytes, resume_from)
    code = disk_full_errno(exc)
    if code is None:
        return None
    # Not through atomic_write (the events file, the log): name what the OS named, or the run folder.
    target = getattr(exc, "filename", None) or str(paths.root)
    return disk_full(str(target), os.strerror(code), free_bytes(Path(target).parent), resume_from, atomic=False)


def _clean_after_kill(paths: RunPaths) -> None:
    """Remove the temporary files of saves a killed trainer never finished (no other trainer runs here)."""
    removed = remove_stale_temps(paths.root)
    for folder in (paths.checkpoints, paths.state, paths.samples):
        removed += remove_stale_temps(folder, recursive=True)
    for path in removed:
        print(f"Removed {path}: a save the previous trainer did not finish.", flush=True)


class _NoEvents:
    """The events of a process other than rank 0: rank 0 reports the same run, so these go nowhere."""

    def emit(self, type: str, **fields) -> dict:
        return {"type": type, **fields}

    def close(self) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer", description="Train the LoRA a run directory describes.")
    parser.add_argument("run_dir", type=Path, help="a run directory holding config.toml")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the state saved with the run's last checkpoint")
    args = parser.parse_args(argv)

    paths = RunPaths(args.run_dir.resolve())
    if not paths.config.is_file():
        print(f"{paths.config} does not exist: the run directory is incomplete.", file=sys.stderr)
        return 2
    ranks = ranks_from_env()
    # Under a launcher the run's process is the launcher (our parent): it is the one to stop.
    own_pid = os.getppid() if ranks.distributed else os.getpid()
    other = read_pid(paths)
    if other is not None and other not in (own_pid, os.getpid()) and pid_alive(other):
        # Two trainers on one run folder would interleave their events and overwrite files.
        print(f"{paths.root} is already being trained by process {other}.", file=sys.stderr)
        return 2
    quiet_libraries()
    # Before torch is imported (trainer.loop imports it): CUDA reads its allocator settings once, at start.
    print(configure_allocator(), flush=True)
    if not ranks.main:
        return _run(paths, _NoEvents(), args.resume, ranks)
    write_pid(paths, own_pid)
    events = EventWriter(paths.events)
    try:
        return _run(paths, events, args.resume, ranks)
    finally:
        events.close()
        paths.pid.unlink(missing_ok=True)


def _run(paths: RunPaths, events: EventWriter, resume: bool, ranks: Ranks = Ranks()) -> int:
    try:
        config, problems = load_config(paths.config)
    except ConfigFileError as exc:
        events.emit("error", code="config", message=str(exc), advice="Fix the file, then start a new run.")
        return 2
    if problems:
        events.emit("error", code="config", message="; ".join(str(p) for p in problems),
                    advice="Fix these settings, then start a new run.", problems=[vars(p) for p in problems])
        return 2
    checked = preflight(config)
    if resume and not config.network.dim_from_weights:
        # A resumed run takes its weights from its saved state, never from the file it started from
        # (which may have moved since); with dim_from_weights the file still gives the layers' ranks.
        checked.problems = [p for p in checked.problems if p.field != "network.weights"]
    if not checked.ok:
        events.emit("error", code="input", message="; ".join(str(p) for p in checked.problems),
                    problems=[vars(p) for p in checked.problems])
        return 2

    if resume and paths.final_lora(config.output.name).exists():
        events.emit("error", code="resume", message=f"{paths.root.name} already finished; there is nothing to resume.",
                    advice=f"The LoRA is {paths.final_lora(config.output.name)}.")
        return 2

    if resume and ranks.main:
        _clean_after_kill(paths)
    tensorboard = None
    if config.output.tensorboard and ranks.main:
        from trainer.tensorboard_log import TENSORBOARD_FOLDER, TensorBoardEvents  # preflight saw it installed

        events = tensorboard = TensorBoardEvents(events, paths.root / TENSORBOARD_FOLDER)

    from trainer.loop import run_training  # torch is imported from here on

    stop = StopRequest()
    install_stop_handlers(stop, echo_seconds=5.0 if ranks.distributed else 0.0)
    try:
        run_training(config, paths, events, stop, checked.scan, resume=resume, ranks=ranks,
                     reg_scan=checked.reg_scan)
        return 0
    except TrainerError as exc:
        events.emit("error", code=exc.code, message=exc.message, advice=exc.advice)
        return 1
    except KeyboardInterrupt:
        events.emit("stopped", reason="interrupted twice: stopped without saving")
        return 0
    except Exception as exc:
        # The event first: on a full disk the traceback may not fit into trainer.log.
        full = _as_disk_full(exc, paths)
        if full is not None:
            events.emit("error", code=full.code, message=full.message, advice=full.advice)
        elif _is_out_of_memory(exc):
            # CUDA's own message starts "CUDA out of memory. Tried to allocate …": its first line is enough.
            first_line = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
            message = first_line if "out of memory" in first_line.lower() else f"Out of memory: {first_line}"
            events.emit("error", code="oom", message=message, advice=OOM_ADVICE)
        else:
            events.emit("error", code="crash", message=f"{type(exc).__name__}: {exc}".splitlines()[0],
                        advice=f"This is a bug in loratui or a library; the full traceback is in {paths.log}.")
        try:
            traceback.print_exc()
        except OSError:
            pass
        return 1
    finally:
        if tensorboard is not None:
            tensorboard.close()
        if ranks.distributed:
            from trainer.distributed import shutdown

            shutdown()


if __name__ == "__main__":
    sys.exit(main())
