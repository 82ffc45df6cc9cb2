"""How long `loratui demo --headless` takes, against the cost of importing the ML stack.

    python bench/bench_demo.py [--repeat 2]

Prints, in one session on one machine: the import floor (a Python that imports torch, diffusers
and transformers and exits), the demo's wall time from a fresh workspace (tiny model built,
images drawn, trained) and from a reused one, where the training process spends its time
(from its own events), and each time as a ratio to the import floor. Ratios, not seconds, are
what compare across machines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(command: list[str], cwd: Path | None = None) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return elapsed, result


def trainer_phases(lora: Path) -> dict[str, float]:
    events = [json.loads(line) for line in (lora.parent / "events.jsonl").read_text().splitlines()]
    first = events[0]["time"]
    start = next(e for e in events if e["type"] == "start")
    steps = [e for e in events if e["type"] == "step"]
    done = events[-1]
    return {"load + cache": start["time"] - first,
            "training": done["time"] - start["time"], "steps": len(steps),
            "median s/step": statistics.median(e["seconds_per_step"] for e in steps)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="runs of each measurement (the median is shown)")
    args = parser.parse_args()

    floors = [timed([sys.executable, "-c", "import torch, diffusers, transformers"])[0] for _ in range(args.repeat)]
    floor = statistics.median(floors)
    fresh, reused, phases = [], [], {}
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            command = [sys.executable, "-m", "loratui", "demo", "--headless", "--dir", str(Path(tmp) / "demo")]
            elapsed, result = timed(command)
            fresh.append(elapsed)
            elapsed, result = timed(command)
            reused.append(elapsed)
            phases = trainer_phases(Path(result.stdout.strip().splitlines()[-1]))

    rows = [("import torch+diffusers+transformers (floor)", floor),
            ("demo --headless, fresh workspace", statistics.median(fresh)),
            ("demo --headless, reused workspace", statistics.median(reused)),
            ("  trainer: load model + cache latents", phases["load + cache"]),
            ("  trainer: training", phases["training"])]
    print(f"{'measurement':48} {'seconds':>8} {'× floor':>8}")
    for name, seconds in rows:
        print(f"{name:48} {seconds:8.2f} {seconds / floor:8.1f}")
    print(f"{phases['steps']} steps, median {phases['median s/step'] * 1000:.1f} ms/step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
