"""The app stops you before the dumb stuff: a start the guide calls dangerous, a second training on
the same machine, quitting with settings not saved. Each asks, with "no" the answer Enter gives."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from loratui.app import LoraTuiApp
from loratui.cli import main as loratui_main
from loratui.demo import demo_config, write_dataset
from loratui.screens.confirm import ConfirmScreen
from loratui.screens.runs import RunsScreen
from loratui.screens.unsaved import UnsavedChangesScreen
from tests.trainer.helpers import wait_for
from tests.tui.conftest import assessed, settled, until
from trainer.contract.config.schema import with_value
from trainer.contract.config.toml_io import save_config
from trainer.contract.rundir import RunPaths, pid_alive, read_pid


def _runs(workspace_path) -> list:
    runs = workspace_path.parent / "runs"
    return sorted(runs.iterdir()) if runs.is_dir() else []


def _with(path, key, value) -> None:
    from trainer.contract.config.toml_io import load_config

    config, _ = load_config(path)
    save_config(with_value(config, key, value), path)


def _dialog_text(app) -> str:
    return "\n".join(str(w.render()) for w in app.screen.query("#confirm-question, #confirm-detail"))


async def test_starting_with_a_danger_asks_and_no_starts_nothing(light_workspace):
    _with(light_workspace, "optimizer.unet_lr", 1e-2)
    app = LoraTuiApp(light_workspace, gpus=[], mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        assert await until(pilot, lambda: assessed(app))
        await pilot.press("s")
        assert await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        text = _dialog_text(app)
        assert "Start with 1 danger" in text and "optimizer.unet_lr" in text
        await pilot.press("enter")  # the focused answer is "Not now"
        await settled(pilot)
        assert not isinstance(app.screen, ConfirmScreen) and _runs(light_workspace) == []
        await pilot.press("s")
        assert await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        assert await until(pilot, lambda: len(_runs(light_workspace)) == 1)
        await settled(pilot)


async def test_a_config_without_dangers_starts_without_a_question(light_workspace):
    app = LoraTuiApp(light_workspace, gpus=[], mode="train")
    async with app.run_test(size=(80, 24)) as pilot:
        assert await until(pilot, lambda: assessed(app))
        assert not [f for f in app.workspace.assessment.findings if f.severity == "danger"]
        await pilot.press("s")
        assert await until(pilot, lambda: len(_runs(light_workspace)) == 1)
        assert not isinstance(app.screen, ConfirmScreen)
        await settled(pilot)


@pytest.mark.slow
async def test_starting_beside_a_training_on_this_machine_names_it_and_asks(tmp_path, tiny_sd15, capsys):
    write_dataset(tmp_path / "dataset")
    path = tmp_path / "loratui.toml"
    save_config(with_value(with_value(demo_config(), "model.base", str(tiny_sd15)), "training.epochs", 40), path)
    assert loratui_main(["train", str(path), "--detach"]) == 0
    other = RunPaths(Path(capsys.readouterr().out.strip()))
    try:
        assert wait_for(lambda: read_pid(other) is not None and pid_alive(read_pid(other)), 60)
        app = LoraTuiApp(path, gpus=[], mode="train")
        async with app.run_test(size=(80, 24)) as pilot:
            assert await until(pilot, lambda: assessed(app), timeout=90)
            # On opening, the app offers to follow the run still training; not now.
            assert await until(pilot, lambda: isinstance(app.screen, RunsScreen))
            await pilot.press("escape")
            await pilot.press("s")
            assert await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            text = _dialog_text(app)
            assert "another training" in text and other.root.name in text
            await pilot.press("n")
            await settled(pilot)
            assert _runs(path) == [other.root]
    finally:
        pid = read_pid(other)
        if pid and pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
        assert wait_for(lambda: not pid_alive(pid), 90)


async def _ask_to_quit(pilot, app, epochs: int) -> None:
    """Change a setting, press ctrl+q, and wait for the question."""
    assert await until(pilot, lambda: assessed(app))
    app.change_setting("training.epochs", epochs)
    await pilot.press("ctrl+q")
    assert await until(pilot, lambda: isinstance(app.screen, UnsavedChangesScreen))


async def test_quitting_with_unsaved_settings_asks_save_discard_or_stay(light_workspace):
    original = light_workspace.read_text()
    app = LoraTuiApp(light_workspace, gpus=[], mode="setup")
    async with app.run_test(size=(80, 24)) as pilot:
        await _ask_to_quit(pilot, app, 14)
        assert "training.epochs" in _dialog_text(app)
        await pilot.press("enter")  # the focused answer is "Stay"
        await settled(pilot)
        assert app.is_running and light_workspace.read_text() == original
        await pilot.press("ctrl+q")
        assert await until(pilot, lambda: isinstance(app.screen, UnsavedChangesScreen))
        await pilot.press("s")
        assert await until(pilot, lambda: not app.is_running)
    assert "epochs = 14" in light_workspace.read_text()

    app = LoraTuiApp(light_workspace, gpus=[], mode="setup")
    async with app.run_test(size=(80, 24)) as pilot:
        await _ask_to_quit(pilot, app, 3)
        await pilot.press("d")
        assert await until(pilot, lambda: not app.is_running)
    assert "epochs = 14" in light_workspace.read_text()


async def test_quitting_with_nothing_to_save_just_quits(light_workspace):
    app = LoraTuiApp(light_workspace, gpus=[], mode="setup")
    async with app.run_test(size=(80, 24)) as pilot:
        assert await until(pilot, lambda: assessed(app))
        await pilot.press("ctrl+q")
        assert await until(pilot, lambda: not app.is_running)
