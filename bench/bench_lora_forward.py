"""The LoRA layer's plain forward against the fused one, in the same run: time and ops per layer.

    python bench/bench_lora_forward.py [--batch 1] [--layers 4] [--rounds 5] [--iters N] [--autocast] [--compile]
    python bench/bench_lora_forward.py --batch 4 --layers 16 --autocast --compile     # on a GPU, as training runs

A stack of frozen Linear layers, each with a rank-8 adapter (``trainer.networks.lora.LoRAModule``),
at the shapes an SDXL transformer block sees at 1024 px: 4096 tokens × 640 features and 1024
tokens × 1280 features (times the batch). Two figures, plain against fused:

* seconds per forward + backward of the stack, measured in alternating rounds in this process
  (the median is shown, fused / plain as a ratio). On a CPU the layer's GEMMs dominate, so the
  ratio moves little there; the elementwise passes the fused path removes are memory-bound and
  matter on a GPU, where this is meant to be run (``--autocast`` for bf16, as training runs).
* the aten ops one adapted layer runs in its forward and its backward, recorded at the dispatch
  level (a TorchDispatchMode, so after autograd and autocast) on the CPU at a small shape: every
  kernel-launching op (views left out), the GEMMs among them, and the *full-size passes*: the
  other ops that read or write a tensor as large as the layer's input or output (memory-bound
  work). These counts are the same on any device, so the CPU shows them honestly.

With ``--compile`` both stacks are also timed under torch.compile (slow to compile on a CPU).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_leaves  # noqa: E402

from trainer.networks import lora as lora_module  # noqa: E402
from trainer.networks.lora import LoRAModule  # noqa: E402

SHAPES = ((4096, 640), (1024, 1280))
"""(tokens, features) of SDXL's two attention levels at 1024 px."""
RANK = 8
METADATA_OPS = {"view", "_unsafe_view", "_reshape_alias", "reshape", "t", "transpose", "permute", "expand",
                "as_strided", "detach", "alias", "unsqueeze", "squeeze", "slice", "select", "lift_fresh"}
"""aten ops that only make a new view of a tensor: they launch no kernel."""
GEMM_OPS = {"mm", "addmm", "addmm_", "bmm", "baddbmm", "baddbmm_", "convolution", "convolution_backward"}


def build_stack(features: int, layers: int, device: torch.device,
                autocast: bool = False) -> tuple[nn.Sequential, list[LoRAModule]]:
    """``layers`` frozen Linear layers with attached adapters whose up weights are not zero (as after training).

    With ``autocast`` the frozen weights are bf16, as the trainer loads them for mixed precision; the
    adapters stay fp32.
    """
    torch.manual_seed(0)
    stack = nn.Sequential(*[nn.Linear(features, features) for _ in range(layers)])
    stack = stack.to(device, torch.bfloat16 if autocast else torch.float32).requires_grad_(False)
    adapters = []
    for index, layer in enumerate(stack):
        adapter = LoRAModule(f"layer{index}", layer, RANK, RANK / 2).to(device)
        nn.init.normal_(adapter.lora_up.weight, std=0.01)
        adapter.attach()
        adapters.append(adapter)
    return stack, adapters


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_modes(tokens: int, features: int, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """Median seconds per forward + backward of the stack for each mode (and compiled, if asked)."""
    stack, adapters = build_stack(features, args.layers, device, args.autocast)
    leaf = torch.randn(args.batch, tokens, features, device=device, requires_grad=True)
    x = leaf.clone()  # a non-leaf input, as every layer but a model's first sees (autocast caches a leaf's cast)
    grad = torch.randn(args.batch, tokens, features, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.autocast)

    def step(fn) -> None:
        for _ in range(args.iters):
            for p in [leaf, *(p for a in adapters for p in a.parameters())]:
                p.grad = None  # accumulating into old gradients would add a pass of its own
            with autocast:
                out = fn(x)
            out.backward(grad.to(out.dtype))

    runners = {"plain": stack, "fused": stack}
    if args.compile:
        compiled = torch.compile(stack)
        runners.update({"plain+compile": compiled, "fused+compile": compiled})
    times: dict[str, list[float]] = {name: [] for name in runners}
    for name, fn in runners.items():  # warm-up (and compilation) outside the timed rounds
        lora_module.FORWARD = name.split("+")[0]
        step(fn)
    for _ in range(args.rounds):
        for name, fn in runners.items():
            lora_module.FORWARD = name.split("+")[0]
            _sync(device)
            start = time.perf_counter()
            step(fn)
            _sync(device)
            times[name].append((time.perf_counter() - start) / args.iters)
    lora_module.FORWARD = "fused"
    return {name: statistics.median(values) for name, values in times.items()}


def peak_memory(tokens: int, features: int, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """CUDA only: the peak bytes allocated during one forward + backward of the stack, per mode (GiB)."""
    stack, _ = build_stack(features, args.layers, device, args.autocast)
    result = {}
    for mode in ("plain", "fused"):
        lora_module.FORWARD = mode
        x = torch.randn(args.batch, tokens, features, device=device, requires_grad=True).clone()
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.autocast):
            out = stack(x)
        out.float().sum().backward()
        torch.cuda.synchronize(device)
        result[mode] = (torch.cuda.max_memory_allocated(device) - base) / 2**30
        del x, out
    lora_module.FORWARD = "fused"
    return result


class _OpLog(TorchDispatchMode):
    """Records every aten op that reaches the kernels (after autograd and autocast), with its tensors' sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[str, list[int]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        sizes = [t.numel() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        self.ops.append((func.overloadpacket.__name__, sizes))
        return func(*args, **(kwargs or {}))


def count_ops(mode: str, autocast: bool) -> dict[str, object]:
    """The kernel-launching aten ops of one adapted layer's forward and backward (CPU, small shape).

    The input is a non-leaf that requires grad, as every layer's is but the first's (autocast caches
    the cast of a leaf, so a leaf input would hide a cast). A "full-size pass" is an op other than a
    GEMM that reads or writes a tensor as large as the layer's input or output: memory-bound work.
    """
    tokens, features = 256, 96  # activations larger than the weights, as in the real model
    full = tokens * features
    stack, _ = build_stack(features, 1, torch.device("cpu"), autocast)
    lora_module.FORWARD = mode
    x = torch.randn(1, tokens, features, requires_grad=True).clone()
    counts: dict[str, object] = {}
    for phase in ("forward", "backward"):
        log = _OpLog()
        if phase == "forward":
            with log, torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                out = stack(x)
            grad = torch.ones_like(out)
        else:
            with log:
                out.backward(grad)
        kernels = [(name, sizes) for name, sizes in log.ops if name not in METADATA_OPS]
        passes = [name for name, sizes in kernels if name not in GEMM_OPS and max(sizes, default=0) >= full]
        counts[f"{phase} kernels"] = len(kernels)
        counts[f"{phase} GEMMs"] = sum(name in GEMM_OPS for name, _ in kernels)
        counts[f"{phase} full-size passes"] = len(passes)
        counts[f"{phase} passes"] = " ".join(passes)
    nodes, seen, todo = 0, set(), [out.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        nodes += 1
        todo.extend(next_fn for next_fn, _ in node.next_functions)
    counts["autograd nodes"] = nodes
    lora_module.FORWARD = "fused"
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1, help="images per step (tokens × batch rows per layer)")
    parser.add_argument("--layers", type=int, default=4, help="adapted layers in the stack")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per mode (the median is shown)")
    parser.add_argument("--iters", type=int, help="passes per round (default: 1 on a CPU, 20 on a GPU)")
    parser.add_argument("--autocast", action="store_true", help="bf16 autocast, as training runs on a GPU")
    parser.add_argument("--compile", action="store_true", help="also time both modes under torch.compile")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    args.iters = args.iters or (20 if device.type == "cuda" else 1)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}; batch {args.batch}, {args.layers} layers, rank {RANK}, "
          f"{'bf16 autocast' if args.autocast else 'fp32'}, {args.iters} passes × {args.rounds} rounds")

    print("\naten ops per adapted Linear layer (recorded at dispatch on the CPU; a GPU runs the same ops):")
    for autocast in (False, True):
        ops = {mode: count_ops(mode, autocast) for mode in ("plain", "fused")}
        label = "bf16 autocast" if autocast else "fp32"
        for key in ("forward kernels", "forward GEMMs", "forward full-size passes", "backward kernels",
                    "backward GEMMs", "backward full-size passes", "autograd nodes"):
            print(f"  {label:13s} {key:25s} plain {ops['plain'][key]:3d}   fused {ops['fused'][key]:3d}")
        for mode in ("plain", "fused"):
            print(f"  {label:13s} {mode} full-size passes: forward [{ops[mode]['forward passes']}], "
                  f"backward [{ops[mode]['backward passes']}]")

    print("\nforward + backward of the stack (median seconds; ratio against plain, measured in this run):")
    for tokens, features in SHAPES:
        times = time_modes(tokens, features, args, device)
        plain = times["plain"]
        row = "   ".join(f"{mode} {seconds * 1000:8.2f} ms ({seconds / plain:.3f}×)"
                         for mode, seconds in times.items())
        print(f"  {args.batch}×{tokens} tokens × {features}: {row}")
        if device.type == "cuda":
            peaks = peak_memory(tokens, features, args, device)
            print(f"    peak memory of one pass: plain {peaks['plain']:.3f} GiB, fused {peaks['fused']:.3f} GiB "
                  f"({peaks['fused'] / peaks['plain']:.3f}×)")


if __name__ == "__main__":
    main()
