"""The pace, clock and sampling progress folded from a run's events, and the lines that show them."""

from __future__ import annotations

import re

import pytest

from loratui.runs.state import (
    PACE_MEMORY_STEPS,
    RunState,
    clock_figures,
    describe_event,
    fit_figures,
    progress_line,
    step_figures,
)


def _start(time: float, total: int = 1000, resumed: int | None = None) -> dict:
    return {"type": "start", "time": time, "images": 20, "total_steps": total, "epochs": 10, "device": "cpu",
            "precision": "fp32", "resumed_from_step": resumed}


def _step(step: int, time: float, seconds: float, total: int = 1000) -> dict:
    return {"type": "step", "time": time, "step": step, "total_steps": total, "epoch": 1 + step // 100,
            "loss": 0.1, "lr": 1e-4, "seconds_per_step": seconds}


def _speed_unit(line: str) -> str:
    return re.search(r"(s/it|it/s)", line).group(1)


def test_a_pace_wobbling_around_one_step_a_second_keeps_one_unit_and_a_steady_eta():
    # Steps alternate between 0.7 s and 1.23 s (bucket sizes, a busy machine): before, the line flipped
    # between "1.4 it/s" and "1.23 s/it" and the ETA jumped with it.
    state = RunState()
    state.apply(_start(0))
    clock, units, etas = 0.0, [], []
    for step in range(1, 401):
        seconds = 0.7 if step % 2 else 1.23
        clock += seconds
        state.apply(_step(step, clock, seconds))
        if step > 1:
            units.append(_speed_unit(progress_line(state)))
            etas.append(state.eta_seconds)
    assert set(units) == {"s/it"}
    # The smoothed pace is the true mean within a few percent, so the ETA is the true time left.
    assert state.seconds_per_step == pytest.approx((0.7 + 1.23) / 2, rel=0.05)
    assert state.eta_seconds == pytest.approx(600 * 0.965, rel=0.05)
    # From one step to the next the ETA moves by seconds, never by minutes (before: by 25 s every step).
    assert max(abs(a - b) for a, b in zip(etas[50:], etas[51:])) < 10.0


def test_the_unit_changes_only_across_the_wide_band_between_two_paces():
    state = RunState()
    state.apply(_start(0))
    clock, seen = 0.0, []
    # Fast at first (0.3 s), then far slower (2 s): the unit changes once, when the pace is past 1 s.
    for step in range(1, 401):
        seconds = 0.3 if step <= 200 else 2.0
        clock += seconds
        state.apply(_step(step, clock, seconds))
        unit = state.speed_unit
        if not seen or seen[-1] != unit:
            seen.append(unit)
    assert seen == ["it/s", "s/it"]
    assert state.seconds_per_step > 1.0


def test_the_first_step_of_each_process_carries_its_warm_up_and_is_left_out():
    state = RunState()
    state.apply(_start(0))
    state.apply(_step(1, 30, 30.0))  # compiling, caches filling
    assert state.seconds_per_step == 30.0  # the only figure so far
    for step in range(2, 12):
        state.apply(_step(step, 30 + step, 1.0))
    assert state.seconds_per_step == pytest.approx(1.0)
    state.apply({"type": "stopped", "time": 45, "step": 11, "reason": "SIGTERM"})
    # A resumed process warms up again: its first step does not move the pace.
    state.apply(_start(1000, resumed=11))
    state.apply(_step(12, 1040, 40.0))
    assert state.seconds_per_step == pytest.approx(1.0)


def test_the_average_forgets_old_steps_within_its_memory():
    state = RunState()
    state.apply(_start(0))
    for step in range(1, 201):
        state.apply(_step(step, step, 1.0))
    for step in range(201, 201 + 3 * PACE_MEMORY_STEPS):
        state.apply(_step(step, step, 2.0))
    assert state.seconds_per_step == pytest.approx(2.0, rel=0.06)


def test_elapsed_counts_training_time_only_not_the_pause_before_a_resume():
    state = RunState()
    state.apply({"type": "status", "time": 0, "phase": "loading", "message": "Loading"})
    state.apply(_start(10))
    for step in range(1, 101):
        state.apply(_step(step, 10 + step, 1.0))  # first step at 11, last at 110
    state.apply({"type": "stopped", "time": 112, "step": 100, "reason": "SIGTERM"})
    assert state.elapsed_seconds == pytest.approx(101)
    # A day later the run is resumed: the day is not training time.
    later = 86_400
    state.apply({"type": "status", "time": later, "phase": "loading", "message": "Loading"})
    state.apply(_start(later + 5, resumed=100))
    assert state.elapsed_seconds == pytest.approx(101)
    for step in range(101, 151):
        state.apply(_step(step, later + 5 + (step - 100), 1.0))  # 106 … 155 after the day
    assert state.elapsed_seconds == pytest.approx(101 + 49)
    # Between events a live run's clock goes on (the monitor redraws it on a timer) ...
    assert state.elapsed_at(later + 75) == pytest.approx(101 + 69)
    done = {"type": "done", "time": later + 60, "step": 150, "output": "x.safetensors", "seconds": 60.0}
    state.apply(done)
    # ... and a finished run's clock stops at its last event, whenever it is looked at.
    assert state.elapsed_at(later + 10_000) == pytest.approx(101 + 54)
    assert "elapsed 2:35" in progress_line(state)
    # The log's last line gives the whole run's training time, not the last process's minute.
    assert "done in 2:35: x.safetensors" in describe_event(done, state)


def test_a_process_that_died_without_a_final_event_ends_its_time_at_its_last_event():
    state = RunState()
    state.apply(_start(0))
    for step in range(1, 11):
        state.apply(_step(step, step, 1.0))
    # Killed after step 10 (no final event); resumed an hour later.
    state.apply({"type": "status", "time": 3600, "phase": "loading", "message": "Loading"})
    assert state.elapsed_seconds == pytest.approx(9)
    state.apply(_start(3610, resumed=10))
    state.apply(_step(11, 3611, 1.0))
    state.apply(_step(12, 3612, 1.0))
    assert state.elapsed_seconds == pytest.approx(10)


def test_sampling_progress_counts_the_pictures_of_the_round():
    state = RunState()
    state.apply(_start(0))
    state.apply(_step(1, 1, 1.0))
    state.apply({"type": "status", "time": 2, "phase": "sampling", "message": "Drawing 4 sample images at step 1",
                 "current": 0, "total": 4})
    assert state.sample_progress == (1, 4)
    state.apply({"type": "sample", "time": 3, "step": 1, "path": "p00-w0.7.png", "strength": 0.7,
                 "index": 1, "total": 4})
    assert state.sample_progress == (2, 4)
    state.apply({"type": "sample", "time": 4, "step": 1, "path": "p00-w1.0.png", "strength": 1.0,
                 "index": 2, "total": 4})
    assert state.sample_progress == (3, 4)
    state.apply(_step(2, 5, 1.0))
    assert state.phase == "training" and state.sample_progress is None


def test_a_line_that_does_not_fit_drops_whole_figures_never_cuts_one():
    state = RunState()
    state.apply(_start(0, total=10_000))
    state.apply({**_step(1, 1, 1.23, total=10_000), "vram_peak_gib": 6.5, "vram_total_gib": 24.0})
    state.apply({**_step(2, 1400, 1.23, total=10_000), "vram_peak_gib": 6.5, "vram_total_gib": 24.0})
    full = progress_line(state)
    assert "GPU 6.5/24 GiB" in full and "ETA 3:24:58" in full and len(full) > 76
    fitted = progress_line(state, width=76)
    assert len(fitted) <= 76
    figures = fitted.split(" · ")
    assert set(figures) <= set(full.split(" · "))  # whole figures only
    # The most important ones stay: where the run is, its loss, its pace and the time left.
    assert {"step 2/10000", "loss 0.1000", "1.23 s/it", "ETA 3:24:58"} <= set(figures)
    # Each of the monitor's two lines fits too.
    assert len(fit_figures(step_figures(state), 40)) <= 40
    assert fit_figures(clock_figures(state), 14) == "ETA 3:24:58"
