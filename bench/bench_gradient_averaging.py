"""Averaging LoRA gradients over two processes: one all-reduce per tensor against ~25 MB buckets.

    python bench/bench_gradient_averaging.py [--arch sdxl] [--dim 8] [--rounds 5] [--backend gloo]

Two processes (gloo on the CPU; ``--backend nccl`` on a machine with two GPUs) hold gradients of
the shapes the real LoRA has (``loratui.estimates.lora_parameter_tensors``) and average them
with ``trainer.distributed.average_gradients``: with a bucket size of 0 every tensor is its own
all-reduce (the former implementation), with the default each ~25 MB bucket is one. Prints the
median seconds per averaging and the ratio bucketed / per tensor (below 1: buckets are faster).
On a CPU both move the same bytes through loopback; what buckets save is the per-call latency,
which is larger with NCCL on GPUs (a kernel launch and a synchronisation per call).
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


def _worker(rank: int, world: int, rendezvous: str, backend: str, sizes: list[int], rounds: int, out: str) -> None:
    import torch
    import torch.distributed as dist

    from trainer.distributed import BUCKET_BYTES, average_gradients

    torch.set_num_threads(1)
    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    weights = [torch.zeros(n, device=device, requires_grad=True) for n in sizes]
    for weight in weights:
        weight.grad = torch.randn(weight.numel(), device=device)
    timings: dict[str, list[float]] = {"per tensor": [], "bucketed": []}
    for round_ in range(rounds + 1):  # the first round of each is warm-up
        for name, bucket_bytes in (("per tensor", 0), ("bucketed", BUCKET_BYTES)):
            dist.barrier()
            start = time.perf_counter()
            average_gradients(weights, world, bucket_bytes)
            if device.type == "cuda":
                torch.cuda.synchronize()
            dist.barrier()
            if round_:
                timings[name].append(time.perf_counter() - start)
    if rank == 0:
        Path(out).write_text("\n".join(f"{k}={statistics.median(v)}" for k, v in timings.items()))
    dist.destroy_process_group()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="sdxl", choices=["sd15", "sdxl"])
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backend", default="gloo", choices=["gloo", "nccl"])
    args = parser.parse_args()

    import torch.multiprocessing as mp

    from loratui.estimates import lora_parameter_tensors

    sizes = lora_parameter_tensors(args.arch, "lora", args.dim, args.dim, False)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "timings.txt"
        mp.spawn(_worker, args=(2, str(Path(tmp) / "rendezvous"), args.backend, sizes, args.rounds, str(out)),
                 nprocs=2, join=True)
        timings = dict(line.split("=") for line in out.read_text().splitlines())
    per_tensor, bucketed = float(timings["per tensor"]), float(timings["bucketed"])
    print(f"{args.arch} LoRA dim {args.dim}: {len(sizes)} gradient tensors, {sum(sizes) * 4 / 1e6:.1f} MB, "
          f"2 processes, {args.backend}, median of {args.rounds}")
    print(f"{'per tensor s':>12} {'bucketed s':>10} {'ratio':>6}")
    print(f"{per_tensor:12.4f} {bucketed:10.4f} {bucketed / per_tensor:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
