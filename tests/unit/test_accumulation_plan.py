"""Gradient accumulation in the app's numbers: the plan, the guide's formula, the advice's fixes, the time."""

from __future__ import annotations

from pathlib import Path

from loratui.estimates import duration_estimate
from loratui.summary import formula_words
from tests.unit.test_rules import fired, make
from trainer.contract.dataset_scan import DatasetImage
from trainer.contract.plan import plan_steps, steps_per_epoch


def _images(count: int, repeats: int) -> list[DatasetImage]:
    return [DatasetImage(Path(f"/d/{i}.png"), None, 512, 512, repeats) for i in range(count)]


def test_a_step_is_an_update_of_every_process_and_accumulated_batch():
    images = _images(10, 3)  # one bucket, 30 samples an epoch: 15 batches of 2
    plain = plan_steps(images, 512, batch_size=2, epochs=4)
    assert (plain.batches_per_epoch, plain.total_steps, plain.formula_steps) == (15, 60, 60)
    accumulated = plan_steps(images, 512, batch_size=2, epochs=4, accumulation=4)
    # ceil(15 / 4) = 4 updates an epoch (3 of 4 batches, the last of 3), as sd-scripts counts them.
    assert (accumulated.total_steps, accumulated.formula_steps, accumulated.effective_batch) == (16, 15, 8)
    both = plan_steps(images, 512, batch_size=2, epochs=4, accumulation=4, processes=2)
    # Each of 2 processes takes 7 of the 15 batches (the odd one is dropped): ceil(7 / 4) = 2 updates.
    assert (both.total_steps, both.formula_steps, both.effective_batch) == (8, 7.5, 16)
    assert [steps_per_epoch(n, 3) for n in range(1, 8)] == [1, 1, 1, 2, 2, 2, 3]


def test_the_formula_names_the_effective_batch():
    plan = plan_steps(_images(10, 3), 512, batch_size=2, epochs=4, accumulation=4, processes=2)
    words = formula_words(plan)
    assert "÷ batch 2 × 4 accumulated × 2 processes (16) = 7.5" in words and words.endswith("so 8")
    assert "÷ batch 2 = 60" in formula_words(plan_steps(_images(10, 3), 512, batch_size=2, epochs=4))


def test_the_step_fix_counts_updates_and_lands_where_it_says():
    context = make(25, training__epochs=2, training__gradient_accumulation_steps=4)
    assert context.plan.total_steps == -(-context.plan.batches_per_epoch // 4) * 2
    (finding,) = fired(context, "steps.range")
    fixed = finding.fix.apply(context.config)
    images = list(context.scan.images)
    if "dataset.repeats" in finding.fix.changes:
        images = [DatasetImage(i.path, i.caption_path, i.width, i.height, fixed.dataset.repeats) for i in images]
    after = plan_steps(images, 1024, fixed.training.batch_size, fixed.training.epochs, accumulation=4)
    assert f"({after.total_steps} steps)" in finding.fix.label
    assert 500 <= after.total_steps <= 750


def test_a_step_of_accumulated_batches_takes_their_time():
    one = duration_estimate("NVIDIA H200", "sdxl", 1024, 4, False, total_steps=100)
    four = duration_estimate("NVIDIA H200", "sdxl", 1024, 4, False, total_steps=100, accumulation=4)
    assert four.seconds_per_step_low == 4 * one.seconds_per_step_low
    assert four.total_seconds_high == 4 * one.total_seconds_high
