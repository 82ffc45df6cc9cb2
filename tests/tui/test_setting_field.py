"""One setting field on its own: what the user types stays what they typed.

The form sends each change to the app, which applies it and shows the whole config again. On a busy
machine over SSH that echo comes back after later keys were typed; a field that took the echo as a
new value put older text back in the box and the cursor in the middle, so the next keys landed
there (``stable-diffusion-v1-5/stable-diffusion-v1-5`` was saved as ``sion-v1-5/stable-diffusion-
v1-5table-diffus``). The harness here plays a form that echoes late, as the real one does under load.
"""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets import Input

from loratui.widgets.setting_field import SettingField
from tests.tui.conftest import settled
from trainer.contract.config.schema import FIELDS


class LateEchoForm(App):
    """A form with one field that holds back every change, to echo it when asked (``catch_up``)."""

    def __init__(self, key: str, value) -> None:
        super().__init__()
        self.key, self.value = key, value
        self.held: list = []

    def compose(self) -> ComposeResult:
        yield SettingField(FIELDS[self.key], self.value, advanced=False)

    def on_setting_field_changed(self, event: SettingField.Changed) -> None:
        self.held.append(event.value)

    def catch_up(self) -> None:
        field = self.query_one(SettingField)
        for value in self.held:  # what the form does for each change it applies: show the config again
            self.value = value
            field.set_value(value)
        self.held.clear()


async def test_a_late_echo_never_puts_older_text_back():
    app = LateEchoForm("model.base", "model")
    async with app.run_test() as pilot:
        app.query_one(SettingField).focus_editor()
        await pilot.press("ctrl+a", "ctrl+k", *"org/name")
        await settled(pilot)
        assert app.held[-1] == "org/name" and len(app.held) > 1
        app.catch_up()
        await pilot.press(*"-v2")
        editor = app.query_one(Input)
        assert editor.value == "org/name-v2" and editor.cursor_position == len("org/name-v2")
        app.catch_up()
        assert app.value == "org/name-v2" and editor.value == "org/name-v2"


async def test_a_value_set_from_elsewhere_still_shows():
    """A fix or a preset changes the config while the user is not typing: the box follows."""
    app = LateEchoForm("training.batch_size", 4)
    async with app.run_test() as pilot:
        app.query_one(SettingField).focus_editor()
        await pilot.press("ctrl+a", "ctrl+k", "8")
        await settled(pilot)
        app.catch_up()
        app.query_one(SettingField).set_value(2)  # a fix, after the echo of the typing
        assert app.query_one(Input).value == "2"
        await pilot.press("tab")
        app.query_one(SettingField).set_value(1)  # a preset, with focus elsewhere
        assert app.query_one(Input).value == "1"
