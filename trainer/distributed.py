"""Several training processes (one per GPU) started by ``accelerate launch``: data parallelism.

Every process holds the whole model and the same LoRA, trains on its own share of each epoch's
batches, and averages its LoRA gradients with the others before each optimizer step, so the
weights stay identical everywhere (exactly what DistributedDataParallel does for the few LoRA
weights, without wrapping the network). Rank 0 alone writes the run folder.

``Ranks`` reads the launcher's environment and imports no torch, so the process entry can decide
who writes events before torch is loaded; the rest imports torch when called.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Ranks:
    """Where this process stands among the training processes (rank 0 of 1 when alone)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes the run folder (events, pid, checkpoints, samples, the LoRA)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def ranks_from_env() -> Ranks:
    """The ranks torch's launcher (under ``accelerate launch``) puts in the environment."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Ranks()
    return Ranks(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def init_process_group(ranks: Ranks):
    """Join the other processes (NCCL on GPUs, gloo on CPUs); return this process's device."""
    import torch
    import torch.distributed as dist

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(ranks.local_rank)
    if not dist.is_initialized():
        # Rank 0 encodes the latents while the others wait at a barrier; the default timeout
        # (10-30 minutes) is shorter than encoding a large dataset can take.
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(hours=3))
    return torch.device("cuda", ranks.local_rank) if cuda else torch.device("cpu")


def barrier() -> None:
    import torch.distributed as dist

    dist.barrier()


def broadcast_parameters(params) -> None:
    """Give every process rank 0's weights (the starting LoRA must be the same everywhere)."""
    import torch.distributed as dist

    for param in params:
        dist.broadcast(param.data, src=0)


BUCKET_BYTES = 25 * 2**20
"""Gradient bytes per all-reduce: DistributedDataParallel's default bucket size."""


def gradient_buckets(params, bucket_bytes: int = BUCKET_BYTES) -> list[list]:
    """``params`` in all-reduce groups: same dtype and device, in order, each about ``bucket_bytes``.

    The grouping depends only on the weights (never on which got a gradient), so every process
    forms the same buckets and joins the same all-reduces in the same order.
    """
    buckets: list[list] = []
    filled: list[int] = []  # bytes in each bucket
    current: dict[tuple, int] = {}  # (dtype, device) -> the index of the bucket being filled
    for param in params:
        kind = (param.dtype, param.device)
        size = param.numel() * param.element_size()
        index = current.get(kind)
        if index is None or filled[index] + size > bucket_bytes:
            index = current[kind] = len(buckets)
            buckets.append([])
            filled.append(0)
        buckets[index].append(param)
        filled[index] += size
    return buckets


def average_gradients(params, world: int, bucket_bytes: int = BUCKET_BYTES) -> None:
    """Average the gradients of ``params`` over the processes (a missing gradient counts as zero).

    Why buckets: an SDXL LoRA has over a thousand small gradient tensors, and one all-reduce per
    tensor pays a collective's fixed latency (a kernel launch and a network round trip with NCCL)
    a thousand times per step. The gradients are copied into one flat buffer per bucket of about
    25 MB, reduced with one call per bucket and copied back. Each element is summed as before:
    bit for bit the same with two processes (with more, NCCL may add them in another order).
    """
    import torch
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    params = list(params)
    for param in params:
        if param.grad is None:
            # Every process must join every all-reduce, even for a weight that got no gradient.
            param.grad = torch.zeros_like(param)
    for bucket in gradient_buckets(params, bucket_bytes):
        grads = [param.grad for param in bucket]
        if len(grads) == 1:
            flat = grads[0]  # reduced in place: nothing to gain from a copy
        else:
            flat = _flatten_dense_tensors(grads)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(world)
        if len(grads) > 1:
            for grad, averaged in zip(grads, _unflatten_dense_tensors(flat, grads)):
                grad.copy_(averaged)


def mean_over_processes(value: float, device) -> float:
    """The mean of one number over the processes (NaN anywhere makes it NaN everywhere)."""
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.item() / dist.get_world_size()


def any_over_processes(flags: list[bool], device) -> list[bool]:
    """Each flag set if any process set it: stops and requests must be acted on by all at the same step."""
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([int(f) for f in flags], dtype=torch.int64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [bool(v) for v in tensor.tolist()]


def shutdown() -> None:
    """Leave the process group (nothing when there is none)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
