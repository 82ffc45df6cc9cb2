"""The promise of the monitor, end to end: kill the app mid-run, training goes on, a new app picks it up.

The first app runs in its own process, as over SSH, and starts the demo run with its `s` key;
that process is then killed outright (SIGKILL: no chance to clean up, as when an SSH session
dies with the terminal). The run must reach `done`, and a fresh app opened with `attach`
must show the whole history: every step in the loss history, the final state, the plot.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from loratui.app import LoraTuiApp
from loratui.demo import demo_config, write_dataset
from loratui.runs.registry import registered_runs
from loratui.widgets.loss_plot import LossPlot
from tests.trainer.helpers import wait_for
from tests.tui.conftest import until
from trainer.contract.config.schema import with_value
from trainer.contract.config.toml_io import save_config
from trainer.contract.events import read_events

pytestmark = pytest.mark.slow

APP_THAT_STARTS_TRAINING = textwrap.dedent("""
    import sys
    from pathlib import Path
    from loratui.app import LoraTuiApp

    async def start_training(pilot):
        app = pilot.app
        workspace = app.workspace
        while workspace.assessment is None or workspace.assessed_version != workspace.version:
            await pilot.pause(0.1)
        await pilot.press("s")
        while True:  # stay open, like a user watching, until killed
            await pilot.pause(0.5)

    LoraTuiApp(Path(sys.argv[1]), gpus=[], mode="train", offer_live_runs=False).run(
        headless=True, size=(100, 30), auto_pilot=start_training)
""")



def _steps_written(run: Path) -> int:
    return sum(1 for e in read_events(run / "events.jsonl") if e["type"] == "step")


async def test_killing_the_app_leaves_training_running_and_a_new_app_attaches(tmp_path, tiny_sd15):
    write_dataset(tmp_path / "dataset")
    config_path = tmp_path / "loratui.toml"
    save_config(with_value(demo_config(), "model.base", str(tiny_sd15)), config_path)

    app_process = subprocess.Popen([sys.executable, "-c", APP_THAT_STARTS_TRAINING, str(config_path)],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   cwd=tmp_path)
    try:
        assert wait_for(lambda: registered_runs() and _steps_written(registered_runs()[0]) >= 3, timeout=180), \
            "the app never started a run"
        run = registered_runs()[0]
        os.kill(app_process.pid, signal.SIGKILL)
        app_process.wait(timeout=30)
        killed_at = _steps_written(run)
    finally:
        if app_process.poll() is None:
            app_process.kill()

    # Training goes on without the app, to the end.
    assert wait_for(lambda: any(e["type"] == "done" for e in read_events(run / "events.jsonl")), timeout=300), \
        (run / "trainer.log").read_text()[-3000:]
    events = read_events(run / "events.jsonl")
    total = next(e for e in events if e["type"] == "start")["total_steps"]
    assert killed_at < total
    assert _steps_written(run) == total

    # A new app attaches and shows the whole history.
    app = LoraTuiApp(attach=run, gpus=[])
    async with app.run_test(size=(100, 30)) as pilot:
        assert await until(pilot, lambda: app.current_mode == "train" and app.screen.run is not None, timeout=10)
        monitor = app.screen.monitor
        assert await until(pilot, lambda: monitor.state.phase == "done", timeout=30)
        assert monitor.state.step == total
        assert monitor.follower.history.steps_seen == total
        assert monitor.follower.history.series().steps[0] <= 1  # from the very first step
        await pilot.press("p")
        plot = app.screen.query_one(LossPlot)
        assert await until(pilot, lambda: "loss" in plot.shown.plain, timeout=10)
        log_text = "\n".join(monitor.log.lines)
        assert "start:" in log_text and "done in" in log_text
