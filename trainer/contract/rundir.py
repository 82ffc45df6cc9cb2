"""The run directory: one folder per training run, the only thing app and trainer share (no torch).

```
runs/<name>-<YYYYmmdd-HHMMSS>/
  config.toml        frozen copy of what is trained (absolute paths)
  events.jsonl       the event stream (see trainer.contract.events)
  trainer.log        raw stdout/stderr of the training process (tracebacks land here)
  pid                while the training process runs
  state/             resume state
  checkpoints/       <name>-e0004.safetensors …
  samples/           e0004/…png
  <name>.safetensors the finished LoRA
```
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from trainer.contract.config.schema import Config
from trainer.contract.config.toml_io import dumps
from trainer.contract.fileio import atomic_write_text


@dataclass(frozen=True)
class RunPaths:
    """Where each file of one run lives."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def events(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def log(self) -> Path:
        return self.root / "trainer.log"

    @property
    def pid(self) -> Path:
        return self.root / "pid"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def resume_state(self) -> Path:
        """The state a resumed run starts from (written with every checkpoint)."""
        return self.state / "last.pt"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    def final_lora(self, name: str) -> Path:
        """The finished LoRA file."""
        return self.root / f"{plain_name(name)}.safetensors"

    def checkpoint(self, name: str, epoch: int) -> Path:
        """The LoRA saved at the end of ``epoch``."""
        return self.checkpoints / f"{plain_name(name)}-e{epoch:04d}.safetensors"

    def step_checkpoint(self, name: str, step: int) -> Path:
        """The LoRA saved at ``step`` when a run is stopped or asked to save between epochs."""
        return self.checkpoints / f"{plain_name(name)}-step{step:06d}.safetensors"


def plain_name(name: str) -> str:
    """``name`` itself when it is one plain file name; ValueError otherwise.

    ``output.name`` becomes part of file and folder names inside ``output.dir`` and the run
    folder. Config validation refuses names with slashes (``validate``); this is the second line
    of defence for a Config built in code, so no name can place a file outside those folders.
    """
    separators = {"/", "\\", "\0", os.sep} | ({os.altsep} if os.altsep else set())
    if not isinstance(name, str) or name in ("", ".", "..") or any(sep in name for sep in separators):
        raise ValueError(f"output.name {name!r} is not a plain file name (validate the config first)")
    return name


def create_run_dir(config: Config, now: float | None = None) -> RunPaths:
    """Make a fresh run folder under ``output.dir`` and freeze the config into it.

    The config must already have absolute paths (``load_config`` gives that), so the frozen
    copy still works when the run is resumed from another working directory.
    """
    name = plain_name(config.output.name)  # before anything is created
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    parent = Path(config.output.dir)
    parent.mkdir(parents=True, exist_ok=True)
    root = parent / f"{name}-{stamp}"
    suffix = 1
    while True:
        try:
            # mkdir never follows a link of the same name (it fails with FileExistsError), so the
            # folder made here is always a new, real folder directly inside output.dir.
            root.mkdir()
            break
        except FileExistsError:
            # Two runs started in the same second: never share (or overwrite) a folder.
            suffix += 1
            root = parent / f"{name}-{stamp}-{suffix}"
    if root.resolve().parent != parent.resolve():
        root.rmdir()
        raise ValueError(f"the run folder {root} would not be directly inside output.dir {parent}")
    paths = RunPaths(root)
    atomic_write_text(paths.config, dumps(config))
    return paths


def write_pid(paths: RunPaths, pid: int) -> None:
    """Record the training process id."""
    atomic_write_text(paths.pid, f"{pid}\n")


def read_pid(paths: RunPaths) -> int | None:
    """The recorded training process id, or None."""
    try:
        return int(paths.pid.read_text().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    """True while a training process with this id runs.

    A pid can be reused after its process ends; where /proc exists we also check that the
    process is a Python running the trainer, so a stale pid file never looks like a live run.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists but belongs to someone else
    proc = Path(f"/proc/{pid}")
    if proc.exists():
        try:
            status = (proc / "stat").read_text()
            if ") Z" in status:  # a zombie has finished; it only waits to be reaped
                return False
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        # Any argument naming the trainer counts (`-m trainer`, or a stand-in script in the tests).
        return any(b"trainer" in part for part in cmdline)
    return True
