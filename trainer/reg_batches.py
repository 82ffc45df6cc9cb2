"""Regularization images inside a run: which of the encoded images are reg images, and what follows.

The loop encodes the training images and the reg images sd-scripts' balancing picks
(``trainer.contract.reg_images.balance_reg_images``) in one pass and draws batches from both. This
module marks which is which, so a reg image gets its own caption (never the trigger word), its loss
counts ``training.prior_loss_weight`` times, and it stays out of the training images' counts, tags
and folders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, TypeVar

import torch

from trainer.contract.captions import read_caption, with_trigger
from trainer.contract.dataset_scan import DatasetImage
from trainer.contract.reg_images import reg_caption

T = TypeVar("T")


@dataclass(frozen=True)
class RegMarks:
    """For each encoded image (in the loop's order), whether it is a regularization image."""

    is_reg: tuple[bool, ...]
    prior_loss_weight: float = 1.0

    @classmethod
    def of(cls, sources: Sequence[DatasetImage], reg_sources: Sequence[DatasetImage], weight: float) -> "RegMarks":
        """Mark ``sources`` (the encoded images' sources) against the reg images that were asked for."""
        reg = set(reg_sources)
        return cls(tuple(source in reg for source in sources), weight)

    @property
    def any(self) -> bool:
        return any(self.is_reg)

    @property
    def train_count(self) -> int:
        """How many of the images are the user's own."""
        return self.is_reg.count(False)

    def train_only(self, items: Sequence[T]) -> list[T]:
        """The items (one per image) of the user's own images."""
        return [item for item, reg in zip(items, self.is_reg) if not reg]

    def captions(self, sources: Sequence[DatasetImage], trigger_word: str) -> list[str]:
        """Every image's caption: the user's with the trigger word first, a reg image's own (or its class word)."""
        return [reg_caption(source) if reg else with_trigger(read_caption(source.caption_path), trigger_word)
                for source, reg in zip(sources, self.is_reg)]

    def weights(self, batch: Sequence[int]) -> torch.Tensor | None:
        """Per-sample loss weights of a batch of image indices (None without reg images: all weigh 1)."""
        if not self.any:
            return None
        return torch.tensor([self.prior_loss_weight if self.is_reg[i] else 1.0 for i in batch])

    def start_fields(self, repeats: Sequence[int]) -> dict[str, int]:
        """The ``start`` event's image counts, the user's images and the reg images apart."""
        return {"images": self.train_count, "samples_per_epoch": sum(self.train_only(repeats)),
                "reg_images": len(self.is_reg) - self.train_count,
                "reg_samples_per_epoch": sum(r for r, reg in zip(repeats, self.is_reg) if reg)}
