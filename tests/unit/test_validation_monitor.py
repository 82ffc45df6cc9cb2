"""The validation loss in the monitor: kept in the history, drawn on the plot, summarised, and the
red flag for a validation loss that rises while the training loss falls (synthetic curves and the
stand-in trainer)."""

from __future__ import annotations

import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from loratui.monitor.loss_history import VALIDATION_CAPACITY, LossHistory
from loratui.monitor.plot import colours_from_theme, render_loss_plot
from loratui.monitor.red_flags import VAL_MIN_RISE, VAL_RISES, RedFlagWatch, RunFacts, detect
from loratui.runs.follower import RunFollower
from loratui.runs.state import RunState, describe_event, step_figures
from loratui.themes import LORATUI_THEME
from trainer.contract.config.schema import Config, with_value
from trainer.contract.rundir import create_run_dir

FAKE_TRAINER = Path(__file__).resolve().parents[1] / "fake_trainer.py"
EVERY = 50


def _history(steps: int, validation: list[float], train_level=lambda t: 0.06 + 0.1 * math.exp(-t / 400),
             seed: int = 3) -> LossHistory:
    """Noisy diffusion-like training losses, with ``validation[k]`` measured after step (k + 1) × EVERY."""
    rng = random.Random(seed)
    history = LossHistory()
    points = iter(validation)
    for step in range(1, steps + 1):
        history.add(step, train_level(step) * rng.uniform(0.25, 1.75), 1e-4)
        if step % EVERY == 0:
            value = next(points, None)
            if value is not None:
                history.add_validation(step, value)
    return history


def _codes(history: LossHistory) -> list[str]:
    return [flag.code for flag in detect(history, RunFacts(step=history.last_step, total_steps=1000))]


def test_three_rises_while_training_falls_raise_the_flag():
    falling_then_rising = [0.30, 0.25, 0.21, 0.19, 0.20, 0.22, 0.25]
    history = _history(len(falling_then_rising) * EVERY, falling_then_rising)
    (flag,) = [f for f in detect(history, RunFacts(step=history.last_step)) if f.code == "overfitting"]
    assert flag.step == history.last_step
    assert "step 200" in flag.advice and "step 350" in flag.advice  # from the low to the newest
    assert "training.epochs" in flag.advice and "checkpoint" in flag.advice
    # One validation earlier, with only two rises, it is not raised yet.
    assert "overfitting" not in _codes(_history(6 * EVERY, falling_then_rising[:6]))


@pytest.mark.parametrize("curve, why", [
    ([0.30, 0.25, 0.26, 0.22, 0.23, 0.20, 0.21], "single noisy rises between falls"),
    ([0.30, 0.25, 0.21, 0.22, 0.21, 0.22, 0.23], "a rise broken by a fall"),
    ([0.300, 0.250, 0.210, 0.2101, 0.2102, 0.2103, 0.2104], f"rises under {VAL_MIN_RISE:.0%} in all"),
    ([0.30, 0.25, 0.21, 0.19, 0.17, 0.16, 0.155], "a healthy fall"),
])
def test_noise_and_health_raise_no_flag(curve, why):
    assert "overfitting" not in _codes(_history(len(curve) * EVERY, curve)), why


def test_no_flag_when_the_training_loss_rises_too():
    """Both rising is a run going wrong as a whole, not the held-out images being left behind."""
    rising = [0.20, 0.21, 0.23, 0.26, 0.30]
    history = _history(len(rising) * EVERY, rising, train_level=lambda t: 0.05 + t / 1000)
    assert "overfitting" not in _codes(history)


def test_the_flag_is_raised_once():
    watch = RedFlagWatch()
    curve = [0.30, 0.25, 0.21, 0.22, 0.24, 0.27]
    history = _history(len(curve) * EVERY, curve)
    assert [f.code for f in watch.update(history, RunFacts(step=history.last_step))] == ["overfitting"]
    history.add_validation(history.last_step + 1, 0.3)
    assert watch.update(history, RunFacts(step=history.last_step)) == []
    assert VAL_RISES == 3


def test_the_history_keeps_validation_points_with_the_training_loss_of_their_step():
    history = LossHistory()
    for step in range(1, 11):
        history.add(step, 0.5, 1e-4)
        if step % 5 == 0:
            history.add_validation(step, 0.1 * step)
    history.add_validation(11, math.nan)  # not a number: left out
    history.add_validation(12, None)
    assert [(p.step, p.loss) for p in history.validation] == [(5, 0.5), (10, 1.0)]
    assert [p.training_loss for p in history.validation] == pytest.approx([0.5, 0.5])  # the smoothed 0.5
    series = history.series(4)
    assert series.validation_steps == [5.0, 10.0] and series.validation_loss == [0.5, 1.0]
    # A resumed run repeats steps from 8: the validation after step 10 belongs to the abandoned steps.
    history.add(8, 0.4, 1e-4)
    assert [p.step for p in history.validation] == [5]


def test_the_history_keeps_the_validation_points_bounded_and_the_newest():
    history = LossHistory()
    count = VALIDATION_CAPACITY * 3
    for step in range(1, count + 1):
        history.add_validation(step, 1.0 / step)
    points = history.validation
    assert len(points) <= VALIDATION_CAPACITY and points[-1].step == count and points[0].step == 1
    assert [p.step for p in points] == sorted(p.step for p in points)


def _colour_cells(text, rgb) -> int:
    return sum(span.end - span.start for span in text.spans
               if not isinstance(span.style, str) and span.style.color and span.style.color.triplet
               and tuple(span.style.color.triplet) == rgb)


def test_the_plot_draws_the_validation_curve_in_its_colour_and_names_it():
    colours = colours_from_theme(LORATUI_THEME)
    assert colours.validation not in (colours.loss, colours.smoothed, colours.lr, colours.foreground)
    steps = [float(i) for i in range(1, 201)]
    loss = [0.1 + 0.2 / (1 + i / 20) for i in range(200)]
    plain = render_loss_plot(steps, loss, loss, [], 80, 16, colours)
    assert _colour_cells(plain, colours.validation) == 0 and "validation" not in plain.plain
    # A validation loss above every training loss: the axis must reach it, and the curve is drawn.
    text = render_loss_plot(steps, loss, loss, [], 80, 16, colours, validation_steps=[50, 100, 150, 200],
                            validation_loss=[0.6, 0.7, 0.8, 0.9])
    assert "━ validation" in text.plain.split("\n")[0]
    assert _colour_cells(text, colours.validation) > 4  # the legend's mark and the curve's cells
    assert "0.9" in text.plain  # the top tick is the highest validation loss
    narrow = render_loss_plot(steps, loss, loss, [1e-4] * 200, 40, 14, colours, title="a-long-run-name",
                              validation_steps=[100], validation_loss=[0.3])
    assert "val" in narrow.plain.split("\n")[0]


def test_the_run_state_and_log_show_the_latest_validation_loss():
    state = RunState()
    state.apply({"type": "start", "total_steps": 100, "epochs": 2, "images": 9})
    state.apply({"type": "step", "step": 50, "total_steps": 100, "epoch": 1, "loss": 0.2, "lr": 1e-4})
    event = {"type": "validation", "step": 50, "epoch": 1, "loss": 0.12345, "images": 3, "timesteps": 5}
    state.apply(event)
    assert (state.validation_loss, state.validation_step) == (0.12345, 50)
    assert "val 0.1235" in [text for _, text in step_figures(state)]
    assert "validation loss at step 50: 0.1235 (3 held-out images)" in describe_event(event, state)
    state.apply({**event, "step": 60, "loss": None})  # a loss that was not finite keeps the last known one
    assert state.validation_loss == 0.12345


def _follow_fake(tmp_path: Path, scenario: str) -> tuple[list[str], RunFollower]:
    run = create_run_dir(with_value(Config(), "output.dir", str(tmp_path)))
    subprocess.run([sys.executable, str(FAKE_TRAINER), str(run.root), "--steps", "600", "--rate", "0",
                    "--scenario", scenario, "--validate-every", "50"], check=True, stdout=subprocess.DEVNULL,
                   timeout=60)
    follower = RunFollower(run)
    codes = []
    while True:
        batch = follower.poll()
        codes += [flag.code for flag in batch.flags]
        if batch.exited:
            return codes, follower


def test_the_fake_trainers_overfitting_run_raises_the_flag_and_its_healthy_one_does_not(tmp_path):
    codes, follower = _follow_fake(tmp_path / "over", "overfitting")
    assert "overfitting" in codes
    assert follower.state.validation_loss is not None and len(follower.history.validation) == 12
    codes, follower = _follow_fake(tmp_path / "fine", "healthy")
    assert "overfitting" not in codes and len(follower.history.validation) == 12
