"""GPU acceptance: the product's CUDA paths, proven and measured in one command on one GPU.

    python bench/gpu_acceptance.py OUT_DIR [--budget 520] [--dry-run]

Phases, most valuable first; each writes its result to OUT_DIR/acceptance.json the moment it
ends, so a run cut short keeps everything measured so far, and a phase that would not fit in what
is left of ``--budget`` seconds is skipped and says so:

1. environment: versions, the GPU, bf16, flash attention, the matrix-product rate (the ceiling the
   step is compared with) and one AdamW8bit step.
2. build: a full-size SDXL with random weights (the real architecture; nothing is downloaded),
   saved as an fp16 diffusers folder, and twelve 1024 px training images.
3. sdxl_b4, sdxl_b4_unpacked and sdxl_b4_gc: ``python -m trainer`` exactly as the app starts it: 1024 px, batch 4,
   LoRA dim 8, bf16, AdamW8bit, text encoder frozen (its outputs cached), about 20 steps, without
   and with gradient checkpointing (the second also draws sample images at 1024 px). Median s/step
   over steps 5 onwards, peak allocated and reserved memory, nvidia-smi's peak, each set beside
   ``loratui.estimates``' figures for the same settings. The unpacked run steps AdamW8bit tensor by
   tensor (``LORATUI_PACKED_OPTIMIZER=0``), the baseline of the packed optimizer.
4. profile: the same step in one process (bench/step_rig.py): kernels and launches per step, GPU
   busy fraction, idle gaps, host time, flash kernels, and the step timed against variants (the
   plain LoRA forward, checkpointing, the UNet without adapters as the floor).
5. cuda_tests: the CUDA tests (``tests/trainer/test_cuda.py`` and the CUDA cases of
   ``test_lora_forward.py``); they start right after phase 1 and run beside the build, whose
   timing matters to no one, and end before the timed runs begin.
6. sdxl_b1_te: batch 1 with the text encoder trained, the setting users report speeds for.
7. compile: ``training.compile`` on the batch-4 run.

``--dry-run`` walks every phase on the CPU with the tiny SDXL model at 128 px in a few minutes, so
the script is proven before GPU time is spent on it. Torch is only ever imported by child
processes: this process holds no GPU memory, so nvidia-smi's figures are the trainer's alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


@dataclass(frozen=True)
class Sizes:
    """What a phase trains: full size on a GPU, tiny for the dry run."""

    full: bool
    resolution: int
    images: int
    steps: int
    warmup_steps: int
    """Steps left out of the median (compilation, cuDNN autotuning, the allocator growing)."""
    sample_steps: int


GPU_SIZES = Sizes(full=True, resolution=1024, images=12, steps=20, warmup_steps=4, sample_steps=8)
DRY_SIZES = Sizes(full=False, resolution=128, images=12, steps=8, warmup_steps=2, sample_steps=3)

CUDA_TESTS_LIMIT_S = 300
"""The CUDA tests are stopped after this long (they take about two minutes on an H200)."""

GOALS_S_PER_STEP = {"sdxl_b4": 0.31, "sdxl_b4_gc": 0.45}
"""The issue's goals on an H200: a third of the arithmetic bound without checkpointing; with it, 0.45 s."""

PHASE_COST_S = {"environment": 30, "build": 90, "cuda_tests": 180, "sdxl_b4": 75, "sdxl_b4_unpacked": 75,
                "sdxl_b4_gc": 90, "profile": 90,
                "sdxl_b1_te": 60, "compile": 120}
"""Rough seconds each phase needs on an H200; a phase starts only if this much budget is left."""


# --- Children: the only code that imports torch ---------------------------------------------


def child_build(folder: str, full: bool) -> dict:
    """Save the SDXL model the runs train against: full size on the GPU, or the tiny one."""
    began = time.time()
    if full:
        import torch
        from full_size import save_full_size

        save_full_size("sdxl", Path(folder), "float16", "cuda" if torch.cuda.is_available() else "cpu")
    else:
        from trainer.tools.tiny import build

        build(folder, "sdxl")
    size = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
    return {"seconds": round(time.time() - began, 1), "size_gib": round(size / 2**30, 2)}


def child_profile(model: str, resolution: int, batch: int, full: bool) -> dict:
    """The trainer's step in this process, timed against its variants and profiled (see bench/step_rig.py)."""
    import torch

    import step_rig

    rig = step_rig.build_rig(Path(model), "sdxl", resolution, batch)
    device = rig.precision.device
    warmup, timed = (3, 8) if full else (2, 4)
    result: dict = {"device": str(device)}

    def measure(label: str, step) -> None:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        try:
            result[label] = step_rig.time_steps(step, device, warmup, timed) | step_rig.peak_memory(device)
        except Exception as exc:  # noqa: BLE001 - one variant failing must not hide the others
            result[label] = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]}

    measure("lora_step", rig.step)
    try:
        result["lora_step_tflop"] = round(step_rig.step_flops(rig.step) / 1e12, 3)
    except Exception as exc:  # noqa: BLE001
        result["lora_step_tflop"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    try:
        result["lora_profile"] = step_rig.profile_steps(rig.step, device, steps=3 if full else 2)
    except Exception as exc:  # noqa: BLE001
        result["lora_profile"] = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]}
    import trainer.networks.lora as lora_module

    configured, lora_module.FORWARD = lora_module.FORWARD, "plain"  # read at every call: same weights, old forward
    measure("lora_step_plain_forward", rig.step)
    lora_module.FORWARD = configured
    result["lora_forward"] = configured
    # Two settings the trainer does not use yet, timed on the same weights: cuDNN's autotuner picks each
    # convolution's fastest algorithm for a shape once (buckets bring a handful of shapes), and the
    # channels-last layout that tensor-core convolutions read without transposing.
    torch.backends.cudnn.benchmark = True
    measure("lora_step_cudnn_benchmark", rig.step)
    rig.model.unet.to(memory_format=torch.channels_last)
    measure("lora_step_cudnn_benchmark_channels_last", rig.step)
    rig.model.unet.to(memory_format=torch.contiguous_format)
    torch.backends.cudnn.benchmark = False
    rig.model.unet.enable_gradient_checkpointing()
    measure("lora_step_checkpointing", rig.step)
    rig.model.unet.disable_gradient_checkpointing()
    bare = step_rig.bare_unet_step(rig)
    measure("bare_unet_step", bare)
    try:
        result["bare_profile"] = step_rig.profile_steps(bare, device, steps=2)
    except Exception as exc:  # noqa: BLE001
        result["bare_profile"] = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]}
    result["adapted_layers"] = len(rig.network.all_loras())
    result["optimizer_packed"] = rig.extras["packed"]
    return result


def child_environment() -> dict:
    """Versions, the GPU, flash attention, the matrix-product ceiling, one AdamW8bit step (bench/gpu_environment.py)."""
    from gpu_environment import environment

    return environment()


CHILDREN = {"environment": child_environment, "build": child_build, "profile": child_profile}


def run_child(name: str, kwargs: dict, timeout: float, log: Path) -> dict:
    """Run a ``child_*`` function in a fresh interpreter; its result, or what went wrong."""
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as handle:
        result_path = Path(handle.name)
    command = [sys.executable, __file__, "--child", name, "--kwargs", json.dumps(kwargs), "--result", str(result_path)]
    try:
        with open(log, "ab") as out:
            out.write(f"\n=== child {name} {kwargs}\n".encode())
            out.flush()
            status = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    timeout=max(5.0, timeout), cwd=REPO).returncode
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    try:
        result = json.loads(result_path.read_text())
    except (OSError, ValueError):
        result = {"error": f"exit status {status}, no result (see logs.txt)", "log_tail": _tail(log)}
    result_path.unlink(missing_ok=True)
    return result


def _tail(path: Path, chars: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


# --- GPU memory as the driver sees it --------------------------------------------------------


class SmiPeak:
    """nvidia-smi's memory.used polled every 100 ms while a block runs; ``peak_mib`` after (None without it)."""

    def __init__(self) -> None:
        self.peak_mib: int | None = None
        self._process = None

    def __enter__(self) -> "SmiPeak":
        if shutil.which("nvidia-smi") is None:
            return self
        self._process = subprocess.Popen(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                                          "-lms", "100"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        for line in self._process.stdout:
            try:
                value = int(line.strip().split()[0])
            except (ValueError, IndexError):
                continue
            self.peak_mib = value if self.peak_mib is None else max(self.peak_mib, value)

    def __exit__(self, *exc) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)


# --- The trainer, as the app runs it ---------------------------------------------------------


def write_images(folder: Path, count: int, size: int) -> Path:
    """Captioned training images drawn offline (the demo's mascot in varied colours and poses)."""
    from loratui.demo import draw_mascot

    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        draw_mascot((size, size), (70 + index * 10, 110, 200), ("standing", "jumping", "sitting")[index % 3],
                    index).save(folder / f"m{index:02d}.png")
        (folder / f"m{index:02d}.txt").write_text("zkmascot, yellow creature, red scarf, simple background\n")
    return folder


def train(model: Path, images: Path, work: Path, label: str, sizes: Sizes, timeout: float, log: Path,
          batch: int, env: dict | None = None, **sections) -> dict:
    """One ``python -m trainer`` run of about ``sizes.steps`` steps; its figures, or how it failed.

    ``env`` adds environment variables (the trainer's switches, such as ``LORATUI_PACKED_OPTIMIZER``)."""
    from trainer.contract.config.schema import from_dict, validate
    from trainer.contract.config.toml_io import load_config, save_config
    from trainer.contract.events import read_events
    from trainer.contract.rundir import create_run_dir

    repeats = -(-sizes.steps * batch // sizes.images)
    data = {"model": {"base": str(model), "arch": "sdxl"},
            "dataset": {"path": str(images), "trigger_word": "zkmascot", "repeats": repeats,
                        "resolution": sizes.resolution, "shuffle_captions": False, "cache_latents_to_disk": False},
            "network": {"dim": 8, "alpha": 4.0},
            "optimizer": {"name": "adamw8bit", "text_encoder_lr": 0.0},
            "scheduler": {"name": "constant"},
            "training": {"epochs": 1, "batch_size": batch, "mixed_precision": "bf16"},
            "output": {"name": label, "dir": str(work / "runs"), "save_every_n_epochs": 0}}
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    config, problems = from_dict(data)
    problems += validate(config)
    if problems:
        return {"error": "config: " + "; ".join(str(p) for p in problems)}
    save_config(config, work / f"{label}.toml")
    run = create_run_dir(load_config(work / f"{label}.toml")[0])
    began = time.time()
    try:
        with SmiPeak() as smi, open(run.log, "wb") as out:
            status = subprocess.run([sys.executable, "-m", "trainer", str(run.root)], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
                                    env={**os.environ, **(env or {})}, timeout=max(5.0, timeout)).returncode
    except subprocess.TimeoutExpired:
        status = "timeout"
    events = read_events(run.events)
    with open(log, "a") as out:
        out.write(f"\n=== trainer {label} (status {status})\n{_tail(run.log, 3000)}\n")
    steps = [e for e in events if e["type"] == "step"]
    start = next((e for e in events if e["type"] == "start"), None)
    result = {"status": status, "wall_s": round(time.time() - began, 1), "steps": len(steps),
              "last_event": {k: v for k, v in events[-1].items() if k != "time"} if events else None,
              "nvidia_smi_peak_mib": smi.peak_mib}
    if start:
        loading = next((e for e in events if e.get("phase") == "loading"), events[0])
        caching = next((e for e in events if e.get("phase") == "caching"), start)
        result.update(device=start.get("device"), precision=start.get("precision"),
                      setup_s=round(start["time"] - events[0]["time"], 1),
                      model_load_s=round(caching["time"] - loading["time"], 1),
                      text_encoder_outputs_cached=start.get("text_encoder_outputs_cached"))
    if steps:
        timed = [s["seconds_per_step"] for s in steps[sizes.warmup_steps:]] or [s["seconds_per_step"] for s in steps]
        result.update(s_per_step=round(statistics.median(timed), 4), s_per_step_min=round(min(timed), 4),
                      s_per_step_max=round(max(timed), 4), first_step_s=steps[0]["seconds_per_step"],
                      vram_peak_gib=steps[-1].get("vram_peak_gib"),
                      vram_reserved_peak_gib=steps[-1].get("vram_reserved_peak_gib"),
                      final_loss=steps[-1]["loss"])
    samples = [e for e in events if e["type"] == "sample"]
    if samples or sections.get("output", {}).get("sample_every_n_epochs"):
        result["samples"] = check_samples(samples, events)
    return result


def check_samples(samples: list[dict], events: list[dict]) -> dict:
    """Each sample image: its size and whether it is a picture (not NaN-black, not one flat colour)."""
    import numpy as np
    from PIL import Image

    checked = []
    for event in samples:
        with Image.open(event["path"]) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
        checked.append({"size": list(image.size), "mean": round(float(pixels.mean()), 1),
                        "std": round(float(pixels.std()), 1), "picture": bool(pixels.mean() > 2 and pixels.std() > 2)})
    status = [e for e in events if e["type"] == "status" and e.get("phase") == "sampling"]
    seconds = round(samples[-1]["time"] - status[0]["time"], 1) if samples and status else None
    failed = [e["message"] for e in events if e["type"] == "warning" and e.get("code") == "sample_failed"]
    return {"images": checked, "seconds": seconds, "failed": failed, "first_path": samples[0]["path"] if samples else None}


def estimate_for(resolution: int, batch: int, checkpointing: bool, train_te: bool) -> dict:
    """``loratui.estimates``' VRAM figures for the run's settings (GiB), to set beside the measurement."""
    from loratui.estimates import GIB, vram_estimate

    # The runs here fix their captions, so a frozen text encoder's outputs are cached (and it waits on the CPU).
    est = vram_estimate("sdxl", resolution, batch, checkpointing, "bf16", "adamw8bit", "lora", 8, 8, train_te,
                        text_outputs_cached=not train_te)
    return {"allocated_peak_gib": round(est.allocated_peak / GIB, 3), "training_peak_gib": round(est.training_peak / GIB, 3),
            "caching_peak_gib": round(est.caching_peak / GIB, 3), "total_gib": round(est.total / GIB, 3),
            "parts_gib": {label: round(value / GIB, 3) for label, value in est.parts()}}


def compare(result: dict, estimate: dict) -> dict:
    """Measured over estimated: allocated peak against allocated peak, nvidia-smi against the total."""
    out = {"estimate": estimate}
    if result.get("vram_peak_gib"):
        out["allocated_measured_over_estimated"] = round(result["vram_peak_gib"] / estimate["allocated_peak_gib"], 3)
    if result.get("nvidia_smi_peak_mib"):
        out["smi_measured_over_estimated_total"] = round(result["nvidia_smi_peak_mib"] / 1024 / estimate["total_gib"], 3)
    return out


# --- The run ---------------------------------------------------------------------------------


class Recorder:
    """Keeps every phase's result in OUT/acceptance.json, rewritten after each phase."""

    def __init__(self, out: Path, budget: float, dry_run: bool) -> None:
        self.out, self.budget, self.began = out, budget, time.time()
        self.results: dict = {"dry_run": dry_run, "budget_s": budget,
                              "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "phases": {}}

    def left(self) -> float:
        return self.budget - (time.time() - self.began)

    def fits(self, name: str) -> bool:
        if self.left() >= PHASE_COST_S[name]:
            return True
        self.record(name, {"skipped": f"{self.left():.0f} s of the budget left, the phase needs about "
                                      f"{PHASE_COST_S[name]} s"})
        return False

    def record(self, name: str, result: dict, began: float | None = None) -> None:
        if began is not None:
            result["phase_s"] = round(time.time() - began, 1)
        self.results["phases"][name] = result
        self.results["elapsed_s"] = round(time.time() - self.began, 1)
        tmp = self.out / "acceptance.json.tmp"
        tmp.write_text(json.dumps(self.results, indent=1, default=str))
        tmp.replace(self.out / "acceptance.json")
        print(f"[{self.results['elapsed_s']:6.1f} s] {name}: {json.dumps(result, default=str)[:1500]}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, nargs="?")
    parser.add_argument("--budget", type=float, default=520.0, help="seconds for the whole run (default 520)")
    parser.add_argument("--dry-run", action="store_true", help="every phase on the CPU at tiny size")
    parser.add_argument("--work", type=Path, help="scratch folder (default: /dev/shm when it has room, else /tmp)")
    parser.add_argument("--only", help="comma-separated phases to run (build always runs when a later phase needs it)")
    parser.add_argument("--tests", help="pytest arguments selecting the CUDA tests (default: all of them)")
    parser.add_argument("--tests-limit", type=float, default=CUDA_TESTS_LIMIT_S,
                        help=f"seconds after which the CUDA tests are stopped (default {CUDA_TESTS_LIMIT_S})")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--kwargs", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        from trainer.quiet import quiet_libraries

        quiet_libraries()
        result = CHILDREN[args.child](**json.loads(args.kwargs))
        Path(args.result).write_text(json.dumps(result, default=str))
        return 0
    if args.out is None:
        parser.error("OUT_DIR is required")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach the network
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    sizes = DRY_SIZES if args.dry_run else GPU_SIZES
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or _scratch(args.dry_run)
    work.mkdir(parents=True, exist_ok=True)
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")  # the latent cache stays in the scratch folder
    log = args.out / "logs.txt"
    log.write_text("")
    rec = Recorder(args.out, args.budget, args.dry_run)
    wanted = set(args.only.split(",")) if args.only else set(PHASE_COST_S)
    model, images = work / "sdxl", work / "images"

    def phase(name: str, body) -> None:
        if name not in wanted or not rec.fits(name):
            return
        began = time.time()
        try:
            rec.record(name, body(), began)
        except Exception as exc:  # noqa: BLE001 - one broken phase must not cost the others
            rec.record(name, {"error": f"{type(exc).__name__}: {exc}"}, began)

    phase("environment", lambda: run_child("environment", {}, rec.left(), log))
    # The CUDA tests train tiny models; their timings matter to no one, so they run beside the build
    # (disk and CPU work) and must end before the timed runs start.
    tests = CudaTests(args.out, args.tests.split() if args.tests else None) \
        if "cuda_tests" in wanted and rec.fits("cuda_tests") else None
    if wanted - {"environment", "cuda_tests"} and rec.fits("build"):
        began = time.time()
        write_images(images, sizes.images, sizes.resolution)
        rec.record("build", run_child("build", {"folder": str(model), "full": sizes.full}, rec.left(), log), began)
    if tests is not None:
        waited = time.time() - tests.began
        rec.record("cuda_tests", tests.finish(min(rec.left() - PHASE_COST_S["sdxl_b4"], args.tests_limit - waited)),
                   tests.began)

    def trainer_phase(label: str, batch: int, checkpointing: bool, train_te: bool = False, env: dict | None = None,
                      **sections):
        training = {"gradient_checkpointing": checkpointing} | sections.pop("training", {})
        result = train(model, images, work, label, sizes, rec.left() - 5, log, batch, env, training=training,
                       **sections)
        return result | compare(result, estimate_for(sizes.resolution, batch, checkpointing, train_te))

    phase("sdxl_b4", lambda: trainer_phase("sdxl_b4", 4, False))
    phase("sdxl_b4_unpacked", lambda: trainer_phase("sdxl_b4_unpacked", 4, False,
                                                    env={"LORATUI_PACKED_OPTIMIZER": "0"}))
    phase("profile", lambda: run_child("profile", {"model": str(model), "resolution": sizes.resolution, "batch": 4,
                                                   "full": sizes.full}, rec.left() - 5, log))
    phase("sdxl_b4_gc", lambda: trainer_phase(
        "sdxl_b4_gc", 4, True, output={"sample_every_n_epochs": 1, "sample_steps": sizes.sample_steps,
                                       "sample_prompts": ["zkmascot, yellow creature, red scarf"]}))
    phase("sdxl_b1_te", lambda: trainer_phase(
        "sdxl_b1_te", 1, False, train_te=True, dataset={"shuffle_captions": True},
        optimizer={"text_encoder_lr": 1e-4}))
    phase("compile", lambda: trainer_phase("sdxl_b4_compile", 4, False, training={"compile": True}))
    _copy_first_sample(rec.results, args.out)
    print(summary(rec.results), flush=True)
    (args.out / "acceptance.md").write_text(summary(rec.results) + "\n")
    return 0


class CudaTests:
    """The CUDA tests (all skipped without a GPU), started at once in the background; ``finish`` waits."""

    SELECTION = ["tests/trainer/test_cuda.py", "tests/trainer/test_lora_forward.py", "-k", "cuda or inductor"]
    OPTIONS = ["-v", "-rs", "-p", "no:cacheprovider", "-o", "addopts=", "--durations=0"]

    def __init__(self, out: Path, selection: list[str] | None = None) -> None:
        self.began = time.time()
        self.log = out / "cuda_tests.log"
        self._handle = open(self.log, "wb")
        self._process = subprocess.Popen([sys.executable, "-m", "pytest", *(selection or self.SELECTION),
                                          *self.OPTIONS], cwd=REPO, stdout=self._handle,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def finish(self, timeout: float) -> dict:
        """Wait at most ``timeout`` seconds; the exit status and pytest's summary line."""
        try:
            status = self._process.wait(timeout=max(5.0, timeout))
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
            status = "timeout"
        self._handle.close()
        text = self.log.read_text(errors="replace")
        lines = [line for line in text.splitlines()
                 if any(word in line for word in (" passed", " failed", " skipped", " error"))]
        return {"status": status, "summary": lines[-1] if lines else text[-300:]}


def _scratch(dry_run: bool) -> Path:
    shm = Path("/dev/shm")
    if not dry_run and shm.is_dir() and shutil.disk_usage(shm).free > 30 * 2**30:
        return shm / "loratui-acceptance"
    return Path(tempfile.mkdtemp(prefix="loratui-acceptance-"))


def _copy_first_sample(results: dict, out: Path) -> None:
    sample = results["phases"].get("sdxl_b4_gc", {}).get("samples", {}).get("first_path")
    if sample and Path(sample).is_file():
        shutil.copyfile(sample, out / "sample.png")


def summary(results: dict) -> str:
    """A Markdown table of the trainer runs and the profile's headline figures."""
    phases = results["phases"]
    lines = ["| run | status | s/step | peak alloc GiB (est.) | peak reserved GiB | nvidia-smi GiB (est. total) |",
             "|---|---|---|---|---|---|"]
    for name in ("sdxl_b4", "sdxl_b4_unpacked", "sdxl_b4_gc", "sdxl_b1_te", "compile"):
        r = phases.get(name)
        if not r:
            continue
        if "skipped" in r or "error" in r:
            lines.append(f"| {name} | {r.get('skipped') or r.get('error')} | | | | |")
            continue
        est = r.get("estimate", {})
        smi = f"{r['nvidia_smi_peak_mib'] / 1024:.2f}" if r.get("nvidia_smi_peak_mib") else "-"
        lines.append(f"| {name} | {(r.get('last_event') or {}).get('type')} ({r.get('status')}) | {r.get('s_per_step')} | "
                     f"{r.get('vram_peak_gib')} ({est.get('allocated_peak_gib')}) | {r.get('vram_reserved_peak_gib')} | "
                     f"{smi} ({est.get('total_gib')}) |")
    profile = phases.get("profile", {})
    rate = (phases.get("environment") or {}).get("bf16_matmul_tflops")
    if isinstance(profile.get("lora_step_tflop"), float) and rate:
        lines.append(f"\nstep arithmetic: {profile['lora_step_tflop']} TFLOP; at the measured {rate} TFLOP/s "
                     f"the floor is {profile['lora_step_tflop'] / rate:.3f} s/step")
    for name, goal in GOALS_S_PER_STEP.items():
        measured = (phases.get(name) or {}).get("s_per_step")
        if measured is not None and not results["dry_run"]:
            lines.append(f"goal {name}: {measured} s/step against at most {goal} ({'met' if measured <= goal else 'MISSED'})")
    for key in ("lora_step", "lora_step_plain_forward", "lora_step_cudnn_benchmark",
                "lora_step_cudnn_benchmark_channels_last", "lora_step_checkpointing", "bare_unet_step"):
        if isinstance(profile.get(key), dict):
            lines.append(f"\nprofile {key}: {profile[key]}")
    for key in ("lora_profile", "bare_profile"):
        if isinstance(profile.get(key), dict):
            lines.append(f"\n{key}: " + json.dumps({k: v for k, v in profile[key].items() if k != "top_kernels_ms_per_step"}))
    if "cuda_tests" in phases:
        lines.append(f"\ncuda_tests: {phases['cuda_tests']}")
    lines.append(f"\nelapsed {results.get('elapsed_s')} s of {results['budget_s']:.0f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
