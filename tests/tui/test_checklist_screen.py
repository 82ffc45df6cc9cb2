"""The quick-start checklist: ticks follow the real state, Enter goes to the fix, ? shows help."""

from __future__ import annotations

from textual.widgets import OptionList

from loratui.app import LoraTuiApp
from loratui.checklist import ITEMS, checklist
from loratui.screens import ChecklistScreen, HelpScreen, SetupScreen
from tests.tui.conftest import assessed, until


def _state(app, label: str):
    return next(s for s in checklist(app.workspace) if s.item.label.startswith(label))


def _shown(screen) -> str:
    options = screen.query_one(OptionList)
    return "\n".join(str(options.get_option_at_index(i).prompt) for i in range(options.option_count))


async def test_a_new_workspace_opens_on_the_checklist(light_workspace):
    app = LoraTuiApp(light_workspace, gpus=[])
    async with app.run_test(size=(80, 24)) as pilot:
        assert isinstance(app.screen, ChecklistScreen)
        await pilot.pause(0.1)


async def test_a_workspace_with_runs_opens_on_the_train_screen(light_workspace):
    (light_workspace.parent / "runs" / "lora-20260101-000000").mkdir(parents=True)
    app = LoraTuiApp(light_workspace, gpus=[])
    async with app.run_test(size=(80, 24)) as pilot:
        assert await until(pilot, lambda: app.current_mode == "train")


async def test_items_tick_as_the_state_changes(light_workspace):
    app = LoraTuiApp(light_workspace, gpus=[])
    async with app.run_test(size=(100, 40)) as pilot:
        screen = app.screen
        assert await until(pilot, lambda: assessed(app))
        images = _state(app, "Dataset has 20+")
        # 12 images: a tiny dataset, which the guide calls doable; the checklist agrees with the advice.
        assert images.done and "12 images: a tiny dataset" in images.why
        assert _state(app, "Character defaults").done
        assert _state(app, "You know what").done  # the saved config names its kind
        assert await until(pilot, lambda: "12 images: a tiny dataset" in _shown(screen))

        app.change_setting("network.dim", 16)
        assert await until(pilot, lambda: "The network is 16 dim" in _shown(screen))
        assert not _state(app, "Character defaults").done
        app.change_setting("network.dim", 8)
        assert await until(pilot, lambda: "The network is 16 dim" not in _shown(screen))

        # 12 images × 10 repeats × 10 epochs ÷ 4 = 300 steps; a tiny dataset aims for 800–1200, and 30
        # epochs give 900.
        steps = _state(app, "Steps calculated")
        assert not steps.done and steps.label == "Steps calculated: 800–1200 (tiny dataset)"
        assert "Steps calculated: 800–1200 (tiny dataset)" in _shown(screen)
        app.change_setting("training.epochs", 30)
        assert await until(pilot, lambda: assessed(app) and _state(app, "Steps calculated").done)


async def test_enter_goes_to_the_setting_that_fixes_an_item(light_workspace):
    app = LoraTuiApp(light_workspace, gpus=[])
    async with app.run_test(size=(100, 40)) as pilot:
        assert await until(pilot, lambda: assessed(app))
        options = app.screen.query_one(OptionList)
        target = next(i for i, item in enumerate(ITEMS) if item.label.startswith("Cosine schedule"))
        options.highlighted = options.get_option_index(f"item-{target}")
        await pilot.press("enter")
        assert await until(pilot, lambda: isinstance(app.screen, SetupScreen))
        await pilot.pause(0.2)
        assert app.screen.focused is app.screen.query_one("#editor-scheduler-name")


async def test_question_mark_opens_the_troubleshooting_help(light_workspace):
    app = LoraTuiApp(light_workspace, gpus=[])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause(0.1)
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one("Markdown").source)
        assert "Out of GPU memory" in text and "Enter" in text
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert isinstance(app.screen, ChecklistScreen)
