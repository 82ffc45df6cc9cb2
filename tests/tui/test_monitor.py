"""The monitor, driven by a stand-in trainer that writes canned events (tests/fake_trainer.py).

The stand-in runs detached like the real trainer and is followed through its run folder, so
these tests exercise the real path: tailing, folding, red flags, plot, samples and controls.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from textual.geometry import Region
from textual.widgets import Footer, ProgressBar

from loratui.app import LoraTuiApp
from loratui.monitor.plot import WAITING_TEXT
from loratui.runs.registry import register_run
from loratui.screens.confirm import ConfirmScreen
from loratui.screens.runs import RunsScreen
from loratui.terminal_image import UPPER_HALF
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
        offered = str(app.screen.query_one("#runs-list").get_option_at_index(0).prompt)
        assert f"in {run.root}" in offered  # which folder, not a bare name that another folder may share
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


# At 80×24 -------------------------------------------------------------------------------------------


def _widths_of_pictures(view: SampleView) -> list[int]:
    """The width of each picture drawn (runs of half-block cells on the picture's widest line)."""
    picture = view.query_one("#sample-picture")
    lines = [strip.text for strip in picture.render_lines(Region(0, 0, *picture.size))]
    return max(([len(run) for run in re.findall(f"{UPPER_HALF}+", line)] for line in lines), key=len, default=[])


def _footer_keys(app) -> dict[str, Region]:
    """The footer's keys on show, by action, with where each is drawn."""
    return {key.action: key.region for key in app.screen.query_one(Footer).query("FooterKey")}


async def test_z_gives_the_plot_the_whole_screen_and_the_plot_is_readable_at_80x24(fake_run):
    run = fake_run("--steps", "300", "--rate", "2000", "--scenario", "hold")
    app = attached_app(run)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await following(pilot, app)
        screen, monitor = app.screen, app.screen.monitor
        assert await until(pilot, lambda: monitor.state.step == 300, timeout=30)
        await pilot.press("p")
        plot = screen.query_one(LossPlot)
        assert await until(pilot, lambda: "learning rate" in plot.shown.plain, timeout=10)
        lines = plot.shown.plain.split("\n")
        assert plot.size.height >= 12 and len(lines) == plot.size.height
        # The legend is a line of its own above the frame, off the data; the learning rate has its own panel.
        assert "━ loss" in lines[0] and "━ smoothed" in lines[0] and run.root.name in lines[0]
        assert lines[1].strip().startswith("┌") and plot.shown.plain.count("┌") == 2
        assert "e-0" in plot.shown.plain
        normal = plot.size.height

        assert "zoom" in _footer_keys(app)
        await pilot.press("z")
        assert screen.zoomed
        hidden = ["#config-bar", "#summary", "RunStatus", "#monitor-tabs ContentTabs", "Header"]
        assert await until(pilot, lambda: all(not screen.query_one(q).display for q in hidden), timeout=5)
        # The plot takes everything but the footer, and is drawn again at that size.
        assert await until(pilot, lambda: plot.size.height == 23
                           and len(plot.shown.plain.split("\n")) == 23, timeout=10)
        # Zoomed, the tab keys still switch what fills the screen; nothing hidden keeps the focus.
        await pilot.press("l")
        assert monitor.active_tab == "tab-log" and monitor.log.size.height == 23 and monitor.log.has_focus
        await pilot.press("p")
        assert monitor.active_tab == "tab-loss" and (app.focused is None or app.focused.display)
        await pilot.press("z")
        assert not screen.zoomed
        assert await until(pilot, lambda: all(screen.query_one(q).display for q in hidden)
                           and plot.size.height == normal, timeout=5)


async def test_the_screen_says_each_figure_once_and_fits_80_columns(fake_run):
    run = fake_run("--steps", "50", "--rate", "0", "--scenario", "hold", "--device", "NVIDIA RTX 4090",
                   "--seconds-per-step", "1.23")
    app = attached_app(run)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await following(pilot, app)
        status = app.screen.query_one(RunStatus)
        assert await until(pilot, lambda: status.state.step == 50, timeout=30)
        # While training, the plan ("20 images · 50 steps on …") is not repeated under the figures.
        assert not status.query_one("#run-message").display
        loss = f"{status.state.loss:.4f}"
        assert status.text == f"step 50/50 · epoch 4/4 · loss {loss} · 1.23 s/it · GPU 6.5/24 GiB"
        assert status.clock.startswith("elapsed ") and "ETA 0:00" in status.clock
        assert status.query_one("#run-clock").region.right <= 78
        assert status.border_title == "Training · NVIDIA RTX 4090, fp32"


async def test_sample_pictures_use_the_room_and_grow_when_zoomed(fake_run, tmp_path):
    picture = tmp_path / "sample.png"
    Image.new("RGB", (64, 64), (200, 40, 40)).save(picture)
    run = fake_run("--steps", "10", "--rate", "0", "--scenario", "hold", "--sample-image", str(picture),
                   "--sample-count", "4")
    app = attached_app(run)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await following(pilot, app)
        await pilot.press("v")
        view = app.screen.query_one(SampleView)
        assert await until(pilot, lambda: len(view.paths) == 4 and len(_widths_of_pictures(view)) == 4, timeout=30)
        widths = _widths_of_pictures(view)
        assert min(widths) >= 16  # they were 8 cells wide before
        assert "step 10 · strength 0.7, 1.0, 0.7, 1.0 · zkmascot, 1girl" in view.caption
        await pilot.press("z")
        assert await until(pilot, lambda: _widths_of_pictures(view) and
                           min(_widths_of_pictures(view)) > max(widths), timeout=10)


async def test_the_log_shows_its_last_lines_when_lines_come_and_when_the_run_ends(fake_run):
    run = fake_run("--steps", "300", "--rate", "0", "--scenario", "hold")
    app = attached_app(run)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await following(pilot, app)
        monitor = app.screen.monitor
        assert await until(pilot, lambda: monitor.state.step == 300, timeout=30)
        for n in range(40):  # more than the log can show at once
            monitor.write(f"note {n}")
        await pilot.pause()
        assert "note 39" in _log_text(monitor)
        os.kill(read_pid(run), signal.SIGTERM)
        assert await until(pilot, lambda: monitor.state.phase == "stopped", timeout=30)
        # The run panel grew a line ("Stopped at step 300 …"), the log lost one: its end stays in view.
        assert await until(pilot, lambda: app.screen.query_one("#run-message").display, timeout=5)
        await pilot.pause()
        assert "stopped at step 300" in _log_text(monitor).strip().split("\n")[-1]


def _log_text(monitor) -> str:
    log = monitor.log
    return "\n".join(strip.text for strip in log.render_lines(Region(0, 0, *log.size)))


async def test_sampling_counts_its_pictures_and_a_stop_comes_between_two(fake_run, tmp_path):
    picture = tmp_path / "sample.png"
    Image.new("RGB", (64, 64), (40, 40, 200)).save(picture)
    run = fake_run("--steps", "10", "--rate", "0", "--scenario", "hold", "--sample-image", str(picture),
                   "--sample-count", "4", "--sample-seconds", "2")
    app = attached_app(run)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await following(pilot, app)
        monitor, status = app.screen.monitor, app.screen.query_one(RunStatus)
        assert await until(pilot, lambda: status.border_title.startswith("Drawing sample 2/4"), timeout=30)
        assert "sample 1/4" in "\n".join(monitor.log.lines)
        await pilot.press("x")
        assert await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), timeout=5)
        await pilot.press("y")
        assert await until(pilot, lambda: monitor.state.phase == "stopped", timeout=30)
        # The stop waited for the picture being drawn, not for the whole round; the run saved as a stop does.
        assert len(monitor.state.samples) < 4
        assert monitor.state.last_checkpoint and Path(monitor.state.last_checkpoint).is_file()
        assert "sample 4/4" not in "\n".join(monitor.log.lines)
        assert status.border_title == "Stopped"


async def test_a_new_run_shows_nothing_of_the_one_followed_before(fake_run, tmp_path):
    from loratui.runs.follower import FollowBatch
    from loratui.widgets.run_monitor import RunMonitor

    picture = tmp_path / "sample.png"
    Image.new("RGB", (64, 64), (200, 40, 40)).save(picture)
    first = fake_run("--steps", "1500", "--rate", "0", "--scenario", "flat", "--sample-image", str(picture))
    second = fake_run("--steps", "50", "--rate", "5", "--scenario", "hold")
    app = attached_app(first)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await following(pilot, app)
        screen, monitor = app.screen, app.screen.monitor
        status, view, plot = screen.query_one(RunStatus), screen.query_one(SampleView), screen.query_one(LossPlot)
        bar = status.query_one(ProgressBar)
        assert await until(pilot, lambda: monitor.state.phase == "done" and monitor.flags and view.paths, timeout=30)
        await pilot.press("p")
        assert await until(pilot, lambda: "smoothed" in plot.shown.plain, timeout=10)
        assert bar.percentage == 1.0
        old_follower, old_state = monitor.follower, monitor.state

        screen.attach(second.root)
        await pilot.pause()
        assert monitor.state.total_steps in (0, 50) and "1500" not in status.text
        assert bar.percentage != 1.0
        assert monitor.flags == [] and not screen.query_one("#red-flags").display
        assert view.paths == [] and plot.shown.plain == WAITING_TEXT
        # News of the first run still on its way (a poll posted just before the switch) is dropped.
        monitor.post_message(RunMonitor.Polled(old_follower, FollowBatch(old_state, ["stale line"], flags=[])))
        await settled(pilot)
        assert monitor.state.total_steps in (0, 50) and "stale line" not in monitor.log.lines
        assert await until(pilot, lambda: monitor.state.total_steps == 50 and monitor.state.step >= 1, timeout=30)
        assert "/50" in status.text and bar.total == 50
        assert monitor.state.samples == [] and monitor.flags == []


async def test_i_inspects_the_newest_checkpoint_of_a_stopped_run_and_says_when_there_is_none(fake_run):
    from loratui.screens.inspect import InspectScreen

    run = fake_run("--steps", "30", "--rate", "0", "--scenario", "hold")
    app = attached_app(run)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await following(pilot, app)
        screen, monitor = app.screen, app.screen.monitor
        assert await until(pilot, lambda: monitor.state.step == 30, timeout=30)
        await pilot.press("i")
        await settled(pilot)
        assert app.screen is screen  # nothing to open yet, and it says so
        assert any("has no LoRA file yet" in line for line in monitor.log.lines)
        os.kill(read_pid(run), signal.SIGTERM)
        assert await until(pilot, lambda: monitor.state.phase == "stopped", timeout=30)
        checkpoint = run.checkpoints / "fake-step000030.safetensors"
        assert checkpoint.is_file() and monitor.state.output is None
        # The keys of a stopped run fit in the footer at 80 columns (resume needs its saved state).
        run.resume_state.parent.mkdir(parents=True, exist_ok=True)
        run.resume_state.write_bytes(b"state")
        screen.refresh_bindings()
        await pilot.pause()
        keys = _footer_keys(app)
        for action in ("start", "resume", "inspect_output", "zoom", "runs"):
            assert action in keys and keys[action].width > 0 and keys[action].right <= 80, (action, keys)
        await pilot.press("i")
        assert await until(pilot, lambda: isinstance(app.screen, InspectScreen), timeout=10)
        assert app.screen.path == checkpoint


async def test_attaching_loads_the_config_the_run_was_started_with(fake_run, light_workspace):
    run = fake_run("--steps", "5", "--rate", "0")
    app = attached_app(run)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await following(pilot, app)
        assert await until(pilot, lambda: app.workspace.path == run.config, timeout=10)
        assert app.screen.query_one("#config-path").value == str(run.config)
        assert any("the copy this run was started with" in line for line in app.screen.monitor.log.lines)
    # A workspace that has a config keeps it: the run is followed beside it.
    other = fake_run("--steps", "5", "--rate", "0")
    app = LoraTuiApp(light_workspace, gpus=[], attach=other.root)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await following(pilot, app)
        await settled(pilot)
        assert app.workspace.path == light_workspace


async def test_quitting_while_the_run_trains_says_it_goes_on_and_how_to_follow_it(fake_run):
    run = fake_run("--steps", "50", "--rate", "0", "--scenario", "hold")
    app = attached_app(run)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await following(pilot, app)
        assert await until(pilot, lambda: app.screen.monitor.state.step == 50, timeout=30)
        await pilot.press("ctrl+q")
    said = app.farewell  # the command line prints it once the screen is restored
    assert f"\n  loratui attach {run.root}" in said and "goes on training" in said
    assert pid_alive(read_pid(run))  # quitting stopped nothing
