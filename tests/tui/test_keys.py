"""The key scheme: letters typed into a field stay text, help and Esc work from anywhere, the
palette reaches every action, and the focused control is marked."""

from __future__ import annotations

import inspect

from textual.color import Color
from textual.command import CommandPalette
from textual.widgets import Input, Label

from loratui.app import LoraTuiApp
from loratui.commands import APP_COMMANDS
from loratui.screens import ChecklistScreen, DatasetScreen, HelpScreen, SetupScreen, TrainScreen
from loratui.widgets.setting_field import SettingField
from tests.tui.conftest import assessed, settled, until

SCREENS = {"checklist": ChecklistScreen, "dataset": DatasetScreen, "setup": SetupScreen, "train": TrainScreen}


async def test_shortcut_letters_typed_into_the_config_field_stay_text(light_workspace, tmp_path):
    app = LoraTuiApp(light_workspace, gpus=[], mode="train", offer_live_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        box = app.screen.query_one("#config-path", Input)
        box.focus()
        await pilot.press("end", *"sxcgrai?")
        await settled(pilot)
        assert box.value == f"{light_workspace}sxcgrai?"
        assert not isinstance(app.screen, HelpScreen)
        assert app.screen.run is None  # `s` started nothing
        assert not (tmp_path / "output").exists() or not any((tmp_path / "output").iterdir())


async def test_help_opens_from_inside_a_field_and_lists_every_key_of_the_screen(light_workspace):
    app = LoraTuiApp(light_workspace, gpus=[], mode="setup", offer_live_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        field = app.screen.query_one("#field-training-epochs", SettingField)
        field.focus_editor()
        await pilot.press("?")  # in a field, ? is text
        assert field.editor_widget().value.endswith("?") and not isinstance(app.screen, HelpScreen)
        await pilot.press("f9")
        assert isinstance(app.screen, HelpScreen)
        text = app.screen.query_one("Markdown").source
        for binding in SetupScreen.BINDINGS:
            assert binding.description in text
        await pilot.press("escape")
        assert isinstance(app.screen, SetupScreen)


async def test_esc_leaves_a_text_field_so_letters_are_keys_again(light_workspace):
    app = LoraTuiApp(light_workspace, gpus=[], mode="setup", offer_live_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.screen.query_one("#field-training-epochs", SettingField).focus_editor()
        await pilot.pause()
        assert isinstance(app.focused, Input)
        await pilot.press("escape")
        assert not isinstance(app.focused, Input)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)


def test_every_palette_command_names_an_action_its_screen_has():
    for command in APP_COMMANDS:
        owner = LoraTuiApp if command.mode == "app" else SCREENS[command.mode]
        name = command.action.split("(")[0]
        assert callable(getattr(owner, f"action_{name}", None)), command.title
        if command.mode != "app":  # actions that take no arguments: the palette runs them as a key would
            params = inspect.signature(getattr(owner, f"action_{name}")).parameters
            assert list(params) == ["self"], command.title


async def _palette(pilot, app, query: str) -> None:
    await pilot.press("ctrl+p")
    assert await until(pilot, lambda: isinstance(app.screen, CommandPalette))
    await pilot.press(*query)
    await pilot.pause(0.3)
    await pilot.press("enter")
    await settled(pilot)


async def test_the_palette_runs_app_actions_from_any_screen(light_workspace):
    app = LoraTuiApp(light_workspace, gpus=[], mode="checklist", offer_live_runs=False)
    async with app.run_test(size=(100, 30)) as pilot:
        assert await until(pilot, lambda: assessed(app))
        await _palette(pilot, app, "choose a preset")
        assert await until(pilot, lambda: isinstance(app.screen, SetupScreen))
        assert await until(pilot, lambda: app.screen.query_one("#preset").expanded)
        await pilot.press("escape")
        await _palette(pilot, app, "open the dataset")
        assert await until(pilot, lambda: app.current_mode == "dataset")
        await _palette(pilot, app, "apply every fix")
        assert await until(pilot, lambda: app.current_mode == "setup")
        assert await until(pilot, lambda: assessed(app) and app.workspace.dirty)  # the fixes changed the config
        await _palette(pilot, app, "keys of this screen")
        assert await until(pilot, lambda: isinstance(app.screen, HelpScreen))


async def test_the_focused_setting_is_marked_whatever_its_editor(light_workspace):
    """Switches and lists show no cursor, so the row's label carries the mark: exactly the focused
    field's label stands out."""
    app = LoraTuiApp(light_workspace, gpus=[], mode="setup", offer_live_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        fields = [field for field in screen.fields() if field.display]  # basic mode: every kind of editor
        accent = Color.parse(app.current_theme.accent)
        kinds = set()
        for field in fields:
            field.focus_editor()
            await pilot.pause()
            await pilot.pause()  # the styles of the rows around the focus follow a refresh later
            kinds.add(type(field.editor_widget()).__name__)
            marked = [f.key for f in fields if f.query_one(".setting-label", Label).styles.background
                      == accent]
            assert marked == [field.key]
            help_line = str(screen.query_one("#field-help").render())
            assert help_line.startswith(field.key)
        assert kinds == {"Input", "Select", "Switch"}
