"""Decoding images the way training sees them, and caching their latents."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from trainer.contract.dataset_scan import scan_dataset
from trainer.data import cache_latents, fit_to_bucket, load_rgb
from trainer.loop import _time_ids
from trainer.models import load_base_model


def test_exif_rotation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    image = Image.new("RGB", (200, 100), (255, 0, 0))
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(path, exif=exif)
    assert load_rgb(path).size == (100, 200)


@pytest.mark.parametrize("mode,colour", [("RGBA", (0, 0, 0, 0)), ("LA", (0, 0)), ("L", 128), ("I;16", 65535),
                                         ("P", 3), ("CMYK", (0, 0, 0, 0))])
def test_every_mode_becomes_rgb(tmp_path, mode, colour):
    path = tmp_path / f"{mode.replace(';', '')}.png" if mode != "CMYK" else tmp_path / "cmyk.jpg"
    image = Image.new(mode, (32, 32), colour)
    if mode == "P":
        image.putpalette([0, 0, 0] * 3 + [10, 200, 30] + [0, 0, 0] * 252)
    image.save(path)
    rgb = load_rgb(path)
    assert rgb.mode == "RGB" and rgb.size == (32, 32)
    pixel = rgb.getpixel((0, 0))
    if mode in ("RGBA", "LA"):
        assert pixel == (255, 255, 255)  # transparency lands on white, not black
    if mode == "I;16":
        assert pixel == (255, 255, 255)  # full-scale 16-bit is white, not clipped garbage
    if mode == "P":
        assert pixel == (10, 200, 30)


def test_images_are_covered_and_centre_cropped(tmp_path):
    image = Image.new("RGB", (300, 100))
    image.paste((255, 0, 0), (100, 0, 200, 100))  # a red middle third
    fitted = fit_to_bucket(image, (128, 128))
    assert fitted.size == (128, 128)
    assert np.asarray(fitted)[64, 64].tolist() == [255, 0, 0]


def test_flip_encodes_the_mirror_and_picks_both(tiny_sd15, tmp_path):
    Image.new("RGB", (128, 128)).save(tmp_path / "a.png")
    image = Image.new("RGB", (128, 128), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 40, 128))  # asymmetric: a white band on the left
    image.save(tmp_path / "b.png")
    model = load_base_model(str(tiny_sd15), "sd15", torch.float32, torch.device("cpu"))
    scan = scan_dataset(tmp_path, 1)
    images, report = cache_latents(scan.images, model.vae, 128, True, False, True, None)
    assert report.encoded == 2 and report.reused == 0
    asymmetric = images[1]
    assert asymmetric.flipped_latents is not None
    assert not torch.allclose(asymmetric.latents, asymmetric.flipped_latents)
    rng = random.Random(0)
    picks = [asymmetric.pick_latents(rng) is asymmetric.flipped_latents for _ in range(200)]
    assert 60 < sum(picks) < 140


def test_sdxl_is_conditioned_on_the_source_size_and_crop(tiny_sdxl, tmp_path):
    Image.new("RGB", (400, 200)).save(tmp_path / "wide.png")
    model = load_base_model(str(tiny_sdxl), "sdxl", torch.float32, torch.device("cpu"))
    images, _ = cache_latents(scan_dataset(tmp_path, 1).images, model.vae, 128, False, False, False, None)
    (time_ids,) = _time_ids(images, "sdxl", torch.device("cpu")).tolist()
    # original (h, w), crop (top, left) inside the 256×128 scaled image, target (h, w)
    assert time_ids == [200, 400, 0, 64, 128, 128]
