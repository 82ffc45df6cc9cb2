"""Peak host memory while the trainer loads a full-size SDXL single-file checkpoint, on the CPU.

    python bench/bench_single_file_ram.py [--work DIR] [--dtype bfloat16|float16] [--baseline-tree DIR]

Cheap rented boxes have 16 GB of RAM or less, and a loader that holds an fp32 copy of SDXL (about
14 GB) gets the trainer killed before it has trained a step. This measures what
``trainer.models.load_base_model`` holds at its peak for a 6.9 GB fp16 SDXL checkpoint (the form
Civitai models come in) loaded for 16-bit training.

The checkpoint is the real SDXL architecture with random weights (``bench/full_size.py``), written
in the original single-file layout (``trainer.tools.ldm_export``); it is built once under ``--work``
and reused. Each measurement runs in a fresh process that samples its own ``/proc/self/status``
every 10 ms while loading:

- ``anon``: peak anonymous memory (``RssAnon``), what the kernel cannot drop under pressure, so what
  the OOM killer counts;
- ``rss``: peak resident memory (``VmHWM``), which also counts pages of the memory-mapped file.

``--baseline-tree`` measures another checkout first (for example ``git worktree add /tmp/before
<commit>``), in the same run, so the two figures come from the same machine state.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_MEASURE = r"""
import json, sys, threading, time
sys.path.insert(0, {tree!r})
import torch
from trainer.models import load_base_model

def status():
    fields = {{}}
    for line in open("/proc/self/status"):
        name, _, value = line.partition(":")
        if name in ("RssAnon", "VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024
    return fields

peak = {{"anon": 0}}
done = threading.Event()
def sample():
    while not done.is_set():
        peak["anon"] = max(peak["anon"], status()["RssAnon"])
        time.sleep(0.01)

before = status()
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
began = time.perf_counter()
model = load_base_model({checkpoint!r}, "sdxl", getattr(torch, {dtype!r}), torch.device("cpu"),
                        single_file_config={config!r})
seconds = time.perf_counter() - began
done.set()
sampler.join()
after = status()
dtypes = sorted({{str(p.dtype) for m in [model.unet, *model.text_encoders] for p in m.parameters()}})
print(json.dumps({{"seconds": seconds, "anon_start": before["RssAnon"], "anon_peak": max(peak["anon"], after["RssAnon"]),
                  "anon_end": after["RssAnon"], "rss_peak": after["VmHWM"], "weight_dtypes": dtypes,
                  "vae_dtype": str(next(model.vae.parameters()).dtype)}}))
"""


def build_checkpoint(work: Path) -> tuple[Path, Path]:
    """The full-size fp16 SDXL folder (configs and tokenizers) and its single-file checkpoint, built once."""
    from full_size import ensure_full_size

    folder, checkpoint = work / "sdxl-fp16", work / "sdxl-fp16.safetensors"
    built = ensure_full_size("sdxl", folder, dtype="float16")
    if built is not None or not checkpoint.is_file():
        # In a child process: exporting holds the whole pipeline in memory.
        subprocess.run([sys.executable, "-c",
                        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[3]);"
                        "from diffusers import StableDiffusionXLPipeline; import torch;"
                        "from trainer.tools.ldm_export import write_single_file;"
                        "pipe = StableDiffusionXLPipeline.from_pretrained(sys.argv[1], torch_dtype=torch.float16);"
                        "write_single_file(pipe, Path(sys.argv[2] + '.tmp.safetensors'))",
                        str(folder), str(checkpoint), str(ROOT)], check=True)
        Path(str(checkpoint) + ".tmp.safetensors").rename(checkpoint)
    return folder, checkpoint


def measure(tree: Path, checkpoint: Path, config: Path, dtype: str) -> dict:
    """Load the checkpoint with ``tree``'s trainer in a fresh process; its memory and time figures."""
    code = _MEASURE.format(tree=str(tree), checkpoint=str(checkpoint), config=str(config), dtype=dtype)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tree)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _gib(value: int) -> str:
    return f"{value / 2 ** 30:.2f} GiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/loratui-bench-single-file"))
    parser.add_argument("--dtype", choices=("bfloat16", "float16"), default="bfloat16")
    parser.add_argument("--baseline-tree", type=Path, help="another checkout to measure first, as the baseline")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    folder, checkpoint = build_checkpoint(args.work)
    print(f"checkpoint: {checkpoint} ({_gib(checkpoint.stat().st_size)}), ready in {time.perf_counter() - began:.0f} s")
    trees = ([("baseline", args.baseline_tree.resolve())] if args.baseline_tree else []) + [("this tree", ROOT)]
    results = {}
    for label, tree in trees:
        result = results[label] = measure(tree, checkpoint, folder, args.dtype)
        print(f"{label:>9}: anon peak {_gib(result['anon_peak'])} (start {_gib(result['anon_start'])}, "
              f"end {_gib(result['anon_end'])}), rss peak {_gib(result['rss_peak'])}, {result['seconds']:.0f} s; "
              f"weights {'/'.join(result['weight_dtypes'])}, vae {result['vae_dtype']}")
    if len(results) == 2:
        base, now = results["baseline"], results["this tree"]
        print(f"ratio (this tree / baseline): anon peak {now['anon_peak'] / base['anon_peak']:.2f}x, "
              f"rss peak {now['rss_peak'] / base['rss_peak']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
