"""The app, driven with Textual's Pilot: load a config, start a real run, see it arrive."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from textual.widgets import Footer

from loratui.app import LoraTuiApp
from loratui.demo import demo_config, write_dataset
from loratui.widgets import RunStatus
from tests.tui.conftest import assessed, settled, until
from trainer.contract.config.schema import with_value
from trainer.contract.config.toml_io import save_config
from trainer.contract.rundir import pid_alive, read_pid


@pytest.fixture
def workspace(tmp_path, tiny_sd15):
    """A demo-like workspace on the tiny model, with a run long enough to watch."""
    write_dataset(tmp_path / "dataset")
    config = with_value(demo_config(), "model.base", str(tiny_sd15))
    config = with_value(config, "training.epochs", 40)
    path = tmp_path / "loratui.toml"
    save_config(config, path)
    return path


@pytest.mark.slow
async def test_start_a_run_and_watch_steps_arrive(workspace):
    app = LoraTuiApp(workspace, gpus=[], mode="train")
    async with app.run_test(size=(100, 32)) as pilot:
        screen = app.screen
        assert await until(pilot, lambda: assessed(app), timeout=90)
        summary = str(screen.query_one("#summary").render())
        assert "12 images" in summary and "1200 steps" in summary
        await pilot.press("s")
        status = screen.query_one(RunStatus)
        try:
            assert await until(pilot, lambda: status.state.step >= 3, timeout=90)
            assert status.state.total_steps == 1200
            assert "step " in str(status.query_one("#run-text").render())
            log_text = "\n".join(screen.query_one("Log").lines)
            assert "start: 12 images" in log_text
            pid = read_pid(screen.run)
            assert pid is not None and pid_alive(pid)
        finally:
            pid = read_pid(screen.run) if screen.run else None
            if pid and pid_alive(pid):
                os.kill(pid, signal.SIGTERM)
        assert await until(pilot, lambda: screen.run_state.phase == "stopped", timeout=90)
        assert screen.run_state.last_checkpoint and Path(screen.run_state.last_checkpoint).exists()
        stopped_at = screen.run_state.step

        # Resume from the app: the same run folder, steps go on after the stop.
        await pilot.press("r")
        try:
            assert await until(pilot, lambda: screen.run_state.step > stopped_at + 2, timeout=90)
            assert screen.run_state.phase == "training"
            assert "resuming" in "\n".join(screen.query_one("Log").lines)
        finally:
            pid = read_pid(screen.run)
            if pid and pid_alive(pid):
                os.kill(pid, signal.SIGTERM)
        assert await until(pilot, lambda: screen.run_state.phase == "stopped", timeout=90)


async def test_a_config_with_problems_lists_them_and_will_not_start(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[dataset]\npath = "nowhere"\n[training]\nbatch_size = 0\nbatchsize = 2\n')
    app = LoraTuiApp(path, gpus=[], mode="train")
    async with app.run_test(size=(100, 32)) as pilot:
        screen = app.screen
        assert await until(pilot, lambda: assessed(app), timeout=10)
        problems = str(screen.query_one("#problems").render())
        assert "model.base: is required." in problems
        assert "training.batch_size" in problems
        assert "Did you mean 'batch_size'?" in problems
        await pilot.press("s")
        await settled(pilot)
        assert screen.run is None
        assert not (tmp_path / "runs").exists()


async def test_typing_a_config_path_loads_it(tmp_path, dataset):
    path = tmp_path / "typed.toml"
    save_config(with_value(demo_config(), "dataset.path", str(dataset)), path)
    app = LoraTuiApp(None, gpus=[], mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert "Type the path" in str(screen.query_one("#summary").render())
        await pilot.click("#config-path")
        await pilot.press(*str(path), "enter")
        assert await until(pilot, lambda: assessed(app), timeout=10)
        # The demo config names a model folder that is not there: the problem is shown, by name.
        assert "model.base" in str(screen.query_one("#problems").render())


async def test_an_edited_config_is_checked_again_before_it_can_start(workspace):
    app = LoraTuiApp(workspace, gpus=[], mode="train")
    async with app.run_test(size=(100, 32)) as pilot:
        screen = app.screen
        assert await until(pilot, lambda: assessed(app), timeout=20)
        assert "1200 steps" in str(screen.query_one("#summary").render())
        text = workspace.read_text().replace("epochs = 40", "epochs = 2")
        workspace.write_text(text)
        os.utime(workspace, ns=(time.time_ns(), time.time_ns() + 10**9))
        await pilot.press("s")
        await settled(pilot)
        assert screen.run is None  # nothing started from the stale check
        assert await until(pilot, lambda: assessed(app)
                            and "60 steps" in str(screen.query_one("#summary").render()), timeout=20)


@pytest.mark.slow
async def test_from_the_checklist_to_a_started_run_with_the_keyboard_alone(workspace):
    app = LoraTuiApp(workspace, gpus=[])
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.current_mode == "checklist"  # a new workspace opens on the checklist
        assert await until(pilot, lambda: assessed(app), timeout=20)
        await pilot.press("down", "enter")  # the first item (the dataset's size): off to the dataset screen
        assert await until(pilot, lambda: app.current_mode == "dataset", timeout=10)
        assert await until(pilot, lambda: app.screen.report is not None, timeout=20)
        await pilot.press("f3")  # then the settings, in the guide's order
        assert await until(pilot, lambda: app.current_mode == "setup", timeout=10)
        await pilot.press("ctrl+t")  # train from the settings screen
        assert await until(pilot, lambda: app.current_mode == "train", timeout=10)
        screen = app.screen
        try:
            assert await until(pilot, lambda: screen.run_state.step >= 2, timeout=90)
        finally:
            pid = read_pid(screen.run) if screen.run else None
            if pid and pid_alive(pid):
                os.kill(pid, signal.SIGTERM)
        assert await until(pilot, lambda: screen.run_state.phase == "stopped", timeout=90)


async def test_the_footer_fits_80_columns_and_every_key_says_what_it_does(light_workspace):
    from loratui.screens.train import TrainScreen

    bindings = TrainScreen.BINDINGS
    # Every key has words for ? help and the command palette, the hidden ones too.
    assert all(binding.description and binding.tooltip for binding in bindings)
    shown = [binding for binding in bindings if binding.show]
    assert len(shown) <= 6 and all(len(binding.description) <= 8 for binding in shown)
    assert {binding.action for binding in shown} >= {"start", "stop", "zoom"}
    app = LoraTuiApp(light_workspace, gpus=[], mode="train", offer_live_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settled(pilot)
        footer = app.screen.query_one(Footer)
        keys = {key.action: key.region for key in footer.query("FooterKey")}
        # No run yet: start, zoom and the runs list, each whole on the screen.
        for action in ("start", "zoom", "runs"):
            assert keys[action].width > 0 and keys[action].right <= 80, (action, keys)
        assert "stop" not in keys and "resume" not in keys  # nothing to stop or resume


async def test_at_80x24_the_summary_says_each_figure_once_and_the_monitor_keeps_its_room(light_workspace):
    app = LoraTuiApp(light_workspace, gpus=[], mode="train", offer_live_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert await until(pilot, lambda: assessed(app), timeout=20)
        await settled(pilot)
        summary = str(screen.query_one("#summary").render())
        lines = summary.split("\n")
        assert len(lines) == 2 and screen.query_one("#summary").size.height == 2
        assert summary.count("images") == 1 and summary.count("steps") == 1 and summary.count("sd15") == 1
        assert screen.query_one("#config-bar").size.height == 1
        assert not screen.query_one("#problems").display
        await pilot.press("p")
        await pilot.pause()
        # Header, config line, two summary lines, the run panel (four), the tabs (two), the footer: 13 left.
        assert screen.query_one("LossPlot").size.height == 13

        await pilot.resize_terminal(120, 40)  # room for the whole summary, the guide's formula included
        assert await until(pilot, lambda: "guide's formula" in str(screen.query_one("#summary").render()))
        assert str(screen.query_one("#summary").render()).count("images") == 2  # the plan, and the formula
