"""Masked loss: each image's mask, cropped like its image and shrunk to its latents' size.

The mask (``trainer.contract.masks`` says where it comes from) is scaled to cover the image's
bucket and centre-cropped exactly as the image was (``data.fit_to_bucket``), then averaged down
to the latent grid (area interpolation, as sd-scripts does), so each latent pixel's weight is the
share of white in the 8×8 pixels it stands for. The mirrored latents get the mirrored mask.

Masks are made fresh every run and never stored in the latent cache: they cost one image decode
each, and a cache entry can then never pair an image with an old mask.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from trainer.contract.dataset_scan import DatasetImage
from trainer.contract.errors import TrainerError
from trainer.contract.masks import mask_sources
from trainer.data import CachedImage, fit_to_bucket, load_rgb


def load_mask(image: DatasetImage, source: Path) -> Image.Image:
    """The mask of ``image`` as upright 8-bit greyscale (255 = train): the image's own alpha channel
    when ``source`` is the image, else the red channel of the mask file (sd-scripts reads the same)."""
    if Path(source) == image.path:
        with Image.open(source) as opened:
            upright = ImageOps.exif_transpose(opened)
            upright.load()
        return upright.convert("RGBA").getchannel("A")
    return load_rgb(source).getchannel("R")


def latent_mask(mask: Image.Image, bucket: tuple[int, int], latent_size: tuple[int, int]) -> torch.Tensor:
    """The mask fitted to ``bucket`` like its image, averaged down to ``latent_size`` (h, w): (1, h, w) in [0, 1].

    Box filtering when scaling keeps a black area exactly 0 (Lanczos would ring into it).
    """
    fitted = fit_to_bucket(mask, bucket, Image.Resampling.BOX)
    pixels = torch.from_numpy(np.asarray(fitted, dtype=np.float32) / 255.0)[None, None]
    return F.interpolate(pixels, size=latent_size, mode="area")[0].contiguous()


def attach_masks(images: list[CachedImage], dataset_root: Path, mask_path: str) -> list[Path]:
    """Give every image its latent mask (and its mirror's); return the images that have none.

    An image without a mask trains as a whole (its mask stays None, which counts as all white).
    """
    sources = mask_sources([image.source for image in images], dataset_root, mask_path)
    without = []
    for image, source in zip(images, sources):
        if source is None:
            without.append(image.source.path)
            continue
        try:
            mask = load_mask(image.source, source)
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types for damaged files
            field = "dataset.mask_path" if mask_path else "dataset.masked_loss"
            raise TrainerError("dataset", f"the mask of {image.source.path} ({source}) cannot be decoded ({exc}).",
                               f"Replace that file, or check {field}.") from None
        if mask.size != (image.source.width, image.source.height):
            # The preflight compares the headers; this catches a file changed since.
            raise TrainerError("dataset", f"the mask {source} is {mask.width}x{mask.height}, its image "
                               f"{image.source.path} {image.source.width}x{image.source.height}.",
                               "Save each mask at its image's size (dataset.mask_path).")
        image.mask = latent_mask(mask, image.bucket, tuple(image.latents.shape[-2:]))
        if image.flipped_latents is not None:
            image.flipped_mask = torch.flip(image.mask, dims=[-1])
    return without


def batch_mask(masks: list[torch.Tensor | None], size: tuple[int, int],
               device: torch.device) -> torch.Tensor | None:
    """One batch's masks as (B, 1, h, w) on ``device`` (all white where an image has none); None when none has one."""
    if all(mask is None for mask in masks):
        return None
    return torch.stack([mask if mask is not None else torch.ones(1, *size) for mask in masks]).to(device)
