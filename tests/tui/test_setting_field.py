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

    def catch_up(self, count: int | None = None) -> None:
        """Apply the first ``count`` held changes (all by default), as the form does: take each one,
        then show the config again."""
        field = self.query_one(SettingField)
        count = len(self.held) if count is None else count
        for value in self.held[:count]:
            self.value = value
            field.applied()
            field.set_value(value)
        del self.held[:count]

    def reassessed(self) -> None:
        """A check of the config finished: the form shows the config as it is now, again."""
        self.query_one(SettingField).set_value(self.value)


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


async def test_a_check_finishing_between_echoes_of_repeated_text_changes_nothing():
    """Typing that comes back to earlier text ("st", backspace, "t") sends the same value twice. A
    check that finishes while the later copies are still on their way must not make the field
    forget them: their echoes would then look like news and put older text (with the cursor
    clamped into it) back in the box."""
    app = LateEchoForm("model.base", "model")
    async with app.run_test() as pilot:
        app.query_one(SettingField).focus_editor()
        await pilot.press("ctrl+a", "ctrl+k", *"st", "backspace", "t")
        await settled(pilot)
        assert app.held == ["", "s", "st", "s", "st"]
        app.catch_up(3)
        app.reassessed()  # its result shows the config at "st", with "s", "st" still on their way
        app.catch_up(1)
        app.reassessed()
        app.catch_up()
        editor = app.query_one(Input)
        assert editor.value == "st" and editor.cursor_position == len("st")
        await pilot.press(*"able")
        app.catch_up()
        assert editor.value == "stable" and app.value == "stable"


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


def _busy_assess(original, seconds: float):
    """``Workspace.assess`` that also keeps the CPU busy (holding the GIL in slices), as a loaded
    machine does: the check itself stays the real one."""
    import time

    def slow(self, *args, **kwargs):
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            sum(range(20_000))
        return original(self, *args, **kwargs)

    return slow


async def test_typing_while_the_check_runs_slowly_keeps_exactly_what_was_typed(light_workspace, monkeypatch):
    """Keys typed while the live check runs (and its results arrive late, in between keys) land
    where the cursor is: the box, the config and the saved file all hold exactly the typed text.
    The typing revisits earlier values (backspace, retype) and the terminal loses focus once, the
    two ways an echo used to be mistaken for news."""
    from loratui.app import LoraTuiApp
    from loratui.workspace import Workspace
    from textual import events

    monkeypatch.setattr(Workspace, "assess", _busy_assess(Workspace.assess, 0.05))
    monkeypatch.setattr("loratui.app.ASSESS_DELAY", 0.001)  # check after every key, the worst case
    app = LoraTuiApp(light_workspace, gpus=[], mode="setup")
    wanted = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    async with app.run_test(size=(100, 40)) as pilot:
        field = app.screen.query_one("#field-model-base", SettingField)
        field.focus_editor()
        await pilot.press("ctrl+a", "ctrl+k", *"stab", "backspace", "backspace", *"able-diffusion-v1-5/")
        app.post_message(events.AppBlur())
        await pilot.press(*"stable-diffusion-v1-5x", "backspace")
        app.post_message(events.AppFocus())
        await pilot.pause()
        await settled(pilot)
        editor = field.editor_widget()
        assert editor.value == wanted
        assert editor.cursor_position == len(wanted)
        assert app.workspace.config.model.base == wanted
        await pilot.press("ctrl+s")
        await settled(pilot)
    assert f'base = "{wanted}"' in light_workspace.read_text()
