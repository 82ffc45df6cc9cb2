"""Which images are held out of training to measure a validation loss (no torch).

``training.validation_split`` holds out ``floor(split × images)`` images (rounded down, so the
training part keeps ``ceil((1 - split) × images)`` images, as sd-scripts' training part does).
``training.validation_seed`` picks them: the images are shuffled in file-name order by a
generator seeded with it and the first ones are held out. The same seed always holds out the
same images, whatever else changes in the config.

The app and the trainer both call ``split_images``, so the step count shown before a run counts
exactly the images the run trains on. Held-out images are never trained on: they are in no
batch and each is measured once per validation, whatever its folder's repeats.
"""

from __future__ import annotations

import math
import random
from typing import TypeVar

from trainer.contract.config.names import Problem

T = TypeVar("T")

_ROUNDING = 1e-9
"""Lets 0.3 × 10 count as 3 although floating point makes it 2.9999…"""


def held_out_count(images: int, split: float) -> int:
    """How many of ``images`` a split of ``split`` holds out (rounded down)."""
    if split <= 0 or images <= 0:
        return 0
    return min(images, math.floor(images * split + _ROUNDING))


def split_images(images: list[T], split: float, seed: int) -> tuple[list[T], list[T]]:
    """``(training, held_out)``: both in the order of ``images``, together all of them, never sharing one.

    The images are ranked by their ``path`` (file-name order, not the scan's), shuffled by
    ``seed``, and the first ``held_out_count`` of that order are held out.
    """
    count = held_out_count(len(images), split)
    if not count:
        return list(images), []
    order = sorted(range(len(images)), key=lambda i: str(getattr(images[i], "path", i)))
    random.Random(seed).shuffle(order)
    chosen = set(order[:count])
    return ([image for i, image in enumerate(images) if i not in chosen],
            [image for i, image in enumerate(images) if i in chosen])


def split_problems(images: int, split: float) -> list[Problem]:
    """Problems with a split of this dataset: one that holds out nothing, or leaves nothing to train on."""
    if split <= 0 or images <= 0:
        return []
    count = held_out_count(images, split)
    if count == 0:
        needed = math.ceil(1 / images * 100) / 100
        hint = (f"raise it to at least {needed:g}, " if needed <= 0.5 else "add images, ")
        return [Problem("training.validation_split", f"{split:g} of {images} image{'s' if images != 1 else ''} "
                        f"rounds down to no validation image; {hint}or set it to 0 to validate nothing.")]
    if count >= images:
        return [Problem("training.validation_split", f"{split:g} holds out all {images} images and leaves none "
                        "to train on; lower it or add images.")]
    return []
