"""The monitor, driven by a stand-in trainer that writes canned events (tests/fake_trainer.py).

The stand-in runs detached like the real trainer and is followed through its run folder, so
these tests exercise the real path: tailing, folding, red flags, plot, samples and controls.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from loratui.app import LoraTuiApp
from loratui.runs.registry import register_run
from loratui.screens.confirm import ConfirmScreen
from loratui.screens.runs import RunsScreen
from loratui.widgets import LossPlot, RunStatus, SampleView
from tests.tui.conftest import settled, until
from trainer.contract.config.schema import Config, with_value
from trainer.contract.rundir import RunPaths, create_run_dir, pid_alive, read_pid

FAKE_TRAINER = Path(__file__).resolve().parents[1] / "fake_trainer.py"


@pytest.fixture
def fake_run(tmp_path):
    """Factory: start the stand-in trainer detached on a fresh run folder and return the folder."""
    started: list[subprocess.Popen] = []

    def start(*args: str) -> RunPaths:
        run = create_run_dir(with_value(Config(), "output.dir", str(tmp_path / "runs")))
        log = open(run.log, "ab")
        started.append(subprocess.Popen([sys.executable, str(FAKE_TRAINER), str(run.root), *args],
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True))
        log.close()
        register_run(run)
        return run

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def attached_app(run: RunPaths) -> LoraTuiApp:
    return LoraTuiApp(attach=run.root, gpus=[])


async def following(pilot, app) -> bool:
    return await until(pilot, lambda: app.current_mode == "train" and app.screen.run is not None, timeout=10)


async def test_progress_plot_and_a_confirmed_stop(fake_run):
    run = fake_run("--steps", "300", "--rate", "2000", "--scenario", "hold")
    app = attached_app(run)
    async with app.run_test(size=(100, 32)) as pilot:
        assert await following(pilot, app)
        monitor = app.screen.monitor
        assert await until(pilot, lambda: monitor.state.step == 300, timeout=30)
        status = app.screen.query_one(RunStatus)
        assert "step 300/300" in str(status.query_one("#run-text").render())
        assert monitor.follower.history.steps_seen == 300

        await pilot.press("p")
        plot = app.screen.query_one(LossPlot)
        assert await until(pilot, lambda: "smoothed" in plot.shown.plain, timeout=10)

        await pilot.press("x")
        assert await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), timeout=5)
        await pilot.press("n")  # changed their mind: the run goes on
        assert await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), timeout=5)
        assert pid_alive(read_pid(run))
        await pilot.press("x")
        assert await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), timeout=5)
        await pilot.press("y")
        assert await until(pilot, lambda: monitor.state.phase == "stopped", timeout=30)
        assert "stop requested" in "\n".join(monitor.log.lines)


async def test_a_flat_loss_raises_its_red_flag_once_in_the_banner_and_the_log(fake_run):
    run = fake_run("--steps", "1500", "--rate", "0", "--scenario", "flat")
    app = attached_app(run)
    async with app.run_test(size=(100, 32)) as pilot:
        assert await following(pilot, app)
        monitor = app.screen.monitor
        assert await until(pilot, lambda: monitor.state.phase == "done", timeout=30)
        assert [flag.code for flag in monitor.flags] == ["loss_flat"]
        banner = app.screen.query_one("#red-flags")
        assert banner.display and monitor.flags[0].title in str(banner.render())
        assert sum("red flag" in line for line in monitor.log.lines) == 1


async def test_a_healthy_run_raises_no_flag(fake_run):
    run = fake_run("--steps", "1500", "--rate", "0", "--scenario", "healthy")
    app = attached_app(run)
    async with app.run_test(size=(100, 32)) as pilot:
        assert await following(pilot, app)
        monitor = app.screen.monitor
        assert await until(pilot, lambda: monitor.state.phase == "done", timeout=30)
        assert monitor.flags == []
        assert not app.screen.query_one("#red-flags").display


async def test_oscillation_out_of_memory_and_a_run_too_short_for_a_gpu(fake_run):
    oscillating = fake_run("--steps", "400", "--rate", "0", "--scenario", "oscillating")
    oom = fake_run("--steps", "30", "--rate", "0", "--scenario", "oom", "--device", "NVIDIA RTX 4090",
                   "--seconds-per-step", "120")
    short = fake_run("--steps", "300", "--rate", "0", "--device", "NVIDIA RTX 4090", "--seconds-per-step", "1.2")
    for run, expected in ((oscillating, "loss_oscillating"), (oom, "oom"), (short, "too_fast")):
        app = attached_app(run)
        async with app.run_test(size=(100, 32)) as pilot:
            assert await following(pilot, app)
            monitor = app.screen.monitor
            assert await until(pilot, lambda: monitor.state.finished, timeout=30)
            assert await until(pilot, lambda: expected in [flag.code for flag in monitor.flags]), (expected,
                                                                                                  monitor.flags)
            if run is short:  # on a GPU the progress line shows the memory in use
                assert "GPU 6.5/24 GiB" in str(app.screen.query_one(RunStatus).query_one("#run-text").render())


async def test_a_run_that_died_is_shown_failed_with_its_last_output(fake_run):
    run = fake_run("--steps", "20", "--rate", "0", "--scenario", "die")
    app = attached_app(run)
    async with app.run_test(size=(100, 32)) as pilot:
        assert await following(pilot, app)
        monitor = app.screen.monitor
        assert await until(pilot, lambda: monitor.state.phase == "failed", timeout=30)
        status = app.screen.query_one(RunStatus)
        assert status.has_class("-failed")
        assert "RuntimeError: the fake trainer died" in "\n".join(monitor.log.lines)


async def test_save_now_and_sample_now_reach_the_trainer_and_samples_show(fake_run, tmp_path):
    picture = tmp_path / "sample.png"
    Image.new("RGB", (64, 64), (200, 40, 40)).save(picture)
    run = fake_run("--steps", "10", "--rate", "0", "--scenario", "hold", "--sample-image", str(picture))
    app = attached_app(run)
    async with app.run_test(size=(100, 32)) as pilot:
        assert await following(pilot, app)
        monitor = app.screen.monitor
        # The stand-in drew a first round of samples at the end of its steps.
        assert await until(pilot, lambda: len(monitor.state.samples) == 2, timeout=30)
        await pilot.press("v")
        view = app.screen.query_one(SampleView)
        assert await until(pilot, lambda: len(view.paths) == 2, timeout=10)

        await pilot.press("c")
        assert await until(pilot, lambda: any("saved" in line and "step000010" in line
                                              for line in monitor.log.lines), timeout=30)
        (run.samples / "s000010" / "p00-w1.0.png").unlink()
        await pilot.press("g")
        assert await until(pilot, lambda: (run.samples / "s000010" / "p00-w1.0.png").exists(), timeout=30)
        assert "Sampling requested" in "\n".join(monitor.log.lines)
        os.kill(read_pid(run), signal.SIGTERM)
        assert await until(pilot, lambda: monitor.state.phase == "stopped", timeout=30)
        await pilot.press("c")  # nothing to ask once the run has ended
        await settled(pilot)
        assert not (run.root / "control" / "save").exists()


async def test_the_app_offers_to_follow_a_run_that_is_still_training(fake_run, light_workspace):
    run = fake_run("--steps", "50", "--rate", "0", "--scenario", "hold")
    app = LoraTuiApp(light_workspace, gpus=[])
    async with app.run_test(size=(100, 32)) as pilot:
        assert await until(pilot, lambda: isinstance(app.screen, RunsScreen), timeout=15)
        assert await until(pilot, lambda: app.screen.summaries and app.screen.summaries[0].alive, timeout=15)
        await pilot.press("enter")
        assert await following(pilot, app)
        assert app.screen.run.root == run.root
        assert await until(pilot, lambda: app.screen.monitor.state.step == 50, timeout=30)


async def test_no_offer_without_live_runs_and_the_runs_list_on_a(fake_run, light_workspace):
    finished = fake_run("--steps", "5", "--rate", "0")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (finished.pid.exists() or not finished.events.exists()):
        time.sleep(0.05)
    app = LoraTuiApp(light_workspace, gpus=[], mode="train")
    async with app.run_test(size=(100, 32)) as pilot:
        await settled(pilot)  # the search for live runs has ended, and offered nothing
        assert not isinstance(app.screen, RunsScreen)
        await pilot.press("a")
        assert await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.summaries, timeout=15)
        await pilot.press("enter")
        assert await until(pilot, lambda: app.screen.run is not None and app.screen.run.root == finished.root,
                           timeout=10)
        assert await until(pilot, lambda: app.screen.monitor.state.phase == "done", timeout=10)


async def test_i_opens_the_finished_lora_in_the_inspector(fake_run):
    from loratui.screens.inspect import InspectScreen

    run = fake_run("--steps", "50", "--rate", "0", "--scenario", "healthy")
    app = attached_app(run)
    async with app.run_test(size=(100, 32)) as pilot:
        assert await following(pilot, app)
        train_screen = app.screen
        assert await until(pilot, lambda: train_screen.monitor.state.phase == "done", timeout=30)
        output = train_screen.run_state.output
        await pilot.press("i")
        assert await until(pilot, lambda: isinstance(app.screen, InspectScreen) and app.screen.error is not None)
        # The stand-in trainer's "LoRA" is four bytes: the inspector names that file and says why.
        assert output in str(app.screen.error) or output in app.screen.query_one("#inspect-path").value
        await pilot.press("escape")
        assert await until(pilot, lambda: app.screen is train_screen)
