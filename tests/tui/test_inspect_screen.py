"""The inspect screen with Textual's Pilot at 80×24: type a path, read the report, scroll, Esc back."""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.widgets import Input, Static

from loratui.app import LoraTuiApp
from loratui.screens.inspect import InspectScreen
from tests.tui.conftest import until
from tests.unit.lora_files import write_foreign_lora


def report_text(screen: InspectScreen) -> str:
    return str(screen.query_one("#inspect-report", Static).render())


async def test_typing_a_path_shows_the_report_and_esc_goes_back(light_workspace, tmp_path):
    lora = write_foreign_lora(tmp_path / "mychar.safetensors")
    app = LoraTuiApp(light_workspace, gpus=[], mode="checklist", offer_live_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await until(pilot, lambda: app.current_mode == "checklist")
        before = app.screen
        app.push_screen(InspectScreen())
        assert await until(pilot, lambda: isinstance(app.screen, InspectScreen) and app.screen.query("#inspect-path"))
        screen = app.screen
        assert await until(pilot, lambda: screen.query_one("#inspect-path", Input).has_focus)
        await pilot.press(*str(lora), "enter")  # keyboard only: the path typed character by character
        assert await until(pilot, lambda: screen.report is not None)
        text = report_text(screen)
        assert "LoCon · dim varies" in text and "Blocks" in text and "mychar" in text
        scroll = screen.query_one("#inspect-scroll", VerticalScroll)
        assert scroll.has_focus  # the report takes the keys once it is there
        await pilot.press("pagedown")
        assert await until(pilot, lambda: scroll.scroll_y > 0)
        await pilot.press("escape")
        assert await until(pilot, lambda: app.screen is before)


async def test_a_file_that_is_not_a_lora_shows_why_and_a_given_path_is_read_at_once(light_workspace, tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    good = write_foreign_lora(tmp_path / "mychar.safetensors")
    app = LoraTuiApp(light_workspace, gpus=[], mode="checklist", offer_live_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await until(pilot, lambda: app.current_mode == "checklist")
        app.push_screen(InspectScreen(broken))
        assert await until(pilot, lambda: isinstance(app.screen, InspectScreen) and app.screen.error is not None)
        screen = app.screen
        assert screen.report is None and "not valid JSON" in report_text(screen) and str(broken) in report_text(screen)
        field = screen.query_one("#inspect-path", Input)
        field.focus()
        field.value = ""
        await pilot.press(*str(good), "enter")
        assert await until(pilot, lambda: screen.report is not None and screen.error is None)
        assert "SD1.5" in report_text(screen)


async def test_a_file_above_the_guides_range_shows_the_resize_command(light_workspace, tmp_path):
    from tests.unit.test_resize_command import _sparse_lora

    big = _sparse_lora(tmp_path / "big.safetensors", 80, 1280, 512)  # 210 MB of header-true sparse data
    app = LoraTuiApp(light_workspace, gpus=[], mode="checklist", offer_live_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await until(pilot, lambda: app.current_mode == "checklist")
        app.push_screen(InspectScreen(big))
        assert await until(pilot, lambda: isinstance(app.screen, InspectScreen) and app.screen.report is not None)
        screen = app.screen
        offer = screen.report.resize
        assert offer is not None and offer.dim == 240
        assert f"loratui resize {big} --dim 240 --out {tmp_path / 'big-dim240.safetensors'}" in report_text(screen)
