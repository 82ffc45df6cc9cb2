"""The trainer's cost per step against a bare, hand-written diffusers loop, on the tiny SD1.5 model.

    python bench/bench_trainer_overhead.py [--steps 150] [--rounds 2]

Two comparisons, each measured in alternating rounds in one session (the median is shown):

1. Same work. The trainer (latents cached, text encoder trained, so its outputs cannot be
   cached) against a bare loop over the same pre-encoded latents, the same LoRA modules, the
   same AdamW, batch and resolution, with none of the trainer's machinery (buckets, caption
   handling, events, checkpoints). The goal: at most 1.05×.
2. Caching. The trainer with the text encoder frozen and captions fixed, so both latents and
   text-encoder outputs are cached, against the bare loop that runs the VAE and the text
   encoder on every step, as a plain diffusers example does. The goal: faster (below 1×).

The trainer's time per step is the wall time between its step events (so writing events is
included); the bare loop's is its own wall time per step. The first 10 steps are warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WARMUP = 10
BATCH = 4
RESOLUTION = 128


def trainer_seconds_per_step(model: Path, images: Path, work: Path, steps: int, train_te: bool) -> float:
    from trainer.contract.config.schema import from_dict, validate
    from trainer.contract.config.toml_io import load_config, save_config
    from trainer.contract.events import read_events
    from trainer.contract.rundir import create_run_dir

    config, problems = from_dict({
        "model": {"base": str(model)},
        "dataset": {"path": str(images), "repeats": -(-steps * BATCH // 12), "resolution": RESOLUTION,
                    "shuffle_captions": train_te, "cache_latents_to_disk": False},
        "optimizer": {"name": "adamw", "text_encoder_lr": 1e-4 if train_te else 0.0},
        "scheduler": {"name": "constant"},
        "training": {"epochs": 1, "batch_size": BATCH},
        "output": {"dir": str(work / "runs"), "save_every_n_epochs": 0}})
    assert not problems + validate(config)
    save_config(config, work / "bench.toml")
    run = create_run_dir(load_config(work / "bench.toml")[0])
    with open(run.log, "wb") as log:
        subprocess.run([sys.executable, "-m", "trainer", str(run.root)], stdout=log, stderr=subprocess.STDOUT,
                       check=True, cwd=REPO)
    times = [e["time"] for e in read_events(run.events) if e["type"] == "step"][WARMUP:]
    return (times[-1] - times[0]) / (len(times) - 1)


def bare_loop(model_dir: Path, images: Path, steps: int, train_te: bool, encode_every_step: bool,
              batch: int = BATCH, resolution: int = RESOLUTION) -> dict:
    """A plain loop: diffusers components, our LoRA modules, AdamW; nothing else.

    Returns ``durations`` (seconds of each step, by ``time.perf_counter``) and the wall-clock
    moments (``time.time()``) its phases ended: ``imported``, ``loaded`` (model and LoRA ready)
    and ``cached`` (every image encoded once).
    """
    import numpy as np
    import torch
    import torch.nn.functional as F
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from PIL import Image
    from transformers import CLIPTextModel, CLIPTokenizer

    from trainer.networks.lora import LoRANetwork, NetworkSpec

    moments = {"imported": time.time()}
    torch.manual_seed(0)
    tokenizer = CLIPTokenizer.from_pretrained(model_dir, subfolder="tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(model_dir, subfolder="text_encoder").requires_grad_(False)
    vae = AutoencoderKL.from_pretrained(model_dir, subfolder="vae").requires_grad_(False)
    unet = UNet2DConditionModel.from_pretrained(model_dir, subfolder="unet").requires_grad_(False)
    scheduler = DDPMScheduler.from_pretrained(model_dir, subfolder="scheduler")
    network = LoRANetwork(unet, [text_encoder], "sd15", NetworkSpec(8, 4.0), train_text_encoders=train_te)
    network.attach()
    optimizer = torch.optim.AdamW([p for p in network.parameters()], lr=1e-4, weight_decay=0.01)
    moments["loaded"] = time.time()

    files = sorted(images.glob("*.png"))
    pixels = torch.stack([torch.from_numpy(np.asarray(Image.open(f).convert("RGB").resize((resolution, resolution)),
                                                      dtype=np.float32) / 127.5 - 1).permute(2, 0, 1) for f in files])
    captions = [f.with_suffix(".txt").read_text().strip() for f in files]
    with torch.no_grad():
        # One image at a time, as the trainer encodes them (a whole batch of 512 px images at once
        # would need several GiB of VAE activations on a CPU).
        cached = torch.cat([vae.encode(pixels[i:i + 1]).latent_dist.sample() for i in range(len(files))])
        cached = cached * vae.config.scaling_factor
    moments["cached"] = time.time()

    durations = []
    for step in range(steps):
        start = time.perf_counter()
        rows = [(step * batch + i) % len(files) for i in range(batch)]
        if encode_every_step:
            with torch.no_grad():
                latents = vae.encode(pixels[rows]).latent_dist.sample() * vae.config.scaling_factor
        else:
            latents = cached[rows]
        ids = tokenizer([captions[r] for r in rows], padding="max_length", max_length=77, truncation=True,
                        return_tensors="pt").input_ids
        with torch.set_grad_enabled(train_te):
            hidden = text_encoder(ids).last_hidden_state
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, 1000, (batch,))
        prediction = unet(scheduler.add_noise(latents, noise, timesteps), timesteps, hidden).sample
        loss = F.mse_loss(prediction, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()
        durations.append(time.perf_counter() - start)
    return {"durations": durations, **moments}


def bare_seconds_per_step(model_dir: Path, images: Path, steps: int, train_te: bool, encode_every_step: bool) -> float:
    """The bare loop's mean seconds per step after the warm-up, on the tiny model."""
    return statistics.mean(bare_loop(model_dir, images, steps, train_te, encode_every_step)["durations"][WARMUP:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from loratui.demo import write_dataset
    from trainer.tools.tiny import build

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = build(work / "model", "sd15")
        images = work / "images"
        write_dataset(images)
        same, cached = [], []
        for _ in range(args.rounds):
            bare = bare_seconds_per_step(model, images, args.steps, train_te=True, encode_every_step=False)
            ours = trainer_seconds_per_step(model, images, work, args.steps, train_te=True)
            same.append((ours, bare))
            bare = bare_seconds_per_step(model, images, args.steps, train_te=False, encode_every_step=True)
            ours = trainer_seconds_per_step(model, images, work, args.steps, train_te=False)
            cached.append((ours, bare))

    print(f"{'comparison':58} {'trainer ms':>10} {'bare ms':>8} {'ratio':>6}")
    for name, pairs in (("same work (latents cached, text encoder trained)", same),
                        ("trainer caches latents + TE outputs; bare encodes each step", cached)):
        ratio = statistics.median(o / b for o, b in pairs)
        ours = statistics.median(o for o, _ in pairs) * 1000
        bare = statistics.median(b for _, b in pairs) * 1000
        print(f"{name:58} {ours:10.1f} {bare:8.1f} {ratio:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
