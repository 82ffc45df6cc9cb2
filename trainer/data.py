"""Decoding training images and caching their latents.

Each image is decoded once, turned upright (EXIF), converted to RGB, scaled to cover its
bucket and centre-cropped, then encoded by the VAE. Training reads only the cached latents,
so the VAE never runs inside the training loop. With flip augmentation the mirrored image is
encoded too and each use picks one of the two at random.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageOps

from trainer.plan import DatasetImage, assign_bucket


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

    def pick_latents(self, rng: random.Random) -> torch.Tensor:
        """The latents to train on this time (mirrored half the time when flip is on)."""
        if self.flipped_latents is not None and rng.random() < 0.5:
            return self.flipped_latents
        return self.latents


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


def fit_to_bucket(image: Image.Image, bucket: tuple[int, int]) -> tuple[Image.Image, tuple[int, int]]:
    """Scale the image to cover the bucket and centre-crop it; return it and the crop's (top, left)."""
    width, height = bucket
    scale = max(width / image.width, height / image.height)
    scaled_size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    if scaled_size != image.size:
        image = image.resize(scaled_size, Image.Resampling.LANCZOS)
    left = (image.width - width) // 2
    top = (image.height - height) // 2
    return image.crop((left, top, left + width, top + height)), (top, left)


def to_pixels(image: Image.Image) -> torch.Tensor:
    """An RGB image as a (3, H, W) tensor in [-1, 1]."""
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def cache_latents(images: list[DatasetImage], vae: torch.nn.Module, resolution: int, use_buckets: bool,
                  flip: bool, seed: int,
                  on_progress: Callable[[int, int], None] = lambda done, total: None,
                  on_skip: Callable[[DatasetImage, str], None] = lambda image, why: None) -> list[CachedImage]:
    """Encode every image once; images that fail to decode are reported and left out."""
    device = next(vae.parameters()).device
    generator = torch.Generator(device="cpu").manual_seed(seed)
    scaling = vae.config.scaling_factor
    cached = []
    for done, source in enumerate(images, start=1):
        try:
            image = load_rgb(source.path)
        except Exception as exc:  # Pillow raises many types for damaged files
            on_skip(source, f"cannot be decoded ({exc})")
            on_progress(done, len(images))
            continue
        bucket = assign_bucket(image.width, image.height, resolution, use_buckets)
        fitted, crop = fit_to_bucket(image, bucket)
        variants = [fitted] + ([ImageOps.mirror(fitted)] if flip else [])
        pixels = torch.stack([to_pixels(v) for v in variants]).to(device)
        with torch.no_grad():
            distribution = vae.encode(pixels).latent_dist
            noise = torch.randn(distribution.mean.shape, generator=generator).to(device)
            latents = (distribution.mean + distribution.std * noise) * scaling
        latents = latents.float().cpu()
        cached.append(CachedImage(source, bucket, latents[0], latents[1] if flip else None,
                                  (image.height, image.width), crop))
        on_progress(done, len(images))
    return cached
