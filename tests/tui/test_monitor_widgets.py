"""LossPlot and SampleView inside a running app: plots rendered in a worker, pictures drawn from real PNGs."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image
from rich.text import Text
from textual.app import App, ComposeResult
from textual.geometry import Region

from loratui.monitor.plot import WAITING_TEXT, colours_from_theme, render_loss_plot
from loratui.terminal_image import UPPER_HALF
from loratui.themes import LORATUI_THEME
from loratui.widgets import LossPlot, SampleView
from loratui.widgets.sample_view import EMPTY_TEXT, sample_caption
from tests.tui.conftest import until


class MonitorApp(App):
    """The two widgets stacked, as on the train screen."""

    CSS = "LossPlot { height: 12; }"

    def __init__(self) -> None:
        super().__init__()
        self.register_theme(LORATUI_THEME)
        self.theme = LORATUI_THEME.name

    def compose(self) -> ComposeResult:
        yield LossPlot(id="plot")
        yield SampleView(id="samples")


def _screen_text(widget) -> str:
    """What ``widget`` draws, as plain lines (the same strips the compositor puts on the screen)."""
    width, height = widget.size
    return "\n".join(strip.text for strip in widget.render_lines(Region(0, 0, width, height)))


def _picture_text(view: SampleView) -> str:
    return _screen_text(view.query_one("#sample-picture"))


def _series(n: int):
    steps = list(range(n))
    loss = [0.3 + 0.7 / (1 + i * 0.05) + 0.03 * math.sin(i) for i in steps]
    smoothed = [0.3 + 0.7 / (1 + i * 0.05) for i in steps]
    lr = [1e-4] * n
    return steps, loss, smoothed, lr


def _png(path: Path, colour=(255, 0, 0), size=(64, 64)) -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


async def test_loss_plot_shows_a_plot_rendered_in_a_worker():
    app = MonitorApp()
    async with app.run_test(size=(80, 24)) as pilot:
        plot = app.query_one(LossPlot)
        assert WAITING_TEXT in _screen_text(plot)
        width, height = plot.size
        assert (width, height) == (80, 12)

        def render() -> None:
            # As the monitor does it: plotext off the UI thread, then show() on it.
            text = render_loss_plot(*_series(80), width, height, colours_from_theme(app.current_theme),
                                    title="run-20260101")
            app.call_from_thread(plot.show, text)

        app.run_worker(render, thread=True)
        await app.workers.wait_for_complete()
        await pilot.pause()
        shown = _screen_text(plot)
        assert "run-20260101" in shown
        assert "smoothed" in shown
        lines = shown.split("\n")
        assert len(lines) == height and all(len(line) == width for line in lines)
        assert plot.shown.plain.split("\n")[0] == lines[0]

        plot.show_waiting()
        await pilot.pause()
        assert WAITING_TEXT in _screen_text(plot)
        assert "run-20260101" not in _screen_text(plot)


async def test_loss_plot_cuts_a_plot_that_is_too_wide_instead_of_wrapping_it():
    app = MonitorApp()
    async with app.run_test(size=(80, 24)) as pilot:
        plot = app.query_one(LossPlot)
        wide = render_loss_plot(*_series(40), 120, 12, colours_from_theme(app.current_theme), title="wide")
        plot.show(wide)
        await pilot.pause()
        lines = _screen_text(plot).split("\n")
        assert len(lines) == 12
        assert lines[1].startswith(wide.plain.split("\n")[1][:80])


async def test_sample_view_starts_empty_and_says_so():
    app = MonitorApp()
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(SampleView)
        await pilot.pause()
        text = _picture_text(view)
        assert "No sample pictures yet" in " ".join(text.split())
        assert UPPER_HALF not in text
        assert not view.query_one("#sample-caption").display


async def test_sample_view_draws_a_png_with_half_blocks(tmp_path):
    red = _png(tmp_path / "step-100-s1.0.png")
    app = MonitorApp()
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(SampleView)
        view.show_images([red], "step 100 · a zkmascot on a beach")
        assert await until(pilot, lambda: UPPER_HALF in _picture_text(view))
        picture = view.query_one("#sample-picture")
        lines = [line for line in _picture_text(view).split("\n") if UPPER_HALF in line]
        # A square picture in square half-block pixels (two per cell, stacked): twice as wide as high.
        assert len(lines) == picture.content_size.height
        assert all(line.count(UPPER_HALF) == 2 * len(lines) for line in lines)
        # The cells carry the picture's colour.
        strip = picture.render_lines(Region(0, 0, *picture.size))[len(lines) // 2]
        colours = {tuple(seg.style.color.triplet) for seg in strip if UPPER_HALF in seg.text}
        assert colours == {(255, 0, 0)}
        caption = _screen_text(view.query_one("#sample-caption"))
        assert "step-100-s1.0.png" in caption and "a zkmascot on a beach" in caption
        assert view.paths == [red]

        view.show_images([], "")
        await pilot.pause()
        assert "No sample pictures yet" in " ".join(_picture_text(view).split())
        assert UPPER_HALF not in _picture_text(view)


async def test_sample_view_shows_a_round_side_by_side_and_redraws_on_resize(tmp_path):
    paths = [_png(tmp_path / "a.png", (255, 0, 0)), _png(tmp_path / "b.png", (0, 0, 255))]
    app = MonitorApp()
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(SampleView)
        view.show_images(paths, "step 5")
        assert await until(pilot, lambda: UPPER_HALF in _picture_text(view))
        before = max(line.count(UPPER_HALF) for line in _picture_text(view).split("\n"))
        assert before >= 2

        await pilot.resize_terminal(120, 40)
        assert await until(pilot, lambda: max(line.count(UPPER_HALF)
                                              for line in _picture_text(view).split("\n")) > before)
        picture = view.query_one("#sample-picture")
        strip = picture.render_lines(Region(0, 0, *picture.size))[picture.size.height // 2]
        colours = {tuple(seg.style.color.triplet) for seg in strip if UPPER_HALF in seg.text}
        assert colours == {(255, 0, 0), (0, 0, 255)}


async def test_sample_view_names_a_picture_it_cannot_read(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_text("not a png")
    app = MonitorApp()
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(SampleView)
        view.show_images([broken], "")
        assert await until(pilot, lambda: "cannot read broken.png" in _picture_text(view))
        assert "broken.png" in _screen_text(view.query_one("#sample-caption"))


def test_sample_caption_lists_what_is_known():
    assert sample_caption(Path("out/s-10.png"), 10, "a cat") == "s-10.png · step 10 · a cat"
    assert sample_caption(Path("s.png")) == "s.png"


def test_the_empty_text_is_plain_words():
    assert isinstance(EMPTY_TEXT, str) and "[" not in EMPTY_TEXT
    assert Text(EMPTY_TEXT).plain == EMPTY_TEXT
