"""The dataset as the trainer will see it, and the exact step count (no torch).

The app and the trainer both call these functions, so the number of steps shown before a run
is the number the run performs: each epoch is a list of batches, each batch holds images of
one aspect-ratio bucket, and a bucket whose image count is not a multiple of the batch size
ends with a smaller batch. ``plan_steps`` counts them; ``epoch_batches`` produces them.

The images come from ``trainer.contract.dataset_scan``.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass

from trainer.contract.dataset_scan import DatasetImage
from trainer.contract.reg_images import balance_reg_images

BUCKET_STEP = 64
"""Bucket sides are multiples of this (the VAE's factor 8 times the UNet's factor 8)."""


def bucket_candidates(resolution: int) -> list[tuple[int, int]]:
    """Every (width, height) bucket for a resolution: sides multiples of 64, area ≤ resolution²."""
    max_area = resolution * resolution
    min_side = max(BUCKET_STEP, min(256, resolution // 2 // BUCKET_STEP * BUCKET_STEP))
    max_side = resolution * 2
    buckets = []
    for width in range(min_side, max_side + 1, BUCKET_STEP):
        height = min(max_side, max_area // width // BUCKET_STEP * BUCKET_STEP)
        if height >= min_side:
            buckets.append((width, height))
    return buckets


def assign_bucket(width: int, height: int, resolution: int, use_buckets: bool = True,
                  upscale: bool = False) -> tuple[int, int]:
    """The (width, height) an image of this size is trained at.

    Without buckets every image is cropped to a square. With buckets an image smaller than the
    training area keeps its own size (rounded down to multiples of 64) unless ``upscale``;
    a larger one goes to the bucket with the closest aspect ratio.
    """
    if not use_buckets:
        return resolution, resolution
    if not upscale and width * height <= resolution * resolution:
        return (max(BUCKET_STEP, width // BUCKET_STEP * BUCKET_STEP),
                max(BUCKET_STEP, height // BUCKET_STEP * BUCKET_STEP))
    aspect = math.log(width / height)
    return min(bucket_candidates(resolution), key=lambda b: (abs(math.log(b[0] / b[1]) - aspect), -b[0] * b[1]))


def crop_geometry(width: int, height: int, bucket: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """How an image is fitted to its bucket: the (width, height) it is scaled to so that it covers
    the bucket, and the (top, left) corner of the centred crop. SDXL is conditioned on the crop."""
    bucket_width, bucket_height = bucket
    scale = max(bucket_width / width, bucket_height / height)
    scaled = (max(bucket_width, round(width * scale)), max(bucket_height, round(height * scale)))
    return scaled, ((scaled[1] - bucket_height) // 2, (scaled[0] - bucket_width) // 2)


def epoch_batches(buckets: list[tuple[int, int]], repeats: list[int], batch_size: int,
                  rng: random.Random) -> list[list[int]]:
    """One epoch's batches of image indices, each batch from a single bucket.

    Every image appears ``repeats[i]`` times; images are shuffled within their bucket and the
    batches are shuffled across buckets. The count always equals ``count_batches``.
    """
    groups: dict[tuple[int, int], list[int]] = {}
    for index, (bucket, times) in enumerate(zip(buckets, repeats)):
        groups.setdefault(bucket, []).extend([index] * times)
    batches = []
    for bucket in sorted(groups):
        members = groups[bucket]
        rng.shuffle(members)
        batches += [members[i:i + batch_size] for i in range(0, len(members), batch_size)]
    rng.shuffle(batches)
    return batches


def count_batches(buckets: list[tuple[int, int]], repeats: list[int], batch_size: int) -> int:
    """How many batches one epoch has (the ceiling of each bucket's samples over the batch size)."""
    per_bucket: Counter[tuple[int, int]] = Counter()
    for bucket, times in zip(buckets, repeats):
        per_bucket[bucket] += times
    return sum(math.ceil(n / batch_size) for n in per_bucket.values())


def steps_per_epoch(batches: int, accumulation: int = 1, processes: int = 1) -> int:
    """Optimizer steps (updates) in an epoch of ``batches`` batches, as the trainer runs it.

    Several processes each take every ``processes``-th batch and drop the remainder, so all take
    the same number; each then adds up the gradients of ``accumulation`` batches per update, and an
    epoch's last, shorter group is an update too (sd-scripts' ceil(batches / accumulation)).
    """
    per_process = batches // processes
    return -(-per_process // accumulation)


@dataclass(frozen=True)
class StepPlan:
    """The length of a run, exact and by the guide's formula. A step is one optimizer update."""

    images: int
    samples_per_epoch: int
    """Training images × their repeats (regularization images not included)."""
    batches_per_epoch: int
    """Batches in an epoch, all processes together."""
    epochs: int
    batch_size: int
    total_steps: int
    """What the trainer will run: updates per epoch × epochs."""
    formula_steps: float
    """The guide's estimate: images × repeats × epochs ÷ effective batch."""
    bucket_counts: dict[tuple[int, int], int]
    """How many images land in each (width, height) bucket (regularization images included)."""
    reg_images: int = 0
    """Regularization images an epoch trains (sd-scripts leaves out those past the training count)."""
    reg_samples_per_epoch: int = 0
    """Regularization samples per epoch: about ``samples_per_epoch``, as sd-scripts balances them."""
    accumulation: int = 1
    """``training.gradient_accumulation_steps``."""
    processes: int = 1
    """``training.num_processes``."""
    own_steps: int | None = None
    """The steps the user's own images make without the regularization images (None: there are none,
    so ``total_steps``). The guide's step targets are about how often the subject is seen, which
    regularization images do not change, so the advice judges this count."""

    @property
    def guide_steps(self) -> int:
        """The step count the guide's targets apply to: ``own_steps`` with regularization images, else all."""
        return self.total_steps if self.own_steps is None else self.own_steps

    @property
    def effective_batch(self) -> int:
        """Images per update: batch × accumulation × processes."""
        return self.batch_size * self.accumulation * self.processes


def plan_steps(images: list[DatasetImage], resolution: int, batch_size: int, epochs: int,
               use_buckets: bool = True, upscale: bool = False, reg_images: list[DatasetImage] = (),
               accumulation: int = 1, processes: int = 1) -> StepPlan:
    """The exact number of steps a run over these images performs (bucketed as the trainer buckets them:
    ``upscale`` is ``dataset.bucket_upscale``, which moves small images into the full-size buckets).

    ``reg_images`` (from ``trainer.contract.reg_images.scan_reg_images``) join each epoch as sd-scripts
    balances them against the training images, sharing their buckets and batches. A step is an
    optimizer update: ``accumulation`` batches in each of ``processes`` processes.
    """
    samples = sum(i.repeats for i in images)
    reg = balance_reg_images(samples, list(reg_images))
    every = list(images) + reg
    buckets = [assign_bucket(i.width, i.height, resolution, use_buckets, upscale) for i in every]
    per_epoch = count_batches(buckets, [i.repeats for i in every], batch_size)
    reg_samples = sum(i.repeats for i in reg)
    own_steps = None
    if reg:
        own = count_batches(buckets[:len(images)], [i.repeats for i in images], batch_size)
        own_steps = steps_per_epoch(own, accumulation, processes) * epochs
    return StepPlan(images=len(images), samples_per_epoch=samples, batches_per_epoch=per_epoch,
                    epochs=epochs, batch_size=batch_size,
                    total_steps=steps_per_epoch(per_epoch, accumulation, processes) * epochs,
                    formula_steps=(samples + reg_samples) * epochs / (batch_size * accumulation * processes),
                    bucket_counts=dict(Counter(buckets)), reg_images=len(reg), reg_samples_per_epoch=reg_samples,
                    accumulation=accumulation, processes=processes, own_steps=own_steps)
