"""The monitor with a validation split, driven by the stand-in trainer: the curve on the plot, the
latest value in the run panel, and the overfitting red flag in the banner."""

from __future__ import annotations

from loratui.widgets import LossPlot, RunStatus
from tests.tui.conftest import until
from tests.tui.test_monitor import attached_app, fake_run, following  # noqa: F401 - fake_run is a fixture


async def test_an_overfitting_run_shows_its_validation_curve_value_and_red_flag(fake_run):  # noqa: F811
    run = fake_run("--steps", "600", "--rate", "0", "--scenario", "overfitting", "--validate-every", "50")
    app = attached_app(run)
    async with app.run_test(size=(120, 34)) as pilot:
        assert await following(pilot, app)
        monitor = app.screen.monitor
        assert await until(pilot, lambda: monitor.state.phase == "done", timeout=30)
        assert [flag.code for flag in monitor.flags] == ["overfitting"]
        assert "validation loss is rising" in str(app.screen.query_one("#red-flags").render())
        status = str(app.screen.query_one(RunStatus).query_one("#run-text").render())
        assert f"val {monitor.state.validation_loss:.4f}" in status
        await pilot.press("p")
        plot = app.screen.query_one(LossPlot)
        assert await until(pilot, lambda: plot.shown is not None and "validation" in plot.shown.plain, timeout=10)
