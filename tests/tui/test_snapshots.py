"""Snapshots of the checklist and setup screens at 80×24 and 120×40.

Regenerate after a deliberate change with ``python -m pytest tests/tui/test_snapshots.py
--snapshot-update`` and look at the report before committing the new SVGs.
"""

from __future__ import annotations

import pytest
from textual.widgets import Input

from loratui.app import LoraTuiApp
from tests.tui.conftest import assessed, until


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
@pytest.mark.parametrize("mode", ["checklist", "setup"])
def test_screen_snapshot(snap_compare, light_workspace, mode, size):
    app = LoraTuiApp(light_workspace, gpus=[], mode=mode)

    async def settle(pilot):
        assert await until(pilot, lambda: assessed(app))
        for box in app.query(Input):
            box.cursor_blink = False
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=size, run_before=settle)


def test_setup_snapshot_with_a_danger_inline(snap_compare, light_workspace):
    app = LoraTuiApp(light_workspace, gpus=[], mode="setup")

    async def risky_rate(pilot):
        assert await until(pilot, lambda: assessed(app))
        app.change_setting("optimizer.unet_lr", 2e-3)
        assert await until(pilot, lambda: assessed(app))
        await pilot.pause(0.2)
        app.screen.focus_setting("optimizer.unet_lr")
        for box in app.query(Input):
            box.cursor_blink = False
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=(80, 24), run_before=risky_rate)
