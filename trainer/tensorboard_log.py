"""TensorBoard logging (``output.tensorboard``): the run's events mirrored into TensorBoard's format.

The events file stays the one record of a run; this writer only repeats what is emitted there in
the form TensorBoard reads, into ``RUN_DIR/tensorboard``: the loss (raw, the mean of each epoch
and the validation loss), the learning rate, seconds per step, GPU memory, the sample images and
the run's settings as text. Because it wraps the event writer rather than the loop, TensorBoard can never show
something the app does not, and the loop has no second logging path to keep in step.

A resumed run writes into the same folder with the same step numbers, so its curves continue
where the stopped run's ended.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

TENSORBOARD_FOLDER = "tensorboard"
"""The folder inside the run directory that TensorBoard is pointed at."""

_STEP_SCALARS = {"loss": "loss/step", "lr": "learning_rate/unet", "seconds_per_step": "speed/seconds_per_step",
                 "vram_peak_gib": "gpu/memory_peak_gib"}


class TensorBoardEvents:
    """An event writer that also writes every event's figures to TensorBoard.

    It has the event writer's interface (``emit``, ``close``), so the trainer is handed one or
    the other. A failure on the TensorBoard side (a broken sample file, a full disk) is reported
    once on stderr (trainer.log) and never stops training.
    """

    def __init__(self, events, folder: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.events = events
        self.folder = Path(folder)
        self._writer = SummaryWriter(log_dir=str(self.folder), flush_secs=10)
        self._failed = False

    def emit(self, event_type: str, **fields: Any) -> dict[str, Any]:
        """Write the event to the events file, then its figures to TensorBoard."""
        record = self.events.emit(event_type, **fields)
        try:
            self._mirror(record)
        except Exception as exc:  # noqa: BLE001 - a chart is never worth the run
            if not self._failed:
                print(f"TensorBoard logging failed ({type(exc).__name__}: {exc}); training goes on.",
                      file=sys.stderr, flush=True)
                self._failed = True
        return record

    def _mirror(self, record: dict[str, Any]) -> None:
        kind = record["type"]
        if kind == "step":
            for field, tag in _STEP_SCALARS.items():
                value = record.get(field)
                if isinstance(value, (int, float)):
                    self._writer.add_scalar(tag, value, record["step"], walltime=record["time"])
        elif kind == "validation" and isinstance(record.get("loss"), (int, float)):
            self._writer.add_scalar("loss/validation", record["loss"], record["step"], walltime=record["time"])
        elif kind == "epoch" and isinstance(record.get("mean_loss"), (int, float)):
            self._writer.add_scalar("loss/epoch_mean", record["mean_loss"], record["step"], walltime=record["time"])
        elif kind == "sample":
            self._add_sample(record)
        elif kind == "start":
            self._writer.add_text("run", _start_text(record), record.get("resumed_from_step") or 0)
        elif kind in ("done", "stopped", "error"):
            self._writer.flush()

    def _add_sample(self, record: dict[str, Any]) -> None:
        import numpy as np
        from PIL import Image

        with Image.open(record["path"]) as image:
            pixels = np.asarray(image.convert("RGB"))
        name = Path(record["path"]).stem  # pNN-wS.S: the prompt and the strength
        self._writer.add_image(f"samples/{name}", pixels, record["step"], dataformats="HWC", walltime=record["time"])
        # The prompt as written, its own options (--w 768 --d 3) included.
        prompt = " ".join(part for part in (record.get("prompt", ""), record.get("options", "")) if part)
        self._writer.add_text(f"samples/{name}", prompt, record["step"])

    def close(self) -> None:
        """Flush and close TensorBoard's file, then the events file."""
        try:
            self._writer.close()
        finally:
            self.events.close()


def _start_text(record: dict[str, Any]) -> str:
    keys = ("arch", "device", "precision", "resolution", "images", "epochs", "batch_size", "total_steps",
            "formula_steps", "trainable_parameters", "resumed_from_step")
    return "\n".join(f"- {key}: {record.get(key)}" for key in keys if key in record)
