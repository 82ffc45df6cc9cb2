"""Errors the trainer reports to the user as one ``error`` event (no torch).

A TrainerError carries a short code the app can act on, a plain message naming what went
wrong, and advice on what to do. Anything else that escapes is a bug: its traceback goes to
trainer.log and the user sees a one-line summary pointing there.
"""

from __future__ import annotations


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
