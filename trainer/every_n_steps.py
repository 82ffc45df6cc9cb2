"""Which steps save a checkpoint or draw samples by ``output.save_every_n_steps`` / ``sample_every_n_steps``.

A step-based save or sample set comes at every multiple of N, as in sd-scripts, except where the
run makes the same thing at that step anyway: the end of an epoch that saves (or samples) by
epoch, and the last step, whose LoRA is the finished file (and whose epoch-end set is drawn).
The same weights saved twice under two names would only take a slot of
``keep_last_n_checkpoints`` from an older checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepSchedule:
    """The every-N-steps settings of one run and where its epochs end."""

    save_every_n_steps: int
    sample_every_n_steps: int
    save_every_n_epochs: int
    sample_every_n_epochs: int
    steps_per_epoch: int
    epochs: int

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def _ended_epoch(self, step: int) -> int | None:
        """The epoch that ends at ``step``, or None when ``step`` is inside one."""
        return step // self.steps_per_epoch if step % self.steps_per_epoch == 0 else None

    def epoch_saves(self, epoch: int) -> bool:
        """Whether the end of ``epoch`` saves a checkpoint (the last epoch saves the finished LoRA instead)."""
        every = self.save_every_n_epochs
        return bool(every) and epoch % every == 0 and epoch < self.epochs

    def epoch_samples(self, epoch: int) -> bool:
        """Whether the end of ``epoch`` draws samples (every N epochs, and the last one when sampling by epoch)."""
        every = self.sample_every_n_epochs
        return bool(every) and (epoch % every == 0 or epoch == self.epochs)

    def saves_at(self, step: int) -> bool:
        """Whether ``step`` saves a checkpoint because of ``save_every_n_steps``."""
        every = self.save_every_n_steps
        if not every or step % every or step >= self.total_steps:
            return False
        epoch = self._ended_epoch(step)
        return epoch is None or not self.epoch_saves(epoch)

    def samples_at(self, step: int) -> bool:
        """Whether ``step`` draws samples because of ``sample_every_n_steps``."""
        every = self.sample_every_n_steps
        if not every or step % every or step > self.total_steps:
            return False
        epoch = self._ended_epoch(step)
        return epoch is None or not self.epoch_samples(epoch)
