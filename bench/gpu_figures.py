"""GPU figures: the real trainer on a CUDA machine with no network.

    python bench/gpu_figures.py OUT_DIR [--skip-full]

1. Smoke: the tiny SD1.5 and SDXL models trained with bf16 and fp16 mixed precision, through
   ``python -m trainer`` exactly as the app runs it (the GPU code paths a CPU never exercises).
2. Figures: full-size SD1.5 and SDXL architectures with random weights (built on the GPU, saved
   as fp16 diffusers folders, so nothing is downloaded), trained for a few steps each at the
   sizes that matter; the median s/step after warm-up and the peak VRAM the trainer reports.

Results go to OUT_DIR/gpu_figures.json as they come (a timeout keeps what was measured) and a
Markdown table is printed at the end. Random weights cost the same time and memory as real ones.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))  # full_size.py, the builder bench_full_size_cpu.py shares
BUILD_DEVICE = "cuda"
"""Where the full-size models are initialised (a GPU does it in seconds; `--only-build` builds on the CPU)."""


def full_size_model(arch: str, folder: Path) -> None:
    """Save a full-size ``arch`` pipeline folder with random fp16 weights (built on BUILD_DEVICE)."""
    from full_size import save_full_size

    save_full_size(arch, folder, "float16", BUILD_DEVICE)


def train(model: Path, dataset: Path, work: Path, label: str, **settings) -> dict:
    """One real training run; returns its figures (or the failure)."""
    from trainer.config import from_dict, validate
    from trainer.config_toml import load_config, save_config
    from trainer.events import read_events
    from trainer.rundir import create_run_dir

    data = {"model": {"base": str(model)}, "dataset": {"path": str(dataset), "trigger_word": "zkmascot", "repeats": 1},
            "optimizer": {"name": "adamw"}, "output": {"name": label, "dir": str(work / "runs"),
                                                      "save_every_n_epochs": 0}}
    for key, value in settings.items():
        section, name = key.split("__")
        data.setdefault(section, {})[name] = value
    config, problems = from_dict(data)
    problems += validate(config)
    assert not problems, problems
    save_config(config, work / f"{label}.toml")
    run = create_run_dir(load_config(work / f"{label}.toml")[0])
    began = time.time()
    with open(run.log, "wb") as log:
        status = subprocess.run([sys.executable, "-m", "trainer", str(run.root)], stdout=log,
                                stderr=subprocess.STDOUT, cwd=REPO, timeout=600).returncode
    events = read_events(run.events)
    steps = [e for e in events if e["type"] == "step"]
    start = next((e for e in events if e["type"] == "start"), {})
    result = {"label": label, "status": status, "last": events[-1] if events else None, "wall_s": round(time.time() - began, 1),
              "steps": len(steps), "settings": settings, "device": start.get("device"), "precision": start.get("precision")}
    if steps:
        timed = [s["seconds_per_step"] for s in steps[3:]] or [s["seconds_per_step"] for s in steps]
        result.update(s_per_step=round(statistics.median(timed), 4), vram_peak_gib=steps[-1].get("vram_peak_gib"),
                      vram_total_gib=steps[-1].get("vram_total_gib"), final_loss=steps[-1]["loss"],
                      setup_s=round(start["time"] - events[0]["time"], 1) if start else None)
    if status != 0:
        result["log_tail"] = run.log.read_text()[-1500:]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--skip-full", action="store_true", help="only the tiny-model smoke runs")
    parser.add_argument("--only-build", choices=("sd15", "sdxl"), help="build one full-size model on the CPU and stop")
    args = parser.parse_args()
    if args.only_build:
        global BUILD_DEVICE
        BUILD_DEVICE = "cpu"
        full_size_model(args.only_build, args.out / f"full-{args.only_build}")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path("/tmp/loratui-gpu")
    work.mkdir(exist_ok=True)
    results: list[dict] = []

    def record(result: dict) -> None:
        results.append(result)
        (args.out / "gpu_figures.json").write_text(json.dumps(results, indent=1))
        print(json.dumps({k: v for k, v in result.items() if k != "log_tail"}), flush=True)
        if "log_tail" in result:
            print(result["log_tail"], flush=True)

    import torch

    from loratui.demo import draw_mascot, write_dataset
    from trainer.tiny import build

    if torch.cuda.is_available():
        print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, "
              f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB", flush=True)
    small = work / "small"
    write_dataset(small)
    for arch in ("sd15", "sdxl"):
        model = build(work / f"tiny-{arch}", arch)
        for precision in ("bf16", "fp16"):
            record(train(model, small, work, f"tiny-{arch}-{precision}", dataset__resolution=128,
                         training__mixed_precision=precision, training__epochs=2, training__batch_size=4,
                         optimizer__text_encoder_lr=1e-4))
    if args.skip_full:
        return 0

    big = work / "big"
    big.mkdir(exist_ok=True)
    for index in range(12):
        draw_mascot((1024, 1024), (70 + index * 10, 110, 200), ("standing", "jumping", "sitting")[index % 3],
                    index).save(big / f"m{index:02d}.png")
        (big / f"m{index:02d}.txt").write_text("zkmascot, yellow creature, red scarf\n")
    plans = {
        "sd15": [dict(dataset__resolution=512, training__batch_size=1),
                 dict(dataset__resolution=768, training__batch_size=1),
                 dict(dataset__resolution=768, training__batch_size=4),
                 dict(dataset__resolution=768, training__batch_size=4, training__gradient_checkpointing=True)],
        "sdxl": [dict(dataset__resolution=1024, training__batch_size=1),
                 dict(dataset__resolution=1024, training__batch_size=1, training__gradient_checkpointing=True),
                 dict(dataset__resolution=1024, training__batch_size=4, training__gradient_checkpointing=True)],
    }
    for arch, runs in plans.items():
        folder = work / f"full-{arch}"
        began = time.time()
        full_size_model(arch, folder)
        print(f"built full-size {arch} in {time.time() - began:.0f} s", flush=True)
        torch.cuda.empty_cache()
        for settings in runs:
            batch = settings["training__batch_size"]
            label = f"{arch}-{settings['dataset__resolution']}-b{batch}" + \
                ("-gc" if settings.get("training__gradient_checkpointing") else "")
            epochs = max(1, -(-15 * batch // 12))  # about 15 steps
            record(train(folder, big, work, label, training__epochs=epochs, training__mixed_precision="bf16",
                         network__dim=8, network__alpha=4.0, **settings))

    print("\n| run | s/step | peak VRAM GiB | setup s | status |\n|---|---|---|---|---|")
    for r in results:
        print(f"| {r['label']} | {r.get('s_per_step')} | {r.get('vram_peak_gib')} | {r.get('setup_s')} | "
              f"{(r['last'] or {}).get('type')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
