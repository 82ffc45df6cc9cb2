"""Full-size SD1.5 and SDXL architectures with random weights, built offline, for the benchmarks.

The configurations are the real ones (``trainer.tools.shape_tables``: the same tables the app's memory
estimates come from), so a step costs the time and memory a real model's step does; only the
weights are random. The tokenizer is the tiny models' byte-level CLIP tokenizer
(``trainer.tools.tiny.build_tokenizer``): every caption is padded to 77 tokens either way, so the
text encoder does the same work. Nothing is downloaded.

    python bench/full_size.py OUT_DIR [--arch sd15|sdxl] [--dtype float32|float16] [--device cpu] [--seed 0]

Used by ``bench/gpu_acceptance.py`` (built on the GPU, saved in fp16) and
``bench/bench_full_size_cpu.py`` (built on the CPU, saved in fp32, reused between runs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STAMP = "bench-full-size.json"
"""Written into a model folder last, so a folder with it is complete; it records how it was built."""


def full_size_pipeline(arch: str, device: str = "cpu", seed: int = 0):
    """The real ``arch`` architecture (``sd15`` or ``sdxl``) with random weights, initialised on ``device``."""
    import torch
    from diffusers import AutoencoderKL, StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from trainer.tools.shape_tables import CLIP_BIG_G, CLIP_L, SD15_UNET, SDXL_UNET, VAE
    from trainer.tools.tiny import build_tokenizer, ddpm_scheduler

    torch.manual_seed(seed)  # the same weights every time on the same device
    tokenizer = build_tokenizer()
    ids = dict(eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    with torch.device(device):
        text = CLIPTextModel(CLIPTextConfig(**CLIP_L, **ids))
        if arch == "sd15":
            return StableDiffusionPipeline(
                vae=AutoencoderKL(**VAE, sample_size=512), text_encoder=text, tokenizer=tokenizer,
                unet=UNet2DConditionModel(**SD15_UNET), scheduler=ddpm_scheduler(), safety_checker=None,
                feature_extractor=None, requires_safety_checker=False)
        return StableDiffusionXLPipeline(
            vae=AutoencoderKL(**VAE, sample_size=1024, scaling_factor=0.13025), text_encoder=text,
            text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_BIG_G, **ids)), tokenizer=tokenizer,
            tokenizer_2=build_tokenizer(), unet=UNet2DConditionModel(**SDXL_UNET), scheduler=ddpm_scheduler())


def save_full_size(arch: str, folder: Path, dtype: str = "float16", device: str = "cpu", seed: int = 0) -> Path:
    """Build a full-size ``arch`` pipeline and save it to ``folder`` as a diffusers folder in ``dtype``."""
    import torch

    # Saved from the CPU: built on a GPU it is cast there (fast), then copied once for writing.
    pipeline = full_size_pipeline(arch, device, seed).to(getattr(torch, dtype)).to("cpu")
    pipeline.save_pretrained(folder, safe_serialization=True)
    del pipeline
    (folder / STAMP).write_text(json.dumps({"arch": arch, "dtype": dtype, "device": device, "seed": seed}))
    return folder


def is_built(folder: Path, arch: str, dtype: str, device: str = "cpu", seed: int = 0) -> bool:
    """Whether ``folder`` holds a complete model built exactly this way (so it can be reused)."""
    try:
        return json.loads((folder / STAMP).read_text()) == {"arch": arch, "dtype": dtype, "device": device,
                                                             "seed": seed}
    except (OSError, ValueError):
        return False


def ensure_full_size(arch: str, folder: Path, dtype: str = "float32", device: str = "cpu",
                     seed: int = 0) -> float | None:
    """Reuse the model in ``folder`` when it was built the same way, else build it there in a child process.

    The child keeps the several GiB of the build out of the caller's memory. Returns the seconds
    the build took, or None when the folder was reused.
    """
    if is_built(folder, arch, dtype, device, seed):
        return None
    (folder / STAMP).unlink(missing_ok=True)
    began = time.perf_counter()
    subprocess.run([sys.executable, __file__, str(folder), "--arch", arch, "--dtype", dtype, "--device", device,
                    "--seed", str(seed)], check=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--arch", choices=("sd15", "sdxl"), default="sd15")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from trainer.quiet import quiet_libraries

    quiet_libraries()
    save_full_size(args.arch, args.out, args.dtype, args.device, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
