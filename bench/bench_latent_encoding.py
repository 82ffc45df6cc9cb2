"""Latent caching one image per VAE call against images of one bucket several at a time.

    python bench/bench_latent_encoding.py [--images 16] [--rounds 3] [--flip]
    python bench/bench_latent_encoding.py --model DIR --device cuda --resolution 512 [--pixels N]

Times ``trainer.data.cache_latents`` (decoding, fitting, encoding; no disk cache) over the same
images both ways, alternating rounds (the median is shown), and prints the ratio batched /
one at a time: below 1 means batching is faster. Without ``--model`` it runs two random-weight
VAEs built in memory: the tests' tiny one, and a mid-size one with SD's layout at a quarter of
its widths. With ``--model`` (a diffusers folder) it runs that model's VAE, e.g. on a GPU.
``--pixels`` overrides the pixel budget per VAE call (``trainer.data.ENCODE_BATCH_PIXELS``).

Batching saves each call's fixed costs (on a GPU, the kernel launches of a small image), not
arithmetic: expect a large gain for the tiny VAE, a small one where the convolutions dominate.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _mid_size_vae():
    from diffusers import AutoencoderKL

    # SD's VAE layout (four blocks of two ResNet layers, a mid-block with attention) at a quarter width.
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(32, 64, 128, 128),
                         layers_per_block=2, latent_channels=4, norm_num_groups=32, sample_size=256)


def _write_images(folder: Path, count: int, resolution: int) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        # Noise, so the PNGs take as long to decode as photographs of their size roughly do.
        Image.effect_noise((resolution, resolution), 40 + n).convert("RGB").save(folder / f"{n:03d}.png")
    return folder


def _time(vae, images, resolution: int, flip: bool, **batching) -> float:
    from trainer.data import cache_latents

    start = time.perf_counter()
    cached, report = cache_latents(images, vae, resolution, True, False, flip, None, **batching)
    if vae.device.type == "cuda":
        import torch

        torch.cuda.synchronize()
    assert report.encoded == len(images) == len(cached)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--flip", action="store_true", help="encode each image's mirror too")
    parser.add_argument("--model", type=Path, help="a diffusers folder whose VAE is timed")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resolution", type=int, default=0, help="image size (default: 64 tiny, 128 mid-size, "
                        "512 with --model)")
    parser.add_argument("--pixels", type=int, default=0, help="pixels per VAE call (default: the trainer's budget)")
    args = parser.parse_args()

    import torch

    from trainer.contract.dataset_scan import scan_dataset
    from trainer.data import ENCODE_BATCH_PIXELS, images_per_encode
    from trainer.tools.tiny import tiny_vae

    torch.manual_seed(0)
    if args.model:
        from diffusers import AutoencoderKL

        vaes = [(args.model.name, AutoencoderKL.from_pretrained(args.model, subfolder="vae"), args.resolution or 512)]
    else:
        vaes = [("tiny", tiny_vae(), args.resolution or 64), ("mid-size", _mid_size_vae(), args.resolution or 128)]
    pixels = args.pixels or ENCODE_BATCH_PIXELS
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
          f"{args.images} images, flip {args.flip}, {args.rounds} rounds (median)")
    print(f"{'VAE':10} {'size':>5} {'per call':>8} {'one at a time s':>15} {'batched s':>9} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, vae, resolution in vaes:
            vae = vae.to(args.device).eval().requires_grad_(False)  # fp32, as the trainer keeps it
            folder = _write_images(Path(tmp) / f"{name}-{resolution}", args.images, resolution)
            images = scan_dataset(folder, 1).images
            _time(vae, images[:2], resolution, args.flip)  # warm-up: first-call allocations and kernel choice
            single, batched = [], []
            for _ in range(args.rounds):
                single.append(_time(vae, images, resolution, args.flip, batch_images=1))
                batched.append(_time(vae, images, resolution, args.flip, batch_pixels=pixels))
            one, many = statistics.median(single), statistics.median(batched)
            per_call = images_per_encode((resolution, resolution), args.flip, max_pixels=pixels)
            print(f"{name:10} {resolution:5} {per_call:8} {one:15.3f} {many:9.3f} {many / one:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
