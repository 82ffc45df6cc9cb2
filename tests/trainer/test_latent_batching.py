"""Images of one bucket are encoded several at a time, with the same latents as one at a time."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from trainer import data
from trainer.contract.dataset_scan import scan_dataset
from trainer.data import cache_latents, images_per_encode
from trainer.models import load_base_model

ONE_AT_A_TIME = {"batch_images": 1}
BATCHED = {"batch_images": 4, "batch_pixels": 2**30}


@pytest.fixture(scope="module")
def vae(tiny_sd15):
    return load_base_model(str(tiny_sd15), "sd15", torch.float32, torch.device("cpu")).vae


@pytest.fixture
def images(tmp_path):
    """Seven images in two buckets (square and wide, interleaved) and a wide one cut off halfway."""
    folder = tmp_path / "images"
    folder.mkdir()
    for n in range(7):
        size = (128, 128) if n % 2 == 0 else (192, 128)
        image = Image.new("RGB", size, (30 * n, 255 - 30 * n, 90))
        image.paste((255, 255, 255), (0, 0, 20 + 5 * n, 128))  # asymmetric, so the mirror differs
        image.save(folder / f"{n:02d}.png")
    # Its header (and so its size) reads, its pixels do not: the scan keeps it and encoding skips it.
    noise = Image.effect_noise((192, 128), 80).convert("RGB")
    noise.save(folder / "03b.png")
    whole = (folder / "03b.png").read_bytes()
    (folder / "03b.png").write_bytes(whole[:len(whole) // 2])
    return folder


def _encode(vae, folder, cache_dir=None, **batching):
    scan = scan_dataset(folder, 1)
    calls = []
    progress = []
    original = vae.encode

    def counting(pixels):
        calls.append(pixels.shape[0])
        return original(pixels)

    vae.encode = counting
    try:
        cached, report = cache_latents(scan.images, vae, 128, True, False, True, cache_dir,
                                       lambda done, total: progress.append((done, total)), **batching)
    finally:
        del vae.encode
    return scan, cached, report, calls, progress


def test_batched_latents_equal_one_at_a_time(vae, images):
    scan, single, single_report, single_calls, _ = _encode(vae, images, **ONE_AT_A_TIME)
    _, batched, report, calls, progress = _encode(vae, images, **BATCHED)
    # 8 files scanned: 7 encoded, the broken one skipped with its reason, in both ways.
    assert len(scan.images) == 8
    assert (report.encoded, report.reused) == (single_report.encoded, single_report.reused) == (7, 0)
    assert [(s.path.name, why) for s, why in report.skipped] == \
        [(s.path.name, why) for s, why in single_report.skipped] and len(report.skipped) == 1
    # One VAE call per image (with its mirror) against one per bucket of up to four images.
    assert single_calls == [2] * 7
    assert calls == [8, 6]  # the four square images with their mirrors, then the three readable wide ones
    # Progress is reported once per image, counting up to all of them (the skipped one included).
    assert progress == [(n, 8) for n in range(1, 9)]
    # The input order is kept, and the latents are the same within fp32 tolerance.
    assert [c.source.path for c in batched] == [c.source.path for c in single]
    for one, many in zip(single, batched):
        assert one.bucket == many.bucket and one.crop_top_left == many.crop_top_left
        assert torch.allclose(one.latents, many.latents, atol=1e-5, rtol=1e-4)
        assert torch.allclose(one.flipped_latents, many.flipped_latents, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("writer,reader", [(ONE_AT_A_TIME, BATCHED), (BATCHED, ONE_AT_A_TIME)],
                         ids=["single-then-batched", "batched-then-single"])
def test_a_cache_written_one_way_is_read_the_other(vae, images, tmp_path, writer, reader):
    cache = tmp_path / "cache"
    _, written, first, _, _ = _encode(vae, images, cache, **writer)
    _, read, second, calls, progress = _encode(vae, images, cache, **reader)
    assert (first.encoded, first.reused) == (7, 0)
    assert (second.encoded, second.reused) == (0, 7) and calls == []
    assert progress == [(n, 8) for n in range(1, 9)]
    for a, b in zip(written, read):
        assert torch.equal(a.latents, b.latents) and torch.equal(a.flipped_latents, b.flipped_latents)


def test_a_stop_during_encoding_is_seen_after_each_image(vae, images):
    class Stop(Exception):
        pass

    seen = []

    def progress(done, total):
        seen.append(done)
        if done == 3:
            raise Stop

    with pytest.raises(Stop):
        cache_latents(scan_dataset(images, 1).images, vae, 128, True, False, False, None, progress, **BATCHED)
    assert seen == [1, 2, 3]


def test_a_batch_that_runs_out_of_gpu_memory_is_encoded_one_image_at_a_time(vae, images, monkeypatch):
    original = data._encode

    def out_of_memory_above_one(vae, pictures, flip, keys):
        if len(pictures) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(vae, pictures, flip, keys)

    _, single, _, _, _ = _encode(vae, images, **ONE_AT_A_TIME)
    monkeypatch.setattr(data, "_encode", out_of_memory_above_one)
    _, batched, report, _, _ = _encode(vae, images, **BATCHED)
    assert report.encoded == 7
    for one, many in zip(single, batched):
        assert torch.equal(one.latents, many.latents) and torch.equal(one.flipped_latents, many.flipped_latents)


def test_the_batch_is_bounded_by_pixels_so_caching_never_needs_more_memory_than_one_big_image():
    assert images_per_encode((1024, 1024), flip=False) == 1
    assert images_per_encode((1024, 1024), flip=True) == 1  # an image and its mirror are never split
    assert images_per_encode((512, 512), flip=False) == 4
    assert images_per_encode((512, 512), flip=True) == 2
    assert images_per_encode((256, 256), flip=True) == 4  # at most four images, eight pictures
    assert images_per_encode((768, 768), flip=False) == 1
