"""Errors the trainer reports to the user as one ``error`` event (no torch).

A TrainerError carries a short code the app can act on, a plain message naming what went
wrong, and advice on what to do. Anything else that escapes is a bug: its traceback goes to
trainer.log and the user sees a one-line summary pointing there.
"""

from __future__ import annotations

from pathlib import Path


class TrainerError(Exception):
    """A failure the user can act on."""

    def __init__(self, code: str, message: str, advice: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.advice = advice


OOM_ADVICE = ("Out of GPU memory. Try, in this order: batch size 1 (training.batch_size), "
              "training.gradient_checkpointing = true, the adamw8bit optimizer, a lower "
              "dataset.resolution, or a smaller network.dim.")
"""What to do when CUDA runs out of memory."""

NAN_ADVICE = ("The loss became NaN or infinite, so the weights are ruined from here on. Lower the "
              "learning rates (optimizer.unet_lr, optimizer.text_encoder_lr), and if "
              "training.mixed_precision is fp16 try bf16.")
"""What to do when training diverges."""


def disk_full(path: str, reason: str, free_bytes: int | None, resume_from: Path | None,
              atomic: bool = True) -> TrainerError:
    """The ``disk_full`` error: ``path`` could not be written for lack of space (``reason``: the OS's words).

    ``resume_from`` is the run folder when it holds a resume state, so the advice can say how to go on;
    ``atomic`` says the write went through ``atomic_write``, which left any earlier file of that name whole.
    """
    free = "an unknown amount" if free_bytes is None else human_bytes(free_bytes)
    then = (f"then continue from the last checkpoint with `loratui resume {resume_from}`" if resume_from is not None
            else "then start the run again")
    kept = " Any earlier file of that name is unchanged." if atomic else ""
    return TrainerError(
        "disk_full", f"{reason}: {path} could not be written ({free} free on that disk).{kept}",
        f"Free space on the disk that holds {Path(path).parent} (older checkpoints of finished or abandoned runs "
        f"can go), {then}. For new runs, keep fewer checkpoints (output.keep_last_n_checkpoints) or point "
        f"output.dir at a bigger disk.")


def human_bytes(count: int) -> str:
    """A byte count for people: ``512 B``, ``12.0 KiB``, ``3.4 GiB``."""
    if count < 1024:
        return f"{count} B"
    size = float(count)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024:
            return f"{size:.1f} {unit}"
    return f"{size / 1024:.1f} TiB"
