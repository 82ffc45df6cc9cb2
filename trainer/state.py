"""Resume state: everything a run needs to continue exactly where it stopped.

Saved with every checkpoint (and when stopped on request) as ``state/last.pt``: the network's
weights in fp32, the optimizer, the schedule, the loss scaler, every random generator and the
position in the data order. The data order itself is not stored: each epoch's batches are a
pure function of the seed and the epoch (``plan.epoch_batches``), so the position is enough.
With all of that restored, a resumed run computes the same steps an uninterrupted one would.

Loading uses ``torch.load(weights_only=True)``: a state file can hold tensors and plain data,
never code.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainer.contract.errors import TrainerError
from trainer.contract.fileio import atomic_write

STATE_VERSION = 1


@dataclass
class Progress:
    """Where the loop is: what has been done, and the little it carries between steps."""

    step: int = 0
    """Optimizer steps done."""
    epoch: int = 1
    """The epoch in progress (1-based)."""
    batch_in_epoch: int = 0
    """Batches of that epoch already done (always a whole number of updates' worth when saved)."""
    nan_streak: int = 0
    epoch_losses: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Fingerprint:
    """What must not change between a run and its resumption, or the step count would lie."""

    total_steps: int
    batches_per_epoch: int
    images: int
    accumulation: int = 1
    """Batches per update: a state saved between two updates is only a boundary at the same count."""


def save_state(path: Path, *, progress: Progress, fingerprint: Fingerprint, network: torch.nn.Module,
               optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any, rng: random.Random,
               metadata: dict[str, str]) -> Path:
    """Write the resume state atomically and return its path."""
    state = {
        "version": STATE_VERSION,
        "progress": asdict(progress),
        "fingerprint": asdict(fingerprint),
        "network": {k: v.detach().cpu() for k, v in network.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": {"python": rng.getstate(), "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
        "metadata": metadata,
    }
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    return path


def load_state(path: Path) -> dict[str, Any]:
    """Read a saved state; a missing or unreadable one is a TrainerError the user can act on."""
    if not path.is_file():
        raise TrainerError("resume", f"{path.parent.parent} has no saved state to resume from ({path} is missing).",
                           "A run saves its state with each checkpoint (output.save_every_n_epochs) and when "
                           "stopped; start a new run instead.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file; weights_only refuses anything but data
        raise TrainerError("resume", f"{path} cannot be read: {exc}", "Start a new run.") from exc
    if state.get("version") != STATE_VERSION:
        raise TrainerError("resume", f"{path} was written by another version of loratui.", "Start a new run.")
    return state


def restore(state: dict[str, Any], *, fingerprint: Fingerprint, network: torch.nn.Module,
            optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any, rng: random.Random) -> Progress:
    """Put a saved state back into freshly built training objects; return the loop's position."""
    saved = Fingerprint(**state["fingerprint"])
    if saved != fingerprint:
        raise TrainerError("resume", f"the dataset or settings changed since this run started: it planned "
                           f"{saved.total_steps} steps over {saved.images} images, now {fingerprint.total_steps} "
                           f"over {fingerprint.images}.", "Put the dataset back as it was, or start a new run.")
    network.load_state_dict(state["network"])
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (ValueError, KeyError) as exc:  # torch's own check: the groups hold other numbers of tensors
        raise TrainerError("resume", "the saved optimizer state has another layout than this run's optimizer (it "
                           "was saved by another loratui version, or with LORATUI_PACKED_OPTIMIZER set otherwise).",
                           "Resume with the version and environment that started the run, or start a new run.") from exc
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    version, internal, gauss = state["rng"]["python"]
    rng.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return Progress(**state["progress"])
