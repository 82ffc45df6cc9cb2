"""The bounded loss history: its buckets, its plot series and what it keeps for the red flags."""

from __future__ import annotations

import math
import random

import pytest

from loratui.monitor.loss_history import EARLY_SIZE, RECENT_SIZE, SMOOTHING, LossHistory


def _random_losses(count: int, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [0.02 + 0.38 * rng.random() ** 3 for _ in range(count)]


def test_a_constant_loss_is_smoothed_to_exactly_that_constant_from_the_first_step():
    history = LossHistory.from_losses([0.25] * 500)
    series = history.series()
    assert len(series) == 500
    assert series.smoothed == pytest.approx([0.25] * 500, rel=1e-12)
    assert history.smoothed == pytest.approx(0.25, rel=1e-12)


def test_the_smoothed_loss_is_a_bias_corrected_moving_average():
    history = LossHistory()
    history.add(1, 1.0, None)
    assert history.smoothed == pytest.approx(1.0)  # not dragged towards 0 by the empty start
    history.add(2, 0.0, None)
    # (0.98 * 0.02 * 1.0 + 0.02 * 0.0) / (1 - 0.98 ** 2): the first loss weighs a little more.
    expected = SMOOTHING * (1 - SMOOTHING) / (1 - SMOOTHING ** 2)
    assert history.smoothed == pytest.approx(expected)
    assert 0.49 < expected < 0.51


def test_losses_that_are_not_finite_are_counted_but_not_plotted():
    history = LossHistory()
    values = [0.1, None, 0.2, math.nan, 0.3, math.inf]
    for step, loss in enumerate(values, start=1):
        history.add(step, loss, 1e-4)
    series = history.series()
    assert series.steps == [1.0, 3.0, 5.0]
    assert series.loss == pytest.approx([0.1, 0.2, 0.3])
    assert (history.steps_seen, len(history), history.last_step) == (6, 6, 6)
    assert (history.finite_count, history.nonfinite_count, history.first_nonfinite_step) == (3, 3, 2)
    assert history.recent == pytest.approx((0.1, 0.2, 0.3))
    assert history.smoothed is not None and math.isfinite(history.smoothed)


def test_downsampling_averages_neighbours_and_keeps_the_mean():
    losses = _random_losses(1000)
    series = LossHistory.from_losses(losses, capacity=4096).series(width=10)
    assert len(series) == 10
    for i, value in enumerate(series.loss):
        assert value == pytest.approx(sum(losses[i * 100:(i + 1) * 100]) / 100)
    assert sum(series.loss) / 10 == pytest.approx(sum(losses) / 1000)
    assert series.steps == pytest.approx([i * 100 + 50.5 for i in range(10)])


def test_merging_buckets_keeps_the_mean_and_covers_the_whole_run():
    losses = _random_losses(1024, seed=1)
    history = LossHistory.from_losses(losses, capacity=8)
    assert (history.bucket_count, history.bucket_width) == (8, 128)
    series = history.series()
    assert sum(series.loss) / len(series) == pytest.approx(sum(losses) / len(losses))
    assert series.steps == pytest.approx([i * 128 + 64.5 for i in range(8)])


@pytest.mark.parametrize("width", [1, 2, 7, 100, 999, 1000, 5000, None])
def test_the_width_limit_holds_and_steps_keep_increasing(width):
    history = LossHistory.from_losses(_random_losses(3000, seed=2), capacity=1000)
    series = history.series(width)
    assert len(series) == min(width or history.bucket_count, history.bucket_count)
    assert len(series.steps) == len(series.loss) == len(series.smoothed) == len(series.lr)
    assert all(a < b for a, b in zip(series.steps, series.steps[1:]))


def test_a_million_steps_stay_within_capacity_and_the_plot_still_shows_the_whole_run():
    history = LossHistory(capacity=2048)
    add = history.add
    for step in range(1, 1_000_001):
        add(step, 0.1 + (step % 7) * 0.01, 1e-4)
    assert history.bucket_count <= 2048
    assert (history.steps_seen, history.last_step, history.finite_count) == (1_000_000, 1_000_000, 1_000_000)
    width = history.bucket_width
    series = history.series()
    assert series.steps[0] <= width and series.steps[-1] >= 1_000_000 - width
    assert len(history.series(300)) == 300
    assert (len(history.recent), len(history.early)) == (RECENT_SIZE, EARLY_SIZE)


def test_the_learning_rate_is_averaged_and_carried_over_gaps():
    history = LossHistory(capacity=4)
    for step in range(1, 9):
        history.add(step, 0.1, 1e-4 if step <= 4 else None if step <= 6 else 3e-4)
    # Eight steps in four buckets of two: rates 1e-4, 1e-4, none (carried over), 3e-4.
    assert history.series().lr == pytest.approx([1e-4, 1e-4, 1e-4, 3e-4])


def test_repeated_steps_after_a_resume_replace_the_earlier_ones():
    history = LossHistory()
    for step in range(1, 301):
        history.add(step, 0.5, 1e-4)
    for step in range(251, 401):  # the trainer resumed from a checkpoint at step 250
        history.add(step, 0.1, 1e-4)
    series = history.series()
    assert series.steps == [float(s) for s in range(1, 401)]
    assert series.loss == pytest.approx([0.5] * 250 + [0.1] * 150)
    assert (history.steps_seen, history.finite_count, history.last_step) == (400, 400, 400)
    assert history.recent == pytest.approx((0.5,) * 50 + (0.1,) * 150)


def test_a_resume_into_the_first_steps_refills_the_start():
    history = LossHistory(early_size=10)
    for step in range(1, 21):
        history.add(step, 1.0, None)
    for step in range(6, 21):
        history.add(step, 2.0, None)
    assert history.early == (1.0,) * 5 + (2.0,) * 5


def test_recent_and_early_are_bounded():
    history = LossHistory.from_losses([float(i) for i in range(1, 1001)], recent_size=20, early_size=5)
    assert history.early == (1.0, 2.0, 3.0, 4.0, 5.0)
    assert history.recent == tuple(float(i) for i in range(981, 1001))
    assert history.early_size == 5


def test_reset_forgets_the_run():
    history = LossHistory.from_losses([0.1, None, 0.3])
    history.reset()
    assert (len(history), history.last_step, history.bucket_count, history.nonfinite_count) == (0, 0, 0, 0)
    assert history.smoothed is None and history.recent == () and history.early == ()
    assert len(history.series()) == 0
    history.add(1, 0.4, None)
    assert history.series().loss == pytest.approx([0.4])


def test_impossible_sizes_are_refused():
    with pytest.raises(ValueError, match="capacity"):
        LossHistory(capacity=1)
    with pytest.raises(ValueError, match="width"):
        LossHistory.from_losses([0.1]).series(width=0)
