"""Peak memory of the ordinary training step against the fused backward pass, on the same run.

Three figures, ordinary against fused, each printed with its ratio:

* the peak resident set (``ru_maxrss``) of a real training run, each mode in its own child
  process so neither inherits the other's allocations (on the CPU this is nearly all imports and
  base weights, so the gradients' share of it is small);
* the most LoRA-gradient bytes alive at once during one backward pass, counted in this process
  with gradient hooks: the part of memory the fused pass actually removes;
* on CUDA, ``torch.cuda.max_memory_allocated`` as the runs report it in their step events.

Usage: python bench/bench_fused_backward.py [--model DIR] [--dim 64] [--resolution 128]
Without --model a tiny SD1.5 model is built in a temporary folder (random weights, offline).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _config(folder: Path, model: Path, images: Path, dim: int, fused: bool, resolution: int) -> Path:
    from trainer.contract.config.schema import from_dict, validate
    from trainer.contract.config.toml_io import dumps

    data = {
        "model": {"base": str(model)},
        "dataset": {"path": str(images), "trigger_word": "zkmascot", "repeats": 1, "resolution": resolution,
                    "cache_latents_to_disk": False},
        "network": {"dim": dim, "alpha": dim / 2},
        "optimizer": {"name": "adamw", "unet_lr": 1e-4, "text_encoder_lr": 5e-5, "max_grad_norm": 0.0},
        "scheduler": {"name": "constant"},
        "training": {"epochs": 1, "batch_size": 1, "fused_backward_pass": fused},
        "output": {"name": "fused" if fused else "plain", "dir": str(folder / "runs"), "save_every_n_epochs": 0},
    }
    config, problems = from_dict(data)
    problems += validate(config)
    assert not problems, problems
    path = folder / f"{'fused' if fused else 'plain'}.toml"
    path.write_text(dumps(config))
    return path


def _child_peak(config_path: Path) -> dict:
    """Train once in a child; return its peak RSS, its step times and any CUDA peak it reported."""
    from trainer.contract.config.toml_io import load_config
    from trainer.contract.events import read_events
    from trainer.contract.rundir import create_run_dir

    config, problems = load_config(config_path, ())
    assert not problems, problems
    run = create_run_dir(config)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    code = ("import resource, runpy, sys; sys.argv = ['trainer', sys.argv[1]];"
            "\ntry:\n    runpy.run_module('trainer', run_name='__main__')\nfinally:\n"
            "    print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code, str(run.root)], stdin=subprocess.DEVNULL, env=env,
                          capture_output=True, text=True, cwd=REPO)
    rss = [int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("MAXRSS_KB")]
    events = read_events(run.events)
    steps = [e for e in events if e["type"] == "step"]
    if not steps or events[-1]["type"] != "done":
        raise SystemExit(f"the run failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return {"rss_mib": rss[0] / 1024 if rss else None,
            "seconds_per_step": sorted(e["seconds_per_step"] for e in steps)[len(steps) // 2],
            "vram_peak_gib": steps[-1].get("vram_peak_gib"), "loss": [e["loss"] for e in steps]}


def _gradient_peak(model: Path, dim: int, fused: bool, resolution: int) -> int:
    """The most gradient bytes alive at once during one backward pass, measured in this process.

    Hooks on every LoRA weight record the running total as gradients appear (and, fused, vanish).
    """
    import torch

    from trainer.contract.config.schema import OptimizerConfig
    from trainer.fused import make_update
    from trainer.models import load_base_model
    from trainer.networks.lora import LoRANetwork, NetworkSpec
    from trainer.optim import build_optimizer

    base = load_base_model(str(model), "sd15", torch.float32, torch.device("cpu"), "")
    network = LoRANetwork(base.unet, base.text_encoders, "sd15", NetworkSpec(dim, dim / 2, 0, 1.0), False)
    network.attach()
    params = [p for p in network.parameters() if p.requires_grad]
    optimizer = build_optimizer(OptimizerConfig(name="adamw"), network.parameter_groups(1e-4, 0.0), fused)
    live = {"now": 0, "peak": 0}

    def grew(p):
        live["now"] += p.grad.numel() * p.grad.element_size()
        live["peak"] = max(live["peak"], live["now"])

    # Registered first, so it runs before the fused step frees the gradient.
    for p in params:
        p.register_post_accumulate_grad_hook(grew)
    update = make_update(optimizer, None, params, 0.0, fused)
    if fused:
        # Each fused step frees its gradient: count it out again.
        for p in params:
            p.register_post_accumulate_grad_hook(lambda p: live.__setitem__("now", live["now"] - p.numel() * 4))
    side = resolution // 8
    latents = torch.randn(1, 4, side, side)
    hidden = torch.randn(1, 77, base.unet.config.cross_attention_dim)
    loss = base.unet(latents, torch.tensor([500]), hidden).sample.pow(2).mean()
    update(loss)
    return live["peak"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="an SD1.5 diffusers folder (default: a tiny one, built now)")
    parser.add_argument("--dim", type=int, default=64, help="LoRA rank (bigger makes gradients matter more)")
    parser.add_argument("--resolution", type=int, default=128)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = args.model
        if model is None:
            model = folder / "tiny-sd15"
            subprocess.run([sys.executable, "-m", "trainer.tools.tiny", str(model), "--arch", "sd15"], check=True,
                           capture_output=True, cwd=REPO)
        from loratui.demo import write_dataset

        images = folder / "dataset"
        write_dataset(images)
        results = {}
        for fused in (False, True):
            key = "fused" if fused else "plain"
            results[key] = _child_peak(_config(folder, model, images, args.dim, fused, args.resolution))
            results[key]["gradient_peak_bytes"] = _gradient_peak(model, args.dim, fused, args.resolution)
        plain, fused = results["plain"], results["fused"]
        same = plain["loss"] == fused["loss"]
        print(json.dumps({k: {n: v for n, v in r.items() if n != "loss"} for k, r in results.items()}, indent=2))
        print(f"identical losses: {same}")
        print(f"gradient bytes alive at once, fused / ordinary: "
              f"{fused['gradient_peak_bytes'] / plain['gradient_peak_bytes']:.4f}")
        if plain["rss_mib"] and fused["rss_mib"]:
            print(f"peak RSS of the training process, fused / ordinary: {fused['rss_mib'] / plain['rss_mib']:.4f}")
        if plain["vram_peak_gib"] and fused["vram_peak_gib"]:
            print(f"CUDA max_memory_allocated, fused / ordinary: {fused['vram_peak_gib'] / plain['vram_peak_gib']:.4f}")
        print(f"bench process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
