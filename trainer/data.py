"""Decoding training images and encoding them into latents, once, with an optional disk cache.

Each image is decoded once, turned upright (EXIF), converted to RGB, scaled to cover its
bucket and centre-cropped, then encoded by the VAE (images of one bucket a few at a time, as
memory allows: ``images_per_encode``). Training reads only the latents, so the
VAE never runs inside the loop. With flip augmentation the mirrored image is encoded too and
each use picks one of the two at random.

The disk cache keys each entry by the image file's bytes, its bucket, the flip setting and the
VAE's weights, so a later run on the same data reuses the work and a changed image, size or
VAE never reads a stale entry. The latent is sampled from the VAE's distribution with a
generator seeded by that key, so a cached and a freshly encoded latent are the same. Loss masks
(``trainer.masks``) are never cached: they are made fresh each run, so none can be stale.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageOps
from safetensors import safe_open
from safetensors.torch import save_file

from trainer.contract.dataset_scan import DatasetImage
from trainer.contract.fileio import atomic_write
from trainer.contract.plan import assign_bucket, crop_geometry

CACHE_VERSION = 1
"""Bump when the encoding changes, so old cache entries are never read."""


@dataclass
class CachedImage:
    """One training image, ready for the loop."""

    source: DatasetImage
    bucket: tuple[int, int]
    """(width, height) it is trained at."""
    latents: torch.Tensor
    """VAE latents (already multiplied by the VAE's scaling factor), on the CPU."""
    flipped_latents: torch.Tensor | None
    original_size: tuple[int, int]
    """(height, width) of the upright source image, for SDXL's conditioning."""
    crop_top_left: tuple[int, int]
    """(top, left) of the crop inside the scaled image, for SDXL's conditioning."""
    mask: torch.Tensor | None = None
    """With masked loss: the loss weight of each latent pixel, (1, h, w) in [0, 1] (``trainer.masks``)."""
    flipped_mask: torch.Tensor | None = None

    def pick(self, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The latents to train on this time (mirrored half the time when flip is on) and their mask."""
        if self.flipped_latents is not None and rng.random() < 0.5:
            return self.flipped_latents, self.flipped_mask
        return self.latents, self.mask

    def pick_latents(self, rng: random.Random) -> torch.Tensor:
        """The latents to train on this time, without their mask."""
        return self.pick(rng)[0]


@dataclass
class CacheReport:
    """What encoding the dataset did."""

    encoded: int = 0
    reused: int = 0
    skipped: list[tuple[DatasetImage, str]] = field(default_factory=list)
    cache_error: str | None = None
    """Why the disk cache could not be written, if it could not (training goes on without it)."""


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/loratui`` or ``~/.cache/loratui``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "loratui"


def load_rgb(path) -> Image.Image:
    """An image as upright 8-bit RGB, whatever its mode (transparency composited onto white)."""
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened)
        image.load()
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float greyscale: scale to 8 bits rather than let Pillow clip.
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / peak * 255.0, 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def fit_to_bucket(image: Image.Image, bucket: tuple[int, int],
                  resample: Image.Resampling = Image.Resampling.LANCZOS) -> Image.Image:
    """Scale the image to cover the bucket and centre-crop it (see ``plan.crop_geometry``)."""
    scaled, (top, left) = crop_geometry(image.width, image.height, bucket)
    if scaled != image.size:
        image = image.resize(scaled, resample)
    return image.crop((left, top, left + bucket[0], top + bucket[1]))


def to_pixels(image: Image.Image) -> torch.Tensor:
    """An RGB image as a (3, H, W) tensor in [-1, 1]."""
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def vae_fingerprint(vae: torch.nn.Module) -> str:
    """A hash of the VAE's configuration and weights: cache entries of another VAE never match."""
    digest = hashlib.sha256(json.dumps(dict(vae.config), sort_keys=True, default=str).encode())
    for name, tensor in sorted(vae.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def _image_key(source: DatasetImage, bucket: tuple[int, int], flip: bool) -> str:
    """What is encoded: the file's bytes, fitted to this bucket, with or without its mirror image."""
    digest = hashlib.sha256(source.path.read_bytes())
    digest.update(f"|{bucket}|{flip}".encode())
    return digest.hexdigest()


def _entry_key(image_key: str, vae_id: str) -> str:
    """Where its latents are cached: the encoded input, the VAE that encoded it, the cache format."""
    return hashlib.sha256(f"{image_key}|{vae_id}|v{CACHE_VERSION}".encode()).hexdigest()


def _read_entry(path: Path) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    try:
        with safe_open(str(path), "pt") as handle:
            latents = handle.get_tensor("latents")
            flipped = handle.get_tensor("flipped") if "flipped" in handle.keys() else None
    except Exception:  # a torn or foreign entry is simply re-encoded
        return None
    return latents, flipped


ENCODE_BATCH_IMAGES = 4
"""At most this many images (with flip, twice as many pictures) go through the VAE in one call."""

ENCODE_BATCH_PIXELS = 1024 * 1024
"""At most this many pixels go through the VAE in one call, however small the images.

The fp32 VAE's working memory grows with the pixels it encodes at once (about 2.5 GiB per
megapixel: ``loratui.estimates.vae_encoding_bytes``), and latent caching must not become the
run's memory peak. One megapixel is what a single unmirrored 1024² image needs, so SDXL at its
native size still encodes one image per call, while 512² images go four at a time (two with flip).
"""


def images_per_encode(bucket: tuple[int, int], flip: bool, max_images: int = ENCODE_BATCH_IMAGES,
                      max_pixels: int = ENCODE_BATCH_PIXELS) -> int:
    """How many images of this bucket one VAE call encodes (at least one, with its mirror image)."""
    pictures = bucket[0] * bucket[1] * (2 if flip else 1)
    return max(1, min(max_images, max_pixels // pictures))


def _encode(vae: torch.nn.Module, images: list[Image.Image], flip: bool,
            image_keys: list[str]) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """The latents (and mirrored latents with ``flip``) of images of one size, in one VAE call."""
    device = next(vae.parameters()).device
    per_image = 2 if flip else 1
    variants = [v for image in images for v in ([image, ImageOps.mirror(image)] if flip else [image])]
    pixels = torch.stack([to_pixels(v) for v in variants]).to(device)
    with torch.no_grad():
        distribution = vae.encode(pixels).latent_dist
        # Each image's sample is drawn with a generator seeded by that image, in the same shape and
        # order whatever the batch: the same image gives the same latent in every run, cached or
        # not, encoded alone or with others, whichever file the VAE came from.
        shape = (per_image, *distribution.mean.shape[1:])
        generators = [torch.Generator(device="cpu").manual_seed(int(key[:15], 16)) for key in image_keys]
        noise = torch.cat([torch.randn(shape, generator=generator) for generator in generators]).to(device)
        latents = ((distribution.mean + distribution.std * noise) * vae.config.scaling_factor).float().cpu()
    return [(latents[i * per_image].contiguous(), latents[i * per_image + 1].contiguous() if flip else None)
            for i in range(len(images))]


def _encode_batch(vae: torch.nn.Module, images: list[Image.Image], flip: bool,
                  image_keys: list[str]) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """``_encode`` several images at once, or one at a time when the batch does not fit on the GPU."""
    try:
        return _encode(vae, images, flip, image_keys)
    except torch.cuda.OutOfMemoryError:
        if len(images) == 1:
            raise
    # Outside the except block, whose traceback would keep the failed batch's tensors alive.
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return [result for image, key in zip(images, image_keys) for result in _encode(vae, [image], flip, [key])]


def cache_latents(images: list[DatasetImage], vae: torch.nn.Module, resolution: int, use_buckets: bool,
                  upscale: bool, flip: bool, cache_dir: Path | None,
                  on_progress: Callable[[int, int], None] = lambda done, total: None,
                  batch_images: int = ENCODE_BATCH_IMAGES,
                  batch_pixels: int = ENCODE_BATCH_PIXELS) -> tuple[list[CachedImage], CacheReport]:
    """Encode every image once (or read it from the disk cache); undecodable images are reported and left out.

    Images that share a bucket are encoded several at a time (``images_per_encode``): one VAE
    call per image pays the call's fixed costs once per image. Each image's latents depend on
    that image alone, so the order of encoding changes nothing; the result keeps the input order,
    and ``on_progress`` is called once per image as each is finished.
    """
    report = CacheReport()
    vae_id = vae_fingerprint(vae) if cache_dir is not None else ""
    total = len(images)
    finished: dict[int, CachedImage] = {}
    skipped: dict[int, tuple[DatasetImage, str]] = {}

    def done(index: int, result: tuple[torch.Tensor, torch.Tensor | None] | None, bucket: tuple[int, int]) -> None:
        source = images[index]
        if result is not None:
            _, crop = crop_geometry(source.width, source.height, bucket)
            finished[index] = CachedImage(source, bucket, result[0], result[1], (source.height, source.width), crop)
        on_progress(len(finished) + len(skipped), total)

    by_bucket: dict[tuple[int, int], list[int]] = {}
    for index, source in enumerate(images):
        by_bucket.setdefault(assign_bucket(source.width, source.height, resolution, use_buckets, upscale),
                             []).append(index)
    for bucket, indices in by_bucket.items():
        size = images_per_encode(bucket, flip, batch_images, batch_pixels)
        for start in range(0, len(indices), size):
            pending = []  # (index, image key, cache entry, fitted image) of the images to encode together
            for index in indices[start:start + size]:
                source = images[index]
                image_key = _image_key(source, bucket, flip)
                key = _entry_key(image_key, vae_id)
                entry = cache_dir / key[:2] / f"{key}.safetensors" if cache_dir is not None else None
                result = _read_entry(entry) if entry is not None and entry.is_file() else None
                if result is not None:
                    report.reused += 1
                    done(index, result, bucket)
                    continue
                try:
                    image = load_rgb(source.path)
                except Exception as exc:  # Pillow raises many types for damaged files
                    skipped[index] = (source, f"cannot be decoded ({exc})")
                    done(index, None, bucket)
                    continue
                pending.append((index, image_key, entry, fit_to_bucket(image, bucket)))
            if not pending:
                continue
            encoded = _encode_batch(vae, [p[3] for p in pending], flip, [p[1] for p in pending])
            for (index, _, entry, _), result in zip(pending, encoded):
                report.encoded += 1
                if entry is not None and report.cache_error is None:
                    tensors = {"latents": result[0]} | ({"flipped": result[1]} if result[1] is not None else {})
                    try:
                        atomic_write(entry, lambda tmp: save_file(tensors, str(tmp)))
                    except OSError as exc:
                        report.cache_error = f"{cache_dir}: {exc.strerror or exc}"
                done(index, result, bucket)
    report.skipped = [skipped[index] for index in sorted(skipped)]
    return [finished[index] for index in sorted(finished)], report
