"""Averaging gradients over processes in buckets: the same numbers as one all-reduce per tensor, fewer calls.

Two gloo processes on the CPU (``torch.multiprocessing.spawn``) average the same gradients both
ways; the per-tensor way is the trainer's former implementation, kept here as the reference.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainer.distributed import gradient_buckets

WORLD = 2
BUCKET_BYTES = 256
SPECS = [((3, 5), torch.float32), ((7,), torch.float32), ((2, 3, 4), torch.float64), ((1,), torch.float32),
         ((10, 10), torch.float32), ((16,), torch.float32), ((5,), torch.float64), ((4, 4), torch.float32),
         ((2,), torch.float32)]
"""Shapes and dtypes of the weights: two dtypes, and a 400-byte tensor larger than a bucket."""
MISSING_ON_RANK_0 = 3
"""This weight has a gradient in rank 1 only (a missing gradient counts as zero)."""
MISSING_EVERYWHERE = 7
"""This weight has no gradient in any process."""


def _weights(rank: int) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(1000 + rank)
    weights = [torch.nn.Parameter(torch.zeros(shape, dtype=dtype)) for shape, dtype in SPECS]
    for index, weight in enumerate(weights):
        if index == MISSING_EVERYWHERE or (index == MISSING_ON_RANK_0 and rank == 0):
            continue
        weight.grad = torch.randn(weight.shape, generator=generator, dtype=weight.dtype)
    return weights


def _per_tensor(weights, world: int) -> None:
    import torch.distributed as dist

    for weight in weights:
        if weight.grad is None:
            weight.grad = torch.zeros_like(weight)
        dist.all_reduce(weight.grad, op=dist.ReduceOp.SUM)
        weight.grad.div_(world)


def _worker(rank: int, rendezvous: str, out: str) -> None:
    import torch.distributed as dist

    from trainer import distributed

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=WORLD)
    try:
        reference, bucketed = _weights(rank), _weights(rank)
        _per_tensor(reference, WORLD)
        calls = []
        original = dist.all_reduce

        def counting(tensor, *args, **kwargs):
            calls.append((tensor.numel(), str(tensor.dtype)))
            return original(tensor, *args, **kwargs)

        dist.all_reduce = counting
        try:
            distributed.average_gradients(bucketed, WORLD, BUCKET_BYTES)
        finally:
            dist.all_reduce = original
        torch.save({"reference": [w.grad for w in reference], "bucketed": [w.grad for w in bucketed],
                    "calls": calls}, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_buckets_group_by_dtype_in_order_and_hold_about_the_bucket_size():
    weights = _weights(0)
    buckets = gradient_buckets(weights, BUCKET_BYTES)
    index = {id(w): i for i, w in enumerate(weights)}
    assert [[index[id(w)] for w in bucket] for bucket in buckets] == [[0, 1, 3], [2, 6], [4], [5, 7, 8]]
    for bucket in buckets:
        assert len({w.dtype for w in bucket}) == 1
        assert len(bucket) == 1 or sum(w.numel() * w.element_size() for w in bucket) <= BUCKET_BYTES
    # The grouping never looks at the gradients, so every process forms the same buckets.
    assert [len(b) for b in gradient_buckets(_weights(1), BUCKET_BYTES)] == [len(b) for b in buckets]
    assert len(gradient_buckets(weights)) == 2  # the default 25 MB: one bucket per dtype


@pytest.mark.slow
def test_bucketed_averaging_equals_one_all_reduce_per_tensor_with_fewer_calls(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=WORLD, join=True)
    results = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(WORLD)]
    expected_calls = len(gradient_buckets(_weights(0), BUCKET_BYTES))
    for result in results:
        assert len(result["bucketed"]) == len(SPECS)
        for index, (reference, bucketed) in enumerate(zip(result["reference"], result["bucketed"])):
            assert bucketed.dtype == reference.dtype and torch.equal(bucketed, reference), index
        # One all-reduce per bucket instead of one per tensor.
        assert len(result["calls"]) == expected_calls < len(SPECS)
    assert all(torch.equal(a, b) for a, b in zip(results[0]["bucketed"], results[1]["bucketed"]))
    # The missing gradients were zeros: half of rank 1's gradient, and zero where none had one.
    rank1 = _weights(1)
    assert torch.equal(results[0]["bucketed"][MISSING_ON_RANK_0], rank1[MISSING_ON_RANK_0].grad / 2)
    assert not results[0]["bucketed"][MISSING_EVERYWHERE].any()
