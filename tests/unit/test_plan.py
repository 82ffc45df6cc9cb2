"""The dataset scan, buckets and the exact step count."""

from __future__ import annotations

import math
import random
from collections import Counter

from PIL import Image

from trainer.contract.dataset_scan import DatasetImage, parse_repeat_folder, read_image_size, scan_dataset
from trainer.contract.plan import assign_bucket, bucket_candidates, count_batches, epoch_batches, plan_steps


def _image(path, size=(100, 80), mode="RGB", **save):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size).save(path, **save)
    return path


def test_repeat_folders():
    assert parse_repeat_folder("10_zkchar") == (10, "zkchar")
    assert parse_repeat_folder("3_my_style") == (3, "my_style")
    assert parse_repeat_folder("zkchar") is None
    assert parse_repeat_folder("0_x") is None


def test_scan_finds_images_captions_repeats_and_skips_broken_files(tmp_path):
    _image(tmp_path / "a.png")
    (tmp_path / "a.txt").write_text("zk, a")
    _image(tmp_path / "5_extra" / "b.jpg", (64, 128))
    _image(tmp_path / "plain" / "c.webp", (90, 90))
    _image(tmp_path / ".backup" / "hidden.png")
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    (tmp_path / "notes.md").write_text("ignored")
    scan = scan_dataset(tmp_path, default_repeats=2)
    found = {i.path.name: i for i in scan.images}
    assert set(found) == {"a.png", "b.jpg", "c.webp"}
    assert found["a.png"].caption_path == tmp_path / "a.txt" and found["a.png"].repeats == 2
    assert found["b.jpg"].caption_path is None and found["b.jpg"].repeats == 5
    assert (found["b.jpg"].width, found["b.jpg"].height) == (64, 128)
    assert found["c.webp"].repeats == 2
    assert [(p.name, "not an image" in why) for p, why in scan.skipped] == [("broken.png", True)]


def test_exif_rotation_swaps_the_sides(tmp_path):
    path = tmp_path / "rotated.jpg"
    image = Image.new("RGB", (200, 100))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° on display
    image.save(path, exif=exif)
    assert read_image_size(path) == (100, 200)


def test_buckets_are_multiples_of_64_within_the_area():
    for resolution in (512, 768, 1024):
        buckets = bucket_candidates(resolution)
        assert (resolution, resolution) in buckets
        for width, height in buckets:
            assert width % 64 == 0 and height % 64 == 0
            assert width * height <= resolution * resolution


def test_large_images_go_to_the_closest_aspect_bucket():
    assert assign_bucket(2000, 2000, 1024) == (1024, 1024)
    width, height = assign_bucket(3000, 2000, 1024)
    assert width > height and abs(width / height - 1.5) < 0.1
    assert assign_bucket(3000, 2000, 1024, use_buckets=False) == (1024, 1024)


def test_small_images_are_not_upscaled():
    assert assign_bucket(500, 300, 1024) == (448, 256)
    assert assign_bucket(500, 300, 1024, upscale=True)[0] > 500


def _uneven_dataset(rng):
    sizes = [(rng.randint(300, 2500), rng.randint(300, 2500)) for _ in range(rng.randint(1, 40))]
    return [DatasetImage(None, None, w, h, rng.randint(1, 12)) for w, h in sizes]


def test_the_planned_steps_are_the_batches_an_epoch_yields():
    rng = random.Random(7)
    for _ in range(200):
        images = _uneven_dataset(rng)
        batch = rng.randint(1, 8)
        plan = plan_steps(images, 768, batch, epochs=3)
        buckets = [assign_bucket(i.width, i.height, 768) for i in images]
        repeats = [i.repeats for i in images]
        for epoch in range(3):
            batches = epoch_batches(buckets, repeats, batch, random.Random(epoch))
            assert len(batches) == plan.batches_per_epoch
            # Every batch is one bucket, no batch is too big, every image appears `repeats` times.
            assert all(len({buckets[i] for i in b}) == 1 and 0 < len(b) <= batch for b in batches)
            assert Counter(i for b in batches for i in b) == Counter({i: r for i, r in enumerate(repeats)})
        assert plan.total_steps == plan.batches_per_epoch * 3


def test_formula_and_exact_count_differ_when_buckets_split_batches():
    # 3 square and 3 wide images, batch 4: the guide's formula says 1.5 steps, buckets make 2.
    images = [DatasetImage(None, None, 1024, 1024, 1)] * 3 + [DatasetImage(None, None, 2048, 1024, 1)] * 3
    plan = plan_steps(images, 1024, batch_size=4, epochs=1)
    assert plan.formula_steps == 1.5
    assert plan.total_steps == 2
    assert len(plan.bucket_counts) == 2


def test_guide_example_25_images_10_repeats_10_epochs_batch_4():
    images = [DatasetImage(None, None, 1024, 1024, 10)] * 25
    plan = plan_steps(images, 1024, batch_size=4, epochs=10)
    assert plan.formula_steps == 625
    assert plan.total_steps == 10 * math.ceil(250 / 4)
    assert count_batches([(1024, 1024)] * 25, [10] * 25, 4) == 63


def test_png_exif_rotation_is_read_from_the_header_without_decoding(tmp_path):
    from PIL import Image

    from trainer.contract.dataset_scan import read_image_size

    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90°: the trainer sees it upright, so the sides swap
    Image.new("RGB", (64, 32)).save(tmp_path / "turned.png", exif=exif)
    Image.new("RGB", (64, 32)).save(tmp_path / "plain.png")
    assert read_image_size(tmp_path / "turned.png") == (32, 64)
    assert read_image_size(tmp_path / "plain.png") == (64, 32)
    # A PNG whose pixels are cut short is still sized from its header: nothing was decoded.
    data = (tmp_path / "plain.png").read_bytes()
    (tmp_path / "torn.png").write_bytes(data[: len(data) // 2])
    assert read_image_size(tmp_path / "torn.png") == (64, 32)


def test_upscaled_buckets_are_counted_as_the_trainer_buckets_them():
    """With dataset.bucket_upscale, small images join the full-size buckets; the plan must count those."""
    rng = random.Random(3)
    differed = 0
    for _ in range(100):
        images = [DatasetImage(None, None, rng.choice([128, 320, 512, 1024]), rng.choice([128, 384, 512, 1024]),
                               rng.randint(1, 3)) for _ in range(rng.randint(1, 12))]
        batch = rng.randint(1, 4)
        plan = plan_steps(images, 1024, batch, epochs=1, upscale=True)
        buckets = [assign_bucket(i.width, i.height, 1024, True, True) for i in images]
        assert plan.total_steps == count_batches(buckets, [i.repeats for i in images], batch)
        differed += plan.total_steps != plan_steps(images, 1024, batch, epochs=1).total_steps
    assert differed  # the two ways of bucketing do count differently, so the test can tell


def test_folder_name_repeats_off_gives_every_image_the_configs_repeats(tmp_path):
    # The tiny-dataset fix for kohya folders whose names give too few repeats: the trainer's scan (the
    # preflight the run reads its images from) repeats every image dataset.repeats times, folders untouched.
    from trainer.contract.config.schema import Config, with_value
    from trainer.contract.preflight import check_dataset

    _image(tmp_path / "5_zkchar" / "a.png")
    _image(tmp_path / "2_extra" / "b.png")
    _image(tmp_path / "c.png")
    config = with_value(with_value(Config(), "dataset.path", str(tmp_path)), "dataset.repeats", 20)
    _, by_name = check_dataset(config)
    assert {i.path.name: i.repeats for i in by_name.images} == {"a.png": 5, "b.png": 2, "c.png": 20}
    _, overridden = check_dataset(with_value(config, "dataset.folder_name_repeats", False))
    assert {i.path.name: i.repeats for i in overridden.images} == {"a.png": 20, "b.png": 20, "c.png": 20}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2_extra", "5_zkchar", "c.png"]
