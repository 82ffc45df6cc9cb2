"""Snapshots of every screen (checklist, setup, dataset, train with a run, help, inspector) at 80×24
and 120×40, with the focus on show.

Regenerate after a deliberate change with ``python -m pytest -n 0 tests/tui/test_snapshots.py
--snapshot-update`` and look at the report before committing the new SVGs.
"""

from __future__ import annotations

import pytest
from textual.widgets import Input

from loratui.app import LoraTuiApp
from tests.tui.conftest import assessed, steady_cursors, until


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
@pytest.mark.parametrize("mode", ["checklist", "setup"])
def test_screen_snapshot(snap_compare, light_workspace, mode, size):
    app = LoraTuiApp(light_workspace, gpus=[], mode=mode)

    async def settle(pilot):
        assert await until(pilot, lambda: assessed(app))
        await steady_cursors(pilot)

    assert snap_compare(app, terminal_size=size, run_before=settle)


def test_setup_snapshot_with_a_danger_inline(snap_compare, light_workspace):
    app = LoraTuiApp(light_workspace, gpus=[], mode="setup")

    async def risky_rate(pilot):
        assert await until(pilot, lambda: assessed(app))
        app.change_setting("optimizer.unet_lr", 2e-3)
        assert await until(pilot, lambda: assessed(app))
        await pilot.pause(0.2)
        app.screen.focus_setting("optimizer.unet_lr")
        # On a loaded machine focus can land after a fixed pause; the cursor shows only where it is.
        assert await until(pilot, lambda: app.focused is not None and "field-optimizer-unet_lr" in
                           [node.id for node in app.focused.ancestors_with_self])
        await pilot.pause(0.2)
        await steady_cursors(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=risky_rate)


def _finished_run(folder):
    """A finished run written with fixed times and a seeded loss curve, so its screen never changes."""
    import json
    import random

    from trainer.contract.config.schema import Config, with_value
    from trainer.contract.rundir import RunPaths, create_run_dir

    # A fixed folder name (the screen shows it), whatever the clock and the time zone.
    made = create_run_dir(with_value(Config(), "output.dir", str(folder)))
    run = RunPaths(made.root.rename(folder / "lora-fixed"))
    rng = random.Random(3)
    lines = [{"type": "start", "time": 1000.0, "total_steps": 400, "epochs": 4, "device": "cpu", "images": 20,
              "batches_per_epoch": 100, "formula_steps": 400, "precision": "fp32", "resolution": 512}]
    for step in range(1, 401):
        lines.append({"type": "step", "time": 1000.0 + step, "step": step, "total_steps": 400,
                      "epoch": 1 + (step - 1) // 100, "loss": (0.05 + 0.1 * 0.995 ** step) * rng.uniform(0.3, 1.7),
                      "lr": 1e-4 * (1 - step / 401), "seconds_per_step": 1.0})
    lines.append({"type": "done", "time": 1401.0, "step": 400, "total_steps": 400, "output": "x.safetensors",
                  "seconds": 401.0})
    run.events.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return run


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_monitor_snapshot(snap_compare, tmp_path, size, monkeypatch):
    from loratui.widgets import LossPlot

    monkeypatch.chdir(tmp_path)  # the run's config shows relative to here, the same in every test run
    run = _finished_run(tmp_path / "runs")
    app = LoraTuiApp(attach=run.root, gpus=[])

    async def plotted(pilot):
        assert await until(pilot, lambda: app.current_mode == "train" and app.screen.run is not None)
        assert await until(pilot, lambda: app.screen.monitor.state.phase == "done")
        await pilot.press("p")
        plot = app.screen.query_one(LossPlot)
        assert await until(pilot, lambda: "smoothed" in plot.shown.plain)
        await steady_cursors(pilot)

    assert snap_compare(app, terminal_size=size, run_before=plotted)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_dataset_snapshot(snap_compare, light_workspace, size):
    app = LoraTuiApp(light_workspace, gpus=[], mode="dataset", offer_live_runs=False)

    async def images_tab(pilot):
        # Scanned with the settings of the assessed config (the resolution follows the model's architecture).
        assert await until(pilot, lambda: assessed(app) and app.screen.report is not None
                           and app.screen.report.settings["resolution"] == 768)
        # The box holds the absolute path of pytest's temporary folder; show it as the config writes it.
        app.screen.query_one("#dataset-path", Input).value = "dataset"
        await pilot.press("2")
        assert await until(pilot, lambda: app.screen.editing is not None)
        await pilot.pause(0.5)  # the picture is drawn in a worker
        await steady_cursors(pilot)

    assert snap_compare(app, terminal_size=size, run_before=images_tab)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_help_snapshot(snap_compare, light_workspace, size):
    """F9 from inside a setting: the help lists the settings screen's keys, over the form."""
    app = LoraTuiApp(light_workspace, gpus=[], mode="setup", offer_live_runs=False)

    async def helped(pilot):
        assert await until(pilot, lambda: assessed(app))
        await pilot.press("tab", "f9")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=size, run_before=helped)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_inspector_snapshot(snap_compare, light_workspace, size):
    """F6 from the checklist: the inspector opens with its path box focused."""
    app = LoraTuiApp(light_workspace, gpus=[], mode="checklist", offer_live_runs=False)

    async def inspecting(pilot):
        assert await until(pilot, lambda: assessed(app))
        await pilot.press("f6")
        assert await until(pilot, lambda: type(app.screen).__name__ == "InspectScreen")
        await steady_cursors(pilot)

    assert snap_compare(app, terminal_size=size, run_before=inspecting)
