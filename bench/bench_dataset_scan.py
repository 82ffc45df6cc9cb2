"""How fast ``loratui dataset scan`` reads a folder of a thousand images.

    python bench/bench_dataset_scan.py [--images 1000] [--size 512] [--repeat 3]

Builds ``--images`` captioned pictures (half JPEG, half PNG, ``--size`` pixels square, in two
repeat folders) in a temporary folder, then times, best of ``--repeat`` runs each:

1. the floor: ``os.stat`` on every file (what any scan must at least do);
2. the naive way: decoding every image fully with Pillow;
3. the trainer's own ``trainer.contract.dataset_scan.scan_dataset``;
4. ``scan_folder(near_duplicates=False)``, the header pass (goal: under a second for 1,000);
5. ``scan_folder()`` with an empty hash cache (decodes every image at a small scale);
6. ``scan_folder()`` again, reading the hash cache.

Every figure is also given as a ratio to the floor and to the full decode, measured in the same
run on the same files (which sit in the page cache: these are warm-cache figures).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from PIL import Image, ImageDraw  # noqa: E402


def picture(seed: int, size: int) -> Image.Image:
    """A picture with large shapes, different for every seed (so no two are near-duplicates)."""
    rng = random.Random(seed)
    image = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = rng.randrange(size), rng.randrange(size)
        box = (x0, y0, x0 + rng.randrange(size // 12, size // 2), y0 + rng.randrange(size // 12, size // 2))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=tuple(rng.randrange(256) for _ in range(3)))
    return image


def build(root: Path, count: int, size: int) -> list[Path]:
    """``count`` captioned images in two repeat folders; returns the image paths."""
    paths = []
    for index in range(count):
        folder = root / ("10_hero" if index % 2 else "5_style")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"img_{index:04d}.{'jpg' if index % 2 else 'png'}"
        image = picture(index, size)
        if path.suffix == ".jpg":
            image.save(path, quality=90)
        else:
            image.save(path, compress_level=1)
        path.with_suffix(".txt").write_text(f"zkhero, picture {index}")
        paths.append(path)
    return paths


def best_of(runs: int, work) -> float:
    """The fastest of ``runs`` timings of ``work()``, in seconds."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from trainer.contract.dataset_scan import scan_dataset

    from loratui.dataset import scan_folder

    work = Path(tempfile.mkdtemp(prefix="bench-scan-"))
    try:
        root, cache = work / "dataset", work / "cache"
        started = time.perf_counter()
        paths = build(root, args.images, args.size)
        print(f"built {len(paths)} images of {args.size}×{args.size} (half JPEG, half PNG) with captions "
              f"in {time.perf_counter() - started:.1f} s")

        def stat_all():
            for folder, _, files in os.walk(root):
                for name in files:
                    os.stat(os.path.join(folder, name))

        def decode_all():
            for path in paths:
                with Image.open(path) as image:
                    image.load()

        def first_full():
            shutil.rmtree(cache, ignore_errors=True)
            return scan_folder(root, resolution=1024, trigger_word="zkhero", cache_dir=cache)

        figures = {
            "os.stat every file (floor)": best_of(args.repeat, stat_all),
            "decode every image (Pillow)": best_of(args.repeat, decode_all),
            "trainer.contract.dataset_scan.scan_dataset": best_of(args.repeat, lambda: scan_dataset(root, 1)),
            "scan, header pass (--no-similar)": best_of(args.repeat, lambda: scan_folder(
                root, resolution=1024, trigger_word="zkhero", near_duplicates=False)),
            "scan, full, empty hash cache": best_of(args.repeat, first_full),
            "scan, full, warm hash cache": best_of(args.repeat, lambda: scan_folder(
                root, resolution=1024, trigger_word="zkhero", cache_dir=cache)),
        }
        report = scan_folder(root, resolution=1024, trigger_word="zkhero", cache_dir=cache)
        floor, decode = figures["os.stat every file (floor)"], figures["decode every image (Pillow)"]
        print(f"cores: {os.cpu_count()}; best of {args.repeat} runs; files in the page cache\n")
        print(f"{'':36} {'seconds':>8} {'ms/image':>9} {'× floor':>8} {'× decode':>9}")
        for name, seconds in figures.items():
            print(f"{name:36} {seconds:8.3f} {seconds / len(paths) * 1000:9.3f} {seconds / floor:8.1f} "
                  f"{seconds / decode:9.3f}")
        header = figures["scan, header pass (--no-similar)"]
        scaled = header * 1000 / len(paths)
        print(f"\nheader pass for 1,000 images: {scaled:.3f} s (goal: under 1 s) "
              f"{'PASS' if scaled < 1 else 'MISS'}")
        print(f"the scan found {len(report.images)} usable images, {len(report.issues)} issues "
              f"({report.count('error')} errors), {len(report.near_duplicates or [])} near-duplicate groups")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
