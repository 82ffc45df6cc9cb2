"""The guide's red flags: quiet on a healthy, noisy run; raised once, with advice, on a sick one.

The synthetic runs imitate diffusion loss: each step draws a random timestep, whose loss lies
anywhere between 0.02 and 0.4 (mostly low, sometimes high), times the run's level at that step.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from loratui.monitor.loss_history import LossHistory
from loratui.monitor.red_flags import (
    CODES,
    FLAT_FROM_STEP,
    FLAT_MIN_LATER,
    FLAT_Z_AT_END,
    FLAT_Z_AT_START,
    RedFlag,
    RedFlagWatch,
    RunFacts,
    detect,
    fall_z,
    flat_threshold,
)
from loratui.runs.state import RunState

GPU = "NVIDIA H200"


def _diffusion_losses(steps: int, level: Callable[[int], float], seed: int) -> list[float]:
    rng = random.Random(seed)
    return [level(t) * (0.02 + 0.38 * rng.random() ** 3) for t in range(1, steps + 1)]


def _healthy(t: int) -> float:
    """Falls by 40% over the first few hundred steps, gently enough to hide in the noise at first."""
    return 0.6 + 0.4 * math.exp(-t / 150)


def _watch(losses: list[float | None], device: str = GPU, seconds_per_step: float = 2.0) -> list[RedFlag]:
    """Every flag a watch raises while the run goes on, checked after each step as the monitor would."""
    history, watch, raised = LossHistory(), RedFlagWatch(), []
    for step, loss in enumerate(losses, start=1):
        history.add(step, loss, 1e-4)
        raised += watch.update(history, RunFacts(step=step, total_steps=len(losses),
                                                 seconds_per_step=seconds_per_step, device=device))
    return raised


@pytest.mark.parametrize("seed", range(5))
def test_a_healthy_noisy_run_raises_nothing(seed):
    losses = _diffusion_losses(2000, _healthy, seed)
    assert min(losses) < 0.03 and max(losses) > 0.3  # the noise really spans the normal range
    assert _watch(losses) == []


def test_single_step_spikes_are_normal_noise():
    losses = _diffusion_losses(1000, _healthy, seed=7)
    for step in (150, 300, 301, 600, 900):
        losses[step] = 1.2  # a few steps at several times the usual loss
    assert _watch(losses) == []


def test_a_flat_run_is_flagged_once_never_before_step_100():
    caught = []
    for seed in range(20):
        raised = _watch(_diffusion_losses(2000, lambda t: 1.0, seed))
        assert [flag.code for flag in raised] in ([], ["loss_flat"])
        assert all("than in the first 100" in flag.advice for flag in raised)
        caught += [flag.step for flag in raised]
    # The earliest verdict needs the first 100 losses and 50 more.
    assert min(caught) >= FLAT_FROM_STEP + FLAT_MIN_LATER
    # A flat run whose first 100 steps happened to be high looks like a fall; most are caught.
    assert len(caught) >= 14


@pytest.mark.parametrize("seed", range(5))
def test_a_rising_loss_is_flagged_sooner_than_a_flat_one(seed):
    raised = _watch(_diffusion_losses(500, lambda t: 1.0 + t / 400, seed), device="cpu")  # up to 2.25 × the start
    assert raised[0].code == "loss_flat"
    assert FLAT_FROM_STEP + FLAT_MIN_LATER <= raised[0].step <= 400
    assert "higher than in the first 100" in raised[0].advice


def test_the_flat_bar_eases_from_clearly_higher_to_merely_not_lower():
    assert flat_threshold(0) == flat_threshold(FLAT_FROM_STEP) == FLAT_Z_AT_START
    assert flat_threshold(1000) == flat_threshold(10**6) == FLAT_Z_AT_END
    assert FLAT_Z_AT_START < flat_threshold(550) < FLAT_Z_AT_END


def test_fall_z_measures_the_fall_in_standard_errors():
    rng = random.Random(0)
    early = tuple(rng.gauss(1.0, 0.1) for _ in range(100))
    assert fall_z(early, tuple(v - 0.5 for v in early)) > 20
    assert fall_z(early, tuple(v + 0.5 for v in early)) < -20
    assert abs(fall_z(early, early)) < 1e-9
    assert fall_z(early, (1.0,)) is None


def test_a_constant_loss_is_not_read_as_a_rise_in_rounding_errors():
    # 0.1 cannot be held exactly, so two windows of it can differ in the last bit.
    assert fall_z((0.1,) * 100, (0.1,) * 200) == 0.0
    assert _watch([0.1] * 3000, device="cpu") == []


@pytest.mark.parametrize("seed", range(3))
def test_a_loss_swinging_between_0_1_and_1_5_is_flagged(seed):
    def swinging(t: int) -> float:
        return (0.8 + 0.7 * math.sin(2 * math.pi * t / 200)) / 0.115  # the smoothed loss spans 0.1–1.5

    raised = _watch(_diffusion_losses(2000, swinging, seed))
    assert "loss_oscillating" in [flag.code for flag in raised]
    assert "loss_flat" not in [flag.code for flag in raised]


def test_an_exploding_loss_is_flagged():
    losses = _diffusion_losses(600, lambda t: 1.0 if t < 300 else math.exp((t - 300) / 60), seed=1)
    raised = _watch(losses, device="cpu")
    swing = [flag for flag in raised if flag.code == "loss_oscillating"]
    assert len(swing) == 1 and 300 < swing[0].step < 450
    assert "times the loss at the start" in swing[0].advice
    assert all(flag.step > 300 for flag in raised)


def test_out_of_memory_is_flagged_with_memory_advice():
    flags = detect(LossHistory(), RunFacts(step=3, error_code="oom"))
    assert [(flag.code, flag.step) for flag in flags] == [("oom", 3)]
    assert "batch size 1" in flags[0].advice and "gradient_checkpointing" in flags[0].advice


def test_a_loss_that_is_not_a_number_is_flagged_at_its_step():
    history = LossHistory.from_losses([0.1] * 40 + [None] + [0.1] * 9)
    flags = detect(history, RunFacts(step=50))
    assert [(flag.code, flag.step) for flag in flags] == [("nan", 41)]
    assert "bf16" in flags[0].advice


def test_the_trainers_nan_error_is_flagged():
    flags = detect(LossHistory.from_losses([0.1] * 10), RunFacts(step=12, error_code="nan"))
    assert [(flag.code, flag.step) for flag in flags] == [("nan", 12)]


def test_an_unrelated_error_raises_no_flag():
    assert detect(LossHistory(), RunFacts(step=0, error_code="dataset")) == []


@pytest.mark.parametrize(("device", "step", "seconds_per_step", "expected"), [
    (GPU, 20, 1.0, True),              # 500 steps × 1 s: about 8 minutes
    (GPU, 19, 1.0, False),             # the pace is not known yet
    ("cpu", 200, 1.0, False),          # a CPU run's pace says nothing about its steps
    (GPU, 20, 3.6, False),             # exactly 30 minutes
    (GPU, 20, 3.5, True),              # just under
    (GPU, 20, None, False),
    (None, 20, 1.0, False),            # the start event has not been seen
])
def test_too_fast_only_on_a_gpu_with_a_known_pace(device, step, seconds_per_step, expected):
    facts = RunFacts(step=step, total_steps=500, seconds_per_step=seconds_per_step, device=device)
    flags = detect(LossHistory(), facts)
    assert [flag.code for flag in flags] == (["too_fast"] if expected else [])
    if expected:
        assert "500 steps" in flags[0].advice and "500–750" in flags[0].advice


def test_the_watch_raises_each_flag_once_per_run():
    history = LossHistory.from_losses([0.1, None, 0.1])
    facts = RunFacts(step=30, total_steps=100, seconds_per_step=1.0, device=GPU, error_code="oom")
    watch = RedFlagWatch()
    first = watch.update(history, facts)
    assert [flag.code for flag in first] == ["oom", "nan", "too_fast"]
    assert watch.update(history, facts) == []
    assert watch.raised == first
    watch.reset()
    assert watch.update(history, facts) == first


def test_detect_is_pure_and_reports_in_a_fixed_order():
    history = LossHistory.from_losses([0.1, None])
    facts = RunFacts(step=40, total_steps=100, seconds_per_step=1.0, device=GPU, error_code="oom")
    first, again = detect(history, facts), detect(history, facts)
    assert first == again and history.steps_seen == 2
    codes = [flag.code for flag in first]
    assert codes == sorted(codes, key=CODES.index)


def test_facts_come_from_the_folded_run_state():
    state = RunState()
    state.apply({"type": "start", "total_steps": 400, "device": GPU})
    for step in range(1, 31):
        state.apply({"type": "step", "step": step, "total_steps": 400, "loss": 0.1, "lr": 1e-4,
                     "seconds_per_step": 0.5})
    facts = RunFacts.from_state(state, GPU)
    assert (facts.step, facts.total_steps, facts.seconds_per_step, facts.device) == (30, 400, 0.5, GPU)
    assert [flag.code for flag in detect(LossHistory(), facts)] == ["too_fast"]
