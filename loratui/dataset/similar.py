"""Exact and near duplicates in a dataset: file hashes and small perceptual hashes (no torch).

Exact duplicates are files with the same bytes: only files of the same length are read and
hashed (BLAKE2b). Near-duplicates are pictures that look the same after a re-save, a slight
edit or a resize: each image gets a 64-bit difference hash from a 9×8 greyscale thumbnail, and
images whose hashes differ in at most ``NEAR_DUPLICATE_BITS`` bits are grouped. Decoding for the
thumbnail is the slow part, so hashes are cached under ``$XDG_CACHE_HOME/loratui/phash/`` (one
JSON file per dataset folder, keyed by each file's path, size and modification time), never in
the dataset itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from loratui.dataset.report import DatasetReport, ScannedImage
from trainer.contract.fileio import atomic_write_text

NEAR_DUPLICATE_BITS = 4
"""Two images whose 64-bit difference hashes differ in at most this many bits are near-duplicates.
Measured on 200 synthetic pictures: a re-save at JPEG quality 60, an 8 % brightness change or a
resize to 80 % differ by 0–2 bits (rarely 3–4); unrelated pictures by about 32, never under 7.
Four keeps false alarms rare. Flat, featureless pictures all hash alike and group together."""


def _file_digest(path: Path) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.digest()


def find_duplicates(report: DatasetReport) -> None:
    """Group images with identical bytes; only files of the same length are ever read."""
    by_size: dict[int, list[ScannedImage]] = {}
    for image in report.images:
        by_size.setdefault(image.file_size, []).append(image)
    groups: dict[bytes, list[ScannedImage]] = {}
    for same_size in by_size.values():
        if len(same_size) < 2:
            continue
        for image in same_size:
            try:
                groups.setdefault(_file_digest(image.path), []).append(image)
            except OSError:
                continue
    order = {id(image): index for index, image in enumerate(report.images)}
    for group in sorted((g for g in groups.values() if len(g) > 1), key=lambda g: order[id(g[0])]):
        group.sort(key=lambda image: order[id(image)])
        report.duplicates.append([image.path for image in group])
        first = report.relative(group[0].path)
        for image in group[1:]:
            report.add(image.path, "duplicate", f"has the same bytes as {first}, so that picture trains twice "
                       "as often as the others. Delete one copy (or raise its folder's repeats on purpose).")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/loratui`` or ``~/.cache/loratui``, as the trainer's latent cache."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "loratui"


def difference_hash(path: Path) -> int:
    """A 64-bit difference hash: is each of 8×8 cells of a 9×8 greyscale thumbnail brighter than
    its right neighbour? Raises what Pillow raises for a picture that cannot be decoded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(path) as image:
            # JPEG decodes straight to greyscale at 1/8 scale; other formats decode in full.
            image.draft("L", (64, 64))
            if image.mode not in ("L", "I", "F"):
                image = image.convert("I" if image.mode.startswith("I;16") else "L")
            pixels = list(image.resize((9, 8), Image.Resampling.BOX).getdata())
    bits = 0
    for row in range(8):
        for col in range(8):
            bits = (bits << 1) | (pixels[row * 9 + col] > pixels[row * 9 + col + 1])
    return bits


def hash_images(report: DatasetReport, cache_dir: Path) -> None:
    """Fill in each image's hash, from the cache when size and mtime still match; undecodable
    images (damage the header pass cannot see) become issues and leave the list."""
    cache_file = cache_dir / "phash" / (hashlib.blake2b(os.fsencode(str(report.root.resolve())),
                                                        digest_size=10).hexdigest() + ".json")
    try:
        cached = json.loads(cache_file.read_text(encoding="utf-8")).get("entries", {})
    except (OSError, ValueError, AttributeError):
        cached = {}
    if not isinstance(cached, dict):
        cached = {}
    keys = {id(image): (image.path.relative_to(report.root).as_posix(), image.file_size, image.mtime_ns)
            for image in report.images}
    todo = []
    for image in report.images:
        entry = cached.get(keys[id(image)][0])
        try:
            if entry[:2] == list(keys[id(image)][1:]):
                image.phash = int(entry[2], 16)
                continue
        except (TypeError, ValueError, IndexError):
            pass  # no entry, or a damaged one: hash the picture again
        todo.append(image)

    def work(image: ScannedImage) -> tuple[ScannedImage, int | None, str]:
        try:
            return image, difference_hash(image.path), ""
        except Exception as exc:  # Pillow raises many types for damaged data
            return image, None, str(exc) or type(exc).__name__

    # Pillow decodes without holding the GIL, so a few threads keep the cores busy; more would only
    # hold more decoded pictures in memory at once.
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        results = list(pool.map(work, todo))
    broken = set()
    for image, value, reason in results:
        if value is None:
            broken.add(id(image))
            report.add(image.path, "broken_image", f"cannot be decoded ({reason}); the trainer skips it. "
                       "Export it again from the original.")
        else:
            image.phash = value
    report.images = [image for image in report.images if id(image) not in broken]
    if not todo and len(cached) == len(report.images):
        return
    entries = {keys[id(i)][0]: [*keys[id(i)][1:], f"{i.phash:016x}"] for i in report.images}
    try:
        # Never inside the dataset, even when XDG_CACHE_HOME points there: a scan changes nothing.
        if cache_file.resolve().is_relative_to(report.root.resolve()):
            return
        atomic_write_text(cache_file, json.dumps({"version": 1, "root": str(report.root), "entries": entries}))
    except OSError:
        pass  # a cache that cannot be written only makes the next scan slower


def find_near_duplicates(report: DatasetReport) -> None:
    """Group images whose hashes differ in at most NEAR_DUPLICATE_BITS bits (exact copies aside)."""
    exact = {path for group in report.duplicates for path in group[1:]}
    images = [image for image in report.images if image.path not in exact and image.phash is not None]
    # Two hashes within k bits agree exactly on at least one of k+1 disjoint slices, so only images
    # sharing a slice are compared: near-linear instead of every pair.
    slices = NEAR_DUPLICATE_BITS + 1
    width = -(-64 // slices)
    index: dict[tuple[int, int], list[int]] = {}
    parent = list(range(len(images)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, image in enumerate(images):
        candidates = set()
        for s in range(slices):
            key = (s, (image.phash >> (s * width)) & ((1 << width) - 1))
            candidates.update(index.setdefault(key, []))
            index[key].append(i)
        for j in candidates:
            if (image.phash ^ images[j].phash).bit_count() <= NEAR_DUPLICATE_BITS:
                parent[find(i)] = find(j)
    groups: dict[int, list[ScannedImage]] = {}
    for i, image in enumerate(images):
        groups.setdefault(find(i), []).append(image)
    report.near_duplicates = []
    for group in groups.values():
        if len(group) < 2:
            continue
        report.near_duplicates.append([image.path for image in group])
        first = report.relative(group[0].path)
        for image in group[1:]:
            report.add(image.path, "near_duplicate", f"looks nearly the same as {first}. Near-copies give one "
                       "picture extra weight without adding variety; keep the better one.")
