"""The real trainer on a full-size SD1.5 on the CPU, against a bare diffusers loop doing the same work.

    python bench/bench_full_size_cpu.py [--steps 5] [--work DIR] [--freeze-text-encoder]

A full-size SD1.5 (UNet of 860M parameters, CLIP ViT-L/14 text encoder, VAE) with random
weights is built offline the first time (``bench/full_size.py``, seed 0, saved in fp32 under
``--work``; about 4.3 GB) and reused afterwards. ``--steps`` captioned 512×512 pictures go in a
kohya-style folder (``1_zkmascot``), so one epoch at batch 1 is exactly ``--steps`` steps.

Two processes then train on them in turn, each by itself, in this session:

1. bare: a hand-written loop (``bench_trainer_overhead.bare_loop``: the diffusers components,
   the trainer's own LoRA modules, torch AdamW, latents encoded once beforehand; no buckets,
   events, checkpoints or anything else);
2. trainer: ``python -m trainer RUN_DIR``, exactly as the app starts it: 512 px, batch 1, LoRA
   dim 8 / alpha 4, ``adamw`` (plain torch AdamW, as in the bare loop; the app's default 8-bit
   AdamW would make the two differ), constant rate, fp32 (the trainer always uses fp32 on a
   CPU), latents cached in memory only.

The text encoder is trained (its LoRA learns at 1e-4, the app's default) unless
``--freeze-text-encoder``. Figures per process: seconds per step (median over steps 2..N; the
trainer's is the wall time between its step events, the bare loop's its own time per step),
peak resident memory (``ru_maxrss`` of that one process from ``wait4``, which is the kernel's
VmHWM), and the time from exec to "ready to train" (imports, model load, latent cache: the
trainer's ``start`` event; the bare loop's moment its latents are encoded). Each is
also given as trainer ÷ bare. The sd-scripts command lines that train on the same model and data
are printed at the end, so another trainer can be run beside it on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESOLUTION = 512
TRIGGER = "zkmascot"
UNET_LR, TEXT_ENCODER_LR = 5e-4, 1e-4


def default_work() -> Path:
    """Where the built model is kept between runs: the user's cache folder."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "loratui-bench" / "full-size-cpu"


def write_images(folder: Path, count: int) -> Path:
    """``count`` captioned 512×512 pictures of the demo's mascot in a kohya-style ``1_<trigger>`` folder."""
    from loratui.demo import draw_mascot

    images = folder / f"1_{TRIGGER}"
    images.mkdir(parents=True, exist_ok=True)
    for stale in images.iterdir():
        stale.unlink()
    for index in range(count):
        pose = ("standing", "jumping", "sitting")[index % 3]
        draw_mascot((RESOLUTION, RESOLUTION), (60 + index * 25 % 160, 110, 200), pose, index).save(
            images / f"m{index:02d}.png")
        (images / f"m{index:02d}.txt").write_text(f"{TRIGGER}, yellow creature, red scarf, {pose}\n")
    return images


def run_measured(command: list[str], log: Path) -> tuple[int, int, float]:
    """Run ``command`` to the end; return (exit status, peak RSS in bytes, wall clock at exec).

    The peak is ``ru_maxrss`` from ``wait4`` on that one process: the kernel's high-water mark of
    its resident memory (VmHWM), exact however short the peak was.
    """
    with open(log, "wb") as out:
        began = time.time()
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
    return process.returncode, usage.ru_maxrss * 1024, began


def bare(model: Path, images: Path, steps: int, train_te: bool, work: Path) -> dict:
    """The bare loop in its own process (so its memory is its own); its figures."""
    out = work / "bare.json"
    out.unlink(missing_ok=True)
    status, peak, began = run_measured(
        [sys.executable, __file__, "--bare-child", str(model), str(images), str(steps), str(int(train_te)), str(out)],
        work / "bare.log")
    if status != 0:
        raise SystemExit(f"the bare loop failed (exit {status}):\n{(work / 'bare.log').read_text()[-3000:]}")
    result = json.loads(out.read_text())
    return {"s_per_step": statistics.median(result["durations"][1:]), "peak": peak,
            "ready_s": result["cached"] - began, "durations": result["durations"]}


def trainer(model: Path, data: Path, steps: int, train_te: bool, work: Path) -> dict:
    """``python -m trainer`` on a fresh run folder; its figures from its events."""
    from trainer.contract.config.schema import from_dict, validate
    from trainer.contract.config.toml_io import load_config, save_config
    from trainer.contract.events import read_events
    from trainer.contract.rundir import create_run_dir

    config, problems = from_dict({
        "model": {"base": str(model), "arch": "sd15"},
        "dataset": {"path": str(data), "trigger_word": TRIGGER, "resolution": RESOLUTION,
                    "cache_latents_to_disk": False},
        "network": {"type": "lora", "dim": 8, "alpha": 4.0},
        "optimizer": {"name": "adamw", "unet_lr": UNET_LR, "text_encoder_lr": TEXT_ENCODER_LR if train_te else 0.0},
        "scheduler": {"name": "constant"},
        "training": {"epochs": 1, "batch_size": 1, "mixed_precision": "no"},
        "output": {"name": "bench", "dir": str(work / "runs"), "save_every_n_epochs": 0}})
    problems += validate(config)
    if problems:
        raise SystemExit("; ".join(f"{p.field}: {p.message}" for p in problems))
    save_config(config, work / "bench.toml")
    run = create_run_dir(load_config(work / "bench.toml")[0])
    status, peak, began = run_measured([sys.executable, "-m", "trainer", str(run.root)], run.log)
    events = read_events(run.events)
    if status != 0 or events[-1]["type"] != "done":
        raise SystemExit(f"the trainer failed (exit {status}):\n{run.log.read_text()[-3000:]}")
    times = [e["time"] for e in events if e["type"] == "step"]
    if len(times) != steps:
        raise SystemExit(f"the trainer took {len(times)} steps, not {steps}: see {run.log}")
    start = next(e for e in events if e["type"] == "start")
    return {"s_per_step": statistics.median(b - a for a, b in zip(times, times[1:])), "peak": peak,
            "ready_s": start["time"] - began, "run": run.root,
            "step_field": [e["seconds_per_step"] for e in events if e["type"] == "step"],
            "text_encoder_trained": train_te, "device": start.get("device"), "precision": start.get("precision")}


def kohya_commands(model: Path, data: Path, steps: int, train_te: bool, work: Path) -> str:
    """The sd-scripts command lines that train the same LoRA on the same model and data (not run here)."""
    te = f"--text_encoder_lr {TEXT_ENCODER_LR:g}" if train_te else "--network_train_unet_only"
    return f"""# in a clone of https://github.com/kohya-ss/sd-scripts with its requirements installed
# (it reads the CLIP tokenizer openai/clip-vit-large-patch14 from the hub or its cache);
# GNU time's "Maximum resident set size" is the peak RSS, tqdm's s/it the time per step
/usr/bin/time -v accelerate launch --cpu --num_processes 1 --num_cpu_threads_per_process {os.cpu_count()} \\
  train_network.py \\
  --pretrained_model_name_or_path {model} \\
  --train_data_dir {data} --caption_extension .txt --shuffle_caption --keep_tokens 1 \\
  --resolution {RESOLUTION},{RESOLUTION} --train_batch_size 1 --max_train_steps {steps} --cache_latents \\
  --network_module networks.lora --network_dim 8 --network_alpha 4 \\
  --optimizer_type AdamW --learning_rate {UNET_LR:g} --unet_lr {UNET_LR:g} {te} --max_grad_norm 1.0 \\
  --lr_scheduler constant --mixed_precision no --save_precision fp16 --seed 42 --sdpa \\
  --max_data_loader_n_workers 0 --output_dir {work / 'kohya-out'} --output_name bench \\
  --save_model_as safetensors"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="training steps (and pictures); at least 2")
    parser.add_argument("--work", type=Path, default=default_work(),
                        help="folder for the built model (reused), the pictures and the runs")
    parser.add_argument("--freeze-text-encoder", action="store_true", help="train the UNet's LoRA only")
    parser.add_argument("--skip-bare", action="store_true", help="only the trainer (no ratios)")
    parser.add_argument("--model", type=Path, help="train this SD1.5 diffusers folder instead (a quick check of the "
                        "script with `python -m trainer.tools.tiny DIR`'s tiny model)")
    parser.add_argument("--bare-child", nargs=5, metavar=("MODEL", "IMAGES", "STEPS", "TRAIN_TE", "OUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_child:
        from bench_trainer_overhead import bare_loop

        model, images, steps, train_te, out = args.bare_child
        result = bare_loop(Path(model), Path(images), int(steps), train_te == "1", encode_every_step=False,
                           batch=1, resolution=RESOLUTION)
        Path(out).write_text(json.dumps(result))
        return 0
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step is warm-up)")

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # The runs this makes are not the user's: keep them out of the app's registry of runs.
    os.environ["XDG_STATE_HOME"] = str(args.work / "state")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    train_te = not args.freeze_text_encoder

    from full_size import ensure_full_size

    if args.model is not None:
        model = args.model.resolve()
        print(f"model: {model}", flush=True)
    else:
        model = work / "sd15-fp32-seed0"
        print(f"full-size SD1.5 (random weights, fp32): {model} …", flush=True)
        built = ensure_full_size("sd15", model, "float32", "cpu", seed=0)
        print("built in %.0f s" % built if built is not None else "reused", flush=True)
    data = work / "data"
    images = write_images(data, args.steps)

    load_before = os.getloadavg()
    figures = {}
    if not args.skip_bare:
        print(f"bare loop: {args.steps} steps …", flush=True)
        figures["bare"] = bare(model, images, args.steps, train_te, work)
    print(f"trainer: {args.steps} steps …", flush=True)
    figures["trainer"] = trainer(model, data, args.steps, train_te, work)

    gib = 2 ** 30
    ours = figures["trainer"]
    base = figures.get("bare")
    print(f"\n{os.cpu_count()} CPUs, torch {_torch_version()}, 512 px, batch 1, LoRA dim 8, AdamW, fp32, "
          f"text encoder {'trained' if train_te else 'frozen'}, {args.steps} steps (median over steps 2..{args.steps})")
    print(f"trainer run: {ours['run']}")
    print(f"load average (1 min) before starting: {load_before[0]:.2f} (other work on the machine), at the end: "
          f"{os.getloadavg()[0]:.2f} (this bench's own threads count too)\n")
    print("| measurement | trainer | bare loop | trainer ÷ bare |\n|---|---|---|---|")
    rows = [("s/step", "s_per_step", 1, "{:.2f}"), ("peak RSS (GiB)", "peak", gib, "{:.2f}"),
            ("exec → ready to train: imports, model loaded, latents cached (s)", "ready_s", 1, "{:.1f}")]
    for name, key, scale, fmt in rows:
        mine = ours[key] / scale
        if base is None:
            print(f"| {name} | {fmt.format(mine)} | – | – |")
        else:
            theirs = base[key] / scale
            print(f"| {name} | {fmt.format(mine)} | {fmt.format(theirs)} | {mine / theirs:.2f} |")
    print("\nper-step seconds, trainer (its events' seconds_per_step): "
          + ", ".join(f"{s:.1f}" for s in ours["step_field"]))
    if base is not None:
        print("per-step seconds, bare loop: " + ", ".join(f"{s:.1f}" for s in base["durations"]))
    print("\nThe same run with kohya sd-scripts, to run beside it (not run here):\n")
    print(kohya_commands(model, data, args.steps, train_te, work))
    return 0


def _torch_version() -> str:
    import torch

    return torch.__version__


if __name__ == "__main__":
    sys.exit(main())
