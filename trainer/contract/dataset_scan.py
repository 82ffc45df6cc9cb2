"""What a dataset folder holds, read the way the trainer reads it (no torch).

``scan_dataset`` lists the usable images with their sizes, repeats and caption files, and the
files it skips, each with why; ``caption_stats`` counts what the captions lack. Reading a
dataset opens image *headers* only (Pillow reads the size without decoding the pixels), which
keeps a scan of a thousand images well under a second.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from trainer.contract.captions import CaptionReadError, caption_problem, read_caption, split_tags

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
"""Image files the trainer reads (case-insensitive)."""

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


def _image_folders(root: Path, default_repeats: int, skipped: list[tuple[Path, str]],
                   folder_name_repeats: bool = True) -> list[tuple[Path, int]]:
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
        parsed = parse_repeat_folder(child.name) if folder_name_repeats else None
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


def scan_dataset(root: Path | str, default_repeats: int, caption_extension: str = ".txt",
                 folder_name_repeats: bool = True) -> DatasetScan:
    """Find the usable images under ``root`` and the ones that will be skipped.

    Images directly in ``root`` repeat ``default_repeats`` times; images in a sub-folder named
    ``N_name`` repeat N times (``default_repeats`` too when ``folder_name_repeats`` is off, the
    config's ``dataset.folder_name_repeats``); other sub-folders use ``default_repeats``.
    """
    root = Path(root)
    scan = DatasetScan(root)
    for folder, repeats in _image_folders(root, default_repeats, scan.skipped, folder_name_repeats):
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


@dataclass(frozen=True)
class CaptionStats:
    """How a dataset's captions stand: the guide's "all images tagged and have the trigger word"."""

    images: int
    missing: tuple[Path, ...]
    """Images with no caption file."""
    empty: tuple[Path, ...]
    """Images whose caption file is empty."""
    without_trigger: tuple[Path, ...]
    """Images whose caption lacks the trigger word as a tag (the trainer adds it; the file lacks it)."""
    unreadable: tuple[Path, ...] = ()
    """Images whose caption file is there but cannot be read (counted in none of the above)."""


def caption_stats(images: list[DatasetImage], trigger: str) -> CaptionStats:
    """Read every caption once and count what is missing."""
    missing, empty, without, unreadable = [], [], [], []
    trigger = trigger.strip()
    for image in images:
        if image.caption_path is None:
            missing.append(image.path)
            continue
        try:
            tags = split_tags(read_caption(image.caption_path))
        except CaptionReadError:
            # The dataset check reports the file itself (it stops the trainer); counting it as
            # empty or missing here would give the wrong advice.
            unreadable.append(image.path)
            continue
        if not tags:
            empty.append(image.path)
        if trigger and trigger not in tags:
            without.append(image.path)
    return CaptionStats(len(images), tuple(missing), tuple(empty), tuple(without), tuple(unreadable))
