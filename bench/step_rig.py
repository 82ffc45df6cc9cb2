"""The trainer's training step, in one process, for timing and profiling (used by gpu_acceptance.py).

``python -m trainer`` is the product, and the acceptance script times it as it is. What a child
process cannot show is *why* a step takes the time it does, so this module builds the same step
from the same trainer functions the loop calls (``load_base_model``, ``build_network``,
``TextEmbeddingCache``, ``build_packed_optimizer``, ``make_update``, ``diffusion_loss``) and runs it here,
where it can be timed variant against variant on the same weights and traced with torch.profiler:
kernels and launches per step, GPU busy fraction, idle gaps, the host time a step costs, whether
flash attention kernels run.

Two baselines make the figures readable on any GPU:

- ``bare_unet``: the same UNet without adapters, back-propagating to its input. The LoRA step
  needs nearly that backward pass (the adapters' own weights are tiny), so the difference is
  roughly what the adapters cost; the bare step does a little more, since the LoRA's backward
  stops at the first adapted layer while this one goes on through the layers before it.
- the step's FLOPs (torch's FLOP counter) over the matrix-product rate measured in the
  environment phase: the arithmetic floor no implementation gets under.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

CAPTION = "zkmascot, yellow creature, red scarf, standing, simple background"


@dataclass
class StepRig:
    """Everything one step needs, built once; ``step()`` runs the loop's step body."""

    model: Any
    network: Any
    precision: Any
    update: Callable
    scheduler: Any
    latents: Any
    """On the CPU, as the loop keeps them; moved to the device every step, as the loop does."""
    time_ids: Any
    text_cache: Any
    captions: list[str]
    train_te: bool
    extras: dict = field(default_factory=dict)

    def step(self) -> float:
        """One training step as ``trainer.loop`` does it (including its host sync for the loss); returns the loss."""
        from trainer.step import StepOptions, diffusion_loss, encode_captions

        device = self.precision.device
        latents = self.latents.to(device)
        conditioning = self.text_cache.lookup(self.captions, device) if self.text_cache is not None \
            else encode_captions(self.model, self.captions, self.precision, self.train_te)
        loss = diffusion_loss(self.model, latents, conditioning, self.time_ids, self.precision, StepOptions())
        value = loss.item()
        self.update(loss)
        self.scheduler.step()
        return value


def build_rig(model_dir: Path, arch: str, resolution: int, batch: int, *, dim: int = 8, alpha: float = 4.0,
              optimizer: str = "adamw8bit", gradient_checkpointing: bool = False, train_te: bool = False,
              mixed_precision: str = "bf16", seed: int = 0) -> StepRig:
    """Load ``model_dir`` and build the step the trainer would run for these settings."""
    import torch

    from trainer.contract.config.schema import NetworkConfig, OptimizerConfig, SchedulerConfig
    from trainer.fused import make_update
    from trainer.models import load_base_model, on_device, place_for_training, sdxl_time_ids
    from trainer.networks import build_network
    from trainer.optim import build_scheduler
    from trainer.packed_optimizer import build_packed_optimizer, packing_wanted
    from trainer.step import TextEmbeddingCache, choose_precision

    torch.manual_seed(seed)
    precision = choose_precision(mixed_precision)
    model = load_base_model(str(model_dir), arch, precision.weight_dtype, precision.device)
    if gradient_checkpointing:
        model.unet.enable_gradient_checkpointing()
    network = build_network(NetworkConfig(dim=dim, alpha=alpha), model.unet, model.text_encoders, arch,
                            train_te).to(precision.device)
    network.attach()
    model.unet.train()
    for encoder in model.text_encoders if train_te else []:
        encoder.train()
        if gradient_checkpointing:
            encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    captions = [CAPTION] * batch
    text_cache = None
    if not train_te:  # as the loop does: encoded on the GPU before the UNet arrives, the encoders then parked
        with on_device(model.text_encoders, precision.device):
            text_cache = TextEmbeddingCache(model, captions, precision)
    place_for_training(model, precision.device, text_outputs_cached=text_cache is not None)
    groups = network.parameter_groups(5e-4, 1e-4 if train_te else 0.0)
    trainable = [p for p in network.parameters() if p.requires_grad]
    # As the loop builds it (LORATUI_PACKED_OPTIMIZER=0 compares without packing).
    opt, trainable = build_packed_optimizer(OptimizerConfig(name=optimizer), groups, trainable, False)
    scheduler = build_scheduler(SchedulerConfig(name="constant"), opt, 10_000)
    update = make_update(opt, None, trainable, 1.0, False)
    side = resolution // 8
    latents = torch.randn(batch, 4, side, side, generator=torch.Generator().manual_seed(seed))
    time_ids = None
    if arch == "sdxl":
        row = sdxl_time_ids((resolution, resolution), (0, 0), (resolution, resolution))
        time_ids = torch.stack([row] * batch).to(precision.device)
    return StepRig(model, network, precision, update, scheduler, latents, time_ids, text_cache, captions, train_te,
                   extras={"optimizer": opt, "trainable": trainable, "packed": packing_wanted(optimizer, False)})


def bare_unet_step(rig: StepRig) -> Callable[[], float]:
    """The baseline: the rig's UNet with its adapters detached, back-propagating to the input only.

    Call ``rig.network.attach()`` again before using the rig's own step.
    """
    from trainer.step import StepOptions, diffusion_loss

    rig.network.detach()
    device = rig.precision.device
    conditioning = rig.text_cache.lookup(rig.captions, device) if rig.text_cache is not None else None

    def step() -> float:
        latents = rig.latents.to(device).requires_grad_(True)
        loss = diffusion_loss(rig.model, latents, conditioning, rig.time_ids, rig.precision, StepOptions())
        value = loss.item()
        loss.backward()
        return value

    return step


def step_flops(step: Callable[[], float]) -> float:
    """Floating-point operations of one step as torch's FLOP counter sees them (matrix products, convolutions,
    attention): with the measured matrix rate this gives the step's arithmetic floor."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def _synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], float], device, warmup: int, steps: int) -> dict:
    """Median and spread of a step's wall time after ``warmup`` steps (the device is synchronised around each)."""
    for _ in range(warmup):
        step()
    _synchronize(device)
    durations, losses = [], []
    for _ in range(steps):
        began = time.perf_counter()
        losses.append(step())
        _synchronize(device)
        durations.append(time.perf_counter() - began)
    return {"s_per_step": round(statistics.median(durations), 4), "min_s": round(min(durations), 4),
            "max_s": round(max(durations), 4), "steps": steps, "finite_losses": all(v == v for v in losses)}


def peak_memory(device) -> dict:
    """Peak allocated and reserved bytes since the last reset, in GiB (empty on a CPU)."""
    import torch

    if device.type != "cuda":
        return {}
    return {"peak_allocated_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 3),
            "peak_reserved_gib": round(torch.cuda.max_memory_reserved(device) / 2**30, 3)}


def _union_length(intervals: list[tuple[float, float]]) -> tuple[float, list[float]]:
    """Total length covered by the intervals, and the gaps between them (both in the intervals' unit)."""
    covered, gaps, end = 0.0, [], None
    for start, stop in sorted(intervals):
        if end is None or start > end:
            if end is not None:
                gaps.append(start - end)
            covered += stop - start
            end = stop
        elif stop > end:
            covered += stop - end
            end = stop
    return covered, gaps


SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy",
              "cudaMemcpyAsync")
"""Runtime calls in which the host may wait for the GPU; the rest of the host's time is its own work."""
LAUNCH_CALLS = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx",
                "cudaGraphLaunch")


def profile_steps(step: Callable[[], float], device, steps: int = 4, warmup: int = 2) -> dict:
    """Trace ``steps`` steps with torch.profiler and summarise what the host and the GPU did per step.

    GPU figures: kernels per step, launches per step, the share of the wall time at least one
    kernel or copy ran (busy fraction), idle gaps longer than 50 µs, the kernels that took the most
    time, and whether any flash-attention kernel ran. Host figure: the time per step the host spent
    outside calls that can wait for the GPU (an upper bound of its own work: launch-bound steps
    have it close to the wall time).
    """
    from torch.profiler import ProfilerActivity, profile

    for _ in range(warmup):
        step()
    _synchronize(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        began = time.perf_counter()
        for _ in range(steps):
            step()
        _synchronize(device)
        wall = time.perf_counter() - began
    events = prof.events()
    result: dict[str, Any] = {"steps": steps, "wall_s_per_step": round(wall / steps, 4)}
    aten = [e for e in events if e.name.startswith("aten::") and getattr(e, "cpu_parent", None) is None]
    result["top_level_aten_ops_per_step"] = round(len(aten) / steps, 1)
    if device.type != "cuda":
        return result
    kernels = [e for e in events if str(getattr(e, "device_type", "")).endswith("CUDA")]
    intervals = [(e.time_range.start, e.time_range.end) for e in kernels]
    busy_us, gaps = _union_length(intervals)
    span_us = (max(e for _, e in intervals) - min(s for s, _ in intervals)) if intervals else 0.0
    launches = [e for e in events if e.name in LAUNCH_CALLS]
    waits_us = sum(e.time_range.end - e.time_range.start for e in events if e.name in SYNC_CALLS)
    by_name: dict[str, float] = {}
    for e in kernels:
        by_name[e.name] = by_name.get(e.name, 0.0) + (e.time_range.end - e.time_range.start)
    top = sorted(by_name.items(), key=lambda item: -item[1])[:15]
    result.update(
        kernels_per_step=round(len(kernels) / steps, 1),
        launches_per_step=round(len(launches) / steps, 1),
        gpu_busy_fraction=round(busy_us / (wall * 1e6), 3) if wall else None,
        gpu_busy_fraction_of_span=round(busy_us / span_us, 3) if span_us else None,
        idle_gaps_over_50us_per_step=round(sum(1 for g in gaps if g > 50) / steps, 1),
        idle_gap_time_s_per_step=round(sum(g for g in gaps if g > 50) / 1e6 / steps, 4),
        host_s_per_step_outside_waits=round((wall * 1e6 - waits_us) / 1e6 / steps, 4),
        flash_kernels=sorted({n for n in by_name if "flash" in n.lower() or "fmha" in n.lower()})[:5],
        top_kernels_ms_per_step=[(name[:90], round(us / 1000 / steps, 2)) for name, us in top],
    )
    return result
