"""AdamW8bit stepping an SDXL LoRA's 1,444 tensors one by one, against the same weights packed.

    python bench/bench_packed_optimizer.py [--arch sdxl] [--dim 8] [--steps 5] [--device cpu]

The tensors have the sizes of a real LoRA's (``loratui.estimates.lora_parameter_tensors``). Both
optimizers get the same gradients; the time is the optimizer step alone, median over ``--steps``
after one warm-up step, alternating the two so both see the same machine load. On a CPU the
figure is bitsandbytes' per-tensor Python and dispatch overhead; on a GPU each tensor also costs a
``torch.cuda.synchronize()`` (bitsandbytes' ``Optimizer8bit.step``), which packing removes too.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=("sd15", "sdxl"), default="sdxl")
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import bitsandbytes as bnb
    import torch

    from loratui.estimates import lora_parameter_tensors
    from trainer.packed_optimizer import PackedParameters

    sizes = lora_parameter_tensors(args.arch, "lora", args.dim, args.dim, False)
    generator = torch.Generator().manual_seed(0)
    weights = [torch.randn(n, generator=generator).mul_(0.01) for n in sizes]
    grads = [torch.randn(n, generator=generator) for n in sizes]

    def build(packed: bool):
        params = [torch.nn.Parameter(w.clone().to(args.device)) for w in weights]
        groups = [{"params": params, "lr": 5e-4}]
        holder = PackedParameters(groups) if packed else None
        optimizer = bnb.optim.AdamW8bit(holder.groups if holder else groups, weight_decay=0.01)
        if holder:
            holder.bind(optimizer)
        return params, optimizer

    def one_step(params, optimizer) -> float:
        with torch.no_grad():
            for p, g in zip(params, grads):
                if p.grad is None:
                    p.grad = g.to(args.device).clone()
                else:
                    p.grad.copy_(g)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        began = time.perf_counter()
        optimizer.step()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - began
        optimizer.zero_grad(set_to_none=True)
        return elapsed

    runs = {"per tensor": build(False), "packed": build(True)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for name, (params, optimizer) in runs.items():
        one_step(params, optimizer)  # state allocation
    for _ in range(args.steps):
        for name, (params, optimizer) in runs.items():
            times[name].append(one_step(params, optimizer))
    same = all(torch.equal(a, b) for a, b in zip(runs["per tensor"][0], runs["packed"][0]))
    plain, packed = statistics.median(times["per tensor"]), statistics.median(times["packed"])
    stepped = sum(len(g["params"]) for g in runs["packed"][1].param_groups)
    print(f"{args.arch} dim {args.dim}: {len(sizes)} tensors, {sum(sizes) / 1e6:.1f} M weights, on {args.device}")
    print(f"per tensor {plain * 1000:8.1f} ms/step ({len(sizes)} tensors stepped)")
    print(f"packed     {packed * 1000:8.1f} ms/step ({stepped} tensors stepped)   ratio {packed / plain:.3f}")
    print(f"weights after {args.steps + 1} steps identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
