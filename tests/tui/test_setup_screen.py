"""The settings form: typing changes the advice inline, fixes apply, bad input is caught."""

from __future__ import annotations

from loratui.app import LoraTuiApp
from loratui.screens import SetupScreen
from loratui.widgets.setting_field import SettingField
from tests.tui.conftest import assessed, settled, until
from trainer.contract.config.toml_io import loads


def _advice(screen, key: str) -> str:
    field = screen.query_one(f"#field-{key.replace('.', '-')}", SettingField)
    return "\n".join(str(s.render()) for s in field.query(".advice"))


async def _type(pilot, screen, key: str, text: str) -> None:
    screen.query_one(f"#field-{key.replace('.', '-')}", SettingField).focus_editor()
    await pilot.press("ctrl+a", "ctrl+k", *text)


async def test_typing_a_risky_rate_shows_the_danger_and_ctrl_f_fixes_it(light_workspace):
    app = LoraTuiApp(light_workspace, gpus=[], mode="setup")
    async with app.run_test(size=(100, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, SetupScreen)
        assert await until(pilot, lambda: assessed(app))
        assert "above 1e-3" not in _advice(screen, "optimizer.unet_lr")
        await _type(pilot, screen, "optimizer.unet_lr", "2e-3")
        assert await until(pilot, lambda: "above 1e-3" in _advice(screen, "optimizer.unet_lr"))
        assert "✖" in _advice(screen, "optimizer.unet_lr")
        await pilot.press("ctrl+f")
        # 12 images: the fix picks the gentle tiny-dataset rate.
        assert await until(pilot, lambda: app.workspace.config.optimizer.unet_lr == 3e-4)
        assert await until(pilot, lambda: assessed(app) and "above 1e-3" not in _advice(screen, "optimizer.unet_lr"))
        editor = screen.query_one("#editor-optimizer-unet_lr")
        assert editor.value == "0.0003"


async def test_text_that_does_not_parse_is_marked_and_blocks_the_start(light_workspace):
    app = LoraTuiApp(light_workspace, gpus=[], mode="setup")
    async with app.run_test(size=(100, 40)) as pilot:
        screen = app.screen
        assert await until(pilot, lambda: assessed(app))
        await _type(pilot, screen, "training.batch_size", "abc")
        await pilot.pause(0.1)
        assert "'abc' is not a whole number" in _advice(screen, "training.batch_size")
        assert screen.query_one("#editor-training-batch_size").has_class("-invalid")
        assert app.workspace.config.training.batch_size == 4  # the config keeps the last good value
        await pilot.press("ctrl+t")
        await settled(pilot)
        assert app.current_mode == "setup"  # refused: nothing starts from a form with bad input

        await _type(pilot, screen, "training.batch_size", "0")
        assert await until(pilot, lambda: assessed(app) and "below the minimum" in _advice(screen, "training.batch_size"))
        assert not app.workspace.assessment.startable


async def test_a_preset_fills_the_form_and_the_form_shows_what_differs(light_workspace):
    app = LoraTuiApp(light_workspace, gpus=[], mode="setup")
    async with app.run_test(size=(100, 40)) as pilot:
        screen = app.screen
        assert await until(pilot, lambda: assessed(app))
        # Keyboard only: open the preset list, go to its last entry (the tiny-dataset preset), pick it.
        screen.query_one("#preset").focus()
        await pilot.press("enter", "end", "enter")
        assert await until(pilot, lambda: app.workspace.config.training.batch_size == 2)
        assert app.workspace.preset.id == "tiny"
        assert await until(pilot, lambda: screen.query_one("#editor-dataset-repeats").value == "15")
        assert "0 values differ" in str(screen.query_one("#preset-diff").render())
        await _type(pilot, screen, "training.epochs", "18")
        assert await until(pilot, lambda: "1 value differs" in str(screen.query_one("#preset-diff").render()))
        field = screen.query_one("#field-training-epochs", SettingField)
        assert "preset: 15" in str(field.query_one(".setting-preset").render())


async def test_saving_keeps_relative_paths_and_a_backup(light_workspace):
    original = light_workspace.read_text()
    app = LoraTuiApp(light_workspace, gpus=[], mode="setup")
    async with app.run_test(size=(100, 40)) as pilot:
        screen = app.screen
        assert await until(pilot, lambda: assessed(app))
        await _type(pilot, screen, "training.epochs", "12")
        await until(pilot, lambda: app.workspace.config.training.epochs == 12)
        await pilot.press("ctrl+s")
        await pilot.pause(0.1)
    saved, problems = loads(light_workspace.read_text())
    assert saved.training.epochs == 12 and saved.dataset.path == "dataset" and saved.model.base == "model"
    assert (light_workspace.parent / "loratui.toml.bak").read_text() == original


async def test_advanced_mode_shows_every_setting(light_workspace):
    app = LoraTuiApp(light_workspace, gpus=[], mode="setup")
    async with app.run_test(size=(100, 40)) as pilot:
        screen = app.screen
        advanced = screen.query_one("#field-training-min_snr_gamma", SettingField)
        assert not advanced.display
        await pilot.press("f5")
        await pilot.pause(0.1)
        assert advanced.display
        assert app.workspace.advanced


async def test_ctrl_o_opens_another_config(light_workspace):
    other = light_workspace.parent / "other.toml"
    other.write_text(light_workspace.read_text().replace("epochs = 10", "epochs = 7"))
    app = LoraTuiApp(light_workspace, gpus=[], mode="setup")
    async with app.run_test(size=(100, 40)) as pilot:
        assert await until(pilot, lambda: assessed(app))
        await pilot.press("ctrl+o")
        await pilot.pause(0.1)
        await pilot.press("ctrl+a", "ctrl+k", *str(other), "enter")
        assert await until(pilot, lambda: app.workspace.path == other and assessed(app))
        assert app.screen.query_one("#editor-training-epochs").value == "7"


def _note(screen, key: str) -> str:
    note = screen.query_one(f"#field-{key.replace('.', '-')} .setting-note")
    return str(note.render()) if note.display else ""


async def test_the_form_says_what_auto_found_and_names_problems_on_hidden_settings(light_workspace):
    app = LoraTuiApp(light_workspace, gpus=[], mode="setup")
    async with app.run_test(size=(100, 40)) as pilot:
        screen = app.screen
        assert await until(pilot, lambda: assessed(app))
        assert _note(screen, "model.prediction").startswith("predicts the noise (epsilon), ")
        assert _note(screen, "model.arch") == ""
        # model.vae is an advanced setting, but a problem blocks the start: its field shows in basic mode.
        vae_field = screen.query_one("#field-model-vae", SettingField)
        assert not vae_field.display
        app.change_setting("model.vae", "no-such-vae.safetensors")
        assert await until(pilot, lambda: assessed(app) and "no-such-vae.safetensors does not exist"
                           in _advice(screen, "model.vae"))
        assert vae_field.display and not app.workspace.assessment.startable
        app.change_setting("model.vae", "")
        assert await until(pilot, lambda: assessed(app) and not vae_field.display)



async def test_ctrl_g_applies_every_fix_at_once_and_leaves_only_tips(light_workspace):
    """The light workspace is a tiny dataset (12 images) at batch 4: its fixes, one by one, used to fight."""
    app = LoraTuiApp(light_workspace, gpus=[], mode="setup")
    async with app.run_test(size=(80, 24)) as pilot:
        assert await until(pilot, lambda: assessed(app))
        assert {f.severity for f in app.workspace.assessment.findings} & {"warn", "danger"}
        await pilot.press("ctrl+g")
        assert await until(pilot, lambda: app.workspace.config.training.batch_size <= 2 and assessed(app))
        assert {f.severity for f in app.workspace.assessment.findings} <= {"tip"}, app.workspace.assessment.findings
        fixed = app.workspace.config
        await pilot.press("ctrl+g")
        await settled(pilot)
        assert app.workspace.config == fixed  # a second press changes nothing
