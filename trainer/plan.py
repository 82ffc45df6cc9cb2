"""The dataset as the trainer will see it, and the exact step count (no torch).

The app and the trainer both call these functions, so the number of steps shown before a run
is the number the run performs: each epoch is a list of batches, each batch holds images of
one aspect-ratio bucket, and a bucket whose image count is not a multiple of the batch size
ends with a smaller batch. ``plan_steps`` counts them; ``epoch_batches`` produces them.

Reading a dataset here opens image *headers* only (Pillow reads the size without decoding
the pixels), which keeps a scan of a thousand images well under a second.
"""

from __future__ import annotations

import math
import os
import random
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from trainer.captions import caption_problem

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
"""Image files the trainer reads (case-insensitive)."""

BUCKET_STEP = 64
"""Bucket sides are multiples of this (the VAE's factor 8 times the UNet's factor 8)."""

_REPEAT_FOLDER = re.compile(r"^(\d+)_(.+)$")


@dataclass(frozen=True)
class DatasetImage:
    """One usable training image."""

    path: Path
    caption_path: Path | None
    """The caption file, or None when the image has none."""
    width: int
    height: int
    repeats: int


@dataclass
class DatasetScan:
    """What a folder holds: usable images and the files that were skipped, with why."""

    root: Path
    images: list[DatasetImage] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    """Images (and linked folders) left out, each with why."""
    caption_problems: list[tuple[Path, str]] = field(default_factory=list)
    """Caption files that are there but cannot be read, each with why. Their images keep the
    caption path, so reading it fails loudly; a preflight reports these before a run starts."""


def parse_repeat_folder(name: str) -> tuple[int, str] | None:
    """``10_zkchar`` → (10, "zkchar"), kohya's way of saying "repeat these images 10 times"."""
    match = _REPEAT_FOLDER.match(name)
    if not match or int(match.group(1)) < 1:
        return None
    return int(match.group(1)), match.group(2)


def _folder_key(path: Path) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _image_folders(root: Path, default_repeats: int,
                   skipped: list[tuple[Path, str]]) -> list[tuple[Path, int]]:
    """The dataset folder and the folders directly inside it, each once, with their repeats.

    A link to a folder outside the dataset is followed (people link a folder of pictures in),
    but a link to a folder already listed (the dataset itself, or a sibling) is not: it would
    train the same images twice, or with two repeat counts. The first one in name order wins,
    as in the app's dataset scan, and the link is listed in ``skipped``.
    """
    folders = [(root, default_repeats)]
    seen = {_folder_key(root): root}
    for child in sorted(root.iterdir()):
        # Hidden folders hold backups and caches, never training data.
        if not child.is_dir() or child.name.startswith("."):
            continue
        key = _folder_key(child)
        if key in seen:
            first = seen[key]
            where = "the dataset folder" if first == root else first.name
            skipped.append((child, f"is a link to {where}, whose images are already read; not read twice"))
            continue
        seen[key] = child
        parsed = parse_repeat_folder(child.name)
        folders.append((child, parsed[0] if parsed else default_repeats))
    return folders


def read_image_size(path: Path) -> tuple[int, int]:
    """The (width, height) of an image from its header, honouring EXIF rotation.

    Raises ValueError with a plain reason when the file cannot be used.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                # A PNG's getexif() decodes every pixel to look for EXIF written after them, which
                # made this header read ten times slower on PNG datasets; EXIF before the pixels
                # (where writers put it) is in the header, and the app's scan reads it the same way.
                exif = image.getexif() if image.format != "PNG" or "exif" in image.info else {}
                orientation = exif.get(0x0112, 1)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError("too many pixels (refused as a possible decompression bomb)") from None
    except Image.UnidentifiedImageError:
        raise ValueError("not an image Pillow can read (broken or another format)") from None
    except OSError as exc:
        raise ValueError(f"cannot be read ({exc})") from None
    # Orientations 5–8 rotate by 90°: the trainer sees the picture upright, so swap the sides.
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    if width < 1 or height < 1:
        raise ValueError("has no pixels")
    return width, height


def scan_dataset(root: Path | str, default_repeats: int, caption_extension: str = ".txt") -> DatasetScan:
    """Find the usable images under ``root`` and the ones that will be skipped.

    Images directly in ``root`` repeat ``default_repeats`` times; images in a sub-folder named
    ``N_name`` repeat N times; other sub-folders use ``default_repeats``.
    """
    root = Path(root)
    scan = DatasetScan(root)
    for folder, repeats in _image_folders(root, default_repeats, scan.skipped):
        for path in sorted(folder.iterdir()):
            if not path.is_file() or path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            try:
                width, height = read_image_size(path)
            except ValueError as exc:
                scan.skipped.append((path, str(exc)))
                continue
            caption = path.with_suffix(caption_extension)
            # A caption that is there but cannot be read (no permission, a folder or a pipe with
            # its name) is reported, never silently trained as "no caption". A dead link is no caption.
            problem = caption_problem(caption)
            if problem is not None:
                scan.caption_problems.append((caption, problem))
            present = caption.is_file() or problem is not None
            scan.images.append(DatasetImage(path, caption if present else None, width, height, repeats))
    return scan


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


@dataclass(frozen=True)
class StepPlan:
    """The length of a run, exact and by the guide's formula."""

    images: int
    samples_per_epoch: int
    """Images × their repeats."""
    batches_per_epoch: int
    epochs: int
    batch_size: int
    total_steps: int
    """What the trainer will run: batches per epoch × epochs."""
    formula_steps: float
    """The guide's estimate: images × repeats × epochs ÷ batch size."""
    bucket_counts: dict[tuple[int, int], int]
    """How many images land in each (width, height) bucket."""


def plan_steps(images: list[DatasetImage], resolution: int, batch_size: int, epochs: int,
               use_buckets: bool = True) -> StepPlan:
    """The exact number of steps a run over these images performs."""
    buckets = [assign_bucket(i.width, i.height, resolution, use_buckets) for i in images]
    repeats = [i.repeats for i in images]
    per_epoch = count_batches(buckets, repeats, batch_size)
    samples = sum(repeats)
    return StepPlan(images=len(images), samples_per_epoch=samples, batches_per_epoch=per_epoch,
                    epochs=epochs, batch_size=batch_size, total_steps=per_epoch * epochs,
                    formula_steps=samples * epochs / batch_size, bucket_counts=dict(Counter(buckets)))
