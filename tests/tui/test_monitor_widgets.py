"""The monitor's widgets inside a running app: plots rendered in a worker, pictures drawn from real PNGs,
the run panel's clock and fitted lines, and a log that keeps its end in view."""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

from PIL import Image
from rich.text import Text
from textual.app import App, ComposeResult
from textual.geometry import Region
from textual.widgets import ProgressBar, Static

from loratui.monitor.plot import WAITING_TEXT, colours_from_theme, render_loss_plot
from loratui.runs.state import RunState
from loratui.terminal_image import UPPER_HALF
from loratui.themes import LORATUI_THEME
from loratui.widgets import LossPlot, RunStatus, SampleView
from loratui.widgets.run_monitor import RunLog
from loratui.widgets.sample_view import EMPTY_TEXT, picture_grid, sample_caption, sample_prompt_text
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


def test_a_sample_prompt_is_shown_with_its_own_options():
    assert sample_prompt_text({"prompt": "zk, smile", "options": "--w 768 --d 3"}) == "zk, smile --w 768 --d 3"
    assert sample_prompt_text({"prompt": "zk", "options": ""}) == "zk"
    assert sample_prompt_text({"prompt": "zk"}) == "zk"  # a run from before prompts had options


def test_sample_caption_lists_what_is_known():
    assert sample_caption(Path("out/s-10.png"), 10, "a cat") == "s-10.png · step 10 · a cat"
    assert sample_caption(Path("s.png")) == "s.png"


def test_the_empty_text_is_plain_words():
    assert isinstance(EMPTY_TEXT, str) and "[" not in EMPTY_TEXT
    assert Text(EMPTY_TEXT).plain == EMPTY_TEXT


# The run panel ------------------------------------------------------------------------------------


class StatusApp(App):
    """The run panel as the train screen styles it (border and padding from the app's stylesheet)."""

    CSS = "RunStatus { height: auto; padding: 0 1; border: round $primary; }"

    def compose(self) -> ComposeResult:
        yield RunStatus(id="run-status")


def _training_state(now: float, *, since: float, last_event: float, total: int = 1000) -> RunState:
    """A run on step 10 whose first step came ``since`` seconds before ``now`` and its last event ``last_event``."""
    state = RunState()
    state.apply({"type": "start", "time": now - since - 1, "total_steps": total, "epochs": 10, "images": 20,
                 "device": "NVIDIA RTX 4090", "precision": "bf16"})
    state.apply({"type": "step", "time": now - since, "step": 1, "total_steps": total, "epoch": 1, "loss": 0.1,
                 "lr": 1e-4, "seconds_per_step": 1.2})
    state.apply({"type": "step", "time": now - last_event, "step": 10, "total_steps": total, "epoch": 1,
                 "loss": 0.1, "lr": 1e-4, "seconds_per_step": 1.2, "vram_peak_gib": 6.5, "vram_total_gib": 24.0})
    return state


def _elapsed(clock: str) -> int:
    minutes, seconds = re.search(r"elapsed (\d+):(\d\d)", clock).groups()
    return int(minutes) * 60 + int(seconds)


async def test_the_clock_keeps_running_between_events_while_samples_are_drawn():
    app = StatusApp()
    async with app.run_test(size=(80, 24)) as pilot:
        status = app.query_one(RunStatus)
        now = time.time()
        state = _training_state(now, since=130, last_event=100)
        state.apply({"type": "status", "time": now - 100, "phase": "sampling", "current": 0, "total": 4,
                     "message": "Drawing 4 sample images at step 10"})
        state.apply({"type": "sample", "time": now - 90, "step": 10, "path": "p00-w0.7.png", "strength": 0.7,
                     "index": 1, "total": 4})
        status.show(state)
        await pilot.pause()
        assert status.border_title.startswith("Drawing sample 2/4")
        # The last event was 90 s ago, yet the clock counts to now: 2:10, not 0:40.
        first = _elapsed(status.clock)
        assert 130 <= first <= 135
        # No event arrives, and the clock moves on by itself.
        assert await until(pilot, lambda: _elapsed(status.clock) > first, timeout=10)
        assert status.state is state


async def test_a_finished_run_has_a_still_clock_and_the_next_run_a_fresh_bar():
    app = StatusApp()
    async with app.run_test(size=(80, 24)) as pilot:
        status = app.query_one(RunStatus)
        bar = status.query_one(ProgressBar)
        now = time.time()
        state = _training_state(now, since=130, last_event=100, total=10)
        state.apply({"type": "done", "time": now - 100, "step": 10, "output": "x.safetensors"})
        status.show(state)
        await pilot.pause()
        assert bar.percentage == 1.0 and status.clock == "elapsed 0:30"
        assert "x.safetensors" in str(status.query_one("#run-message").render())

        status.show(RunState())  # a new run, still loading: nothing of the last one stays
        await pilot.pause()
        assert bar.total is None and bar.percentage is None
        assert status.clock == "" and status.text == "Starting…"
        assert not status.query_one("#run-message").display


async def test_every_line_of_the_panel_fits_80_columns_without_cutting_a_figure():
    app = StatusApp()
    async with app.run_test(size=(80, 24)) as pilot:
        status = app.query_one(RunStatus)
        now = time.time()
        state = _training_state(now, since=4000, last_event=0, total=20_000)
        status.show(state)
        await pilot.pause()
        inside = status.content_region
        for line in (status.query_one("#run-text"), status.query_one("#run-clock")):
            # Inside the panel, and as wide as its text: nothing cut at the edge.
            assert line.region.x >= inside.x and line.region.right <= inside.right
            drawn = line.render_lines(Region(0, 0, *line.region.size))
            assert "".join(segment.text for segment in drawn[0]).strip() == str(line.render())
        assert status.query_one("#run-progress").region.width >= 20  # the bar keeps room to mean something
        # Whole figures only: "ETA 6:39:48", never "ETA 6:3".
        assert re.fullmatch(r"elapsed 1:06:4\d · ETA 6:39:48", status.clock)
        assert status.text == "step 10/20000 · epoch 1/10 · loss 0.1000 · 1.20 s/it · GPU 6.5/24 GiB"
        assert status.border_title == "Training · NVIDIA RTX 4090, bf16"

        await pilot.resize_terminal(60, 24)  # narrower: figures are left out, none is cut
        await pilot.pause()
        assert status.text == "step 10/20000 · epoch 1/10 · loss 0.1000 · 1.20 s/it"
        assert len(status.text) <= status.content_size.width


# The log ------------------------------------------------------------------------------------------


class LogApp(App):
    """A RunLog under a banner that can appear and take some of its room, as the run panel's last line does."""

    CSS = "#banner { height: 4; display: none; } RunLog { height: 1fr; }"

    def compose(self) -> ComposeResult:
        yield Static("banner", id="banner")
        yield RunLog(id="log")


def _last_visible_line(log: RunLog) -> str:
    return [line for line in _screen_text(log).split("\n") if line.strip()][-1].strip()


async def test_the_log_keeps_its_end_in_view_when_lines_come_and_when_it_shrinks():
    app = LogApp()
    async with app.run_test(size=(80, 24)) as pilot:
        log = app.query_one(RunLog)
        log.add_lines([f"line {n}" for n in range(60)])
        await pilot.pause()
        assert _last_visible_line(log) == "line 59"
        # Something above takes some of the log's room (a status line appearing when the run ends): the
        # plain Log would stay where it was, its last lines out of view, and stop following.
        app.query_one("#banner").display = True
        await pilot.pause()
        assert log.size.height == 20
        assert _last_visible_line(log) == "line 59"
        log.add_lines(["done in 6:38"])
        await pilot.pause()
        assert _last_visible_line(log) == "done in 6:38"
        log.write_line("a line of the app's own")
        await pilot.pause()
        assert _last_visible_line(log) == "a line of the app's own"


async def test_the_log_stays_where_the_reader_scrolled_until_they_go_back_to_the_end():
    app = LogApp()
    async with app.run_test(size=(80, 24)) as pilot:
        log = app.query_one(RunLog)
        log.add_lines([f"line {n}" for n in range(60)])
        await pilot.pause()
        log.focus()
        await pilot.press("home")
        await pilot.pause()
        assert not log.following
        log.add_lines(["new line"])
        await pilot.pause()
        assert log.scroll_y == 0 and "line 0" in _screen_text(log)
        await pilot.press("end")
        await pilot.pause()
        assert log.following and _last_visible_line(log) == "new line"
        log.add_lines(["newer line"])
        await pilot.pause()
        assert _last_visible_line(log) == "newer line"


# Laying out a round of samples --------------------------------------------------------------------


def test_a_round_of_pictures_is_laid_out_to_make_them_as_large_as_the_room_allows():
    # A wide, low panel (the train screen at 80×24): four in a row, each far wider than 8 cells.
    wide = picture_grid(4, 78, 12)
    assert (wide.shown, wide.columns, wide.rows) == (4, 4, 1) and wide.picture_width == 18
    # A tall one (the samples zoomed): two rows of two, larger still.
    tall = picture_grid(4, 78, 21)
    assert (tall.columns, tall.rows) == (2, 2) and tall.picture_width > wide.picture_width
    # Two pictures use the height they have.
    assert picture_grid(2, 78, 12).picture_width == 24
    # Too many for the room: the newest are shown, larger, rather than all of them as specks ...
    few = picture_grid(4, 30, 10)
    assert few.shown == 1 and few.picture_width == 20
    # ... but never fewer for nothing.
    assert picture_grid(2, 78, 4).shown == 2
    # Wide pictures lay out by their own shape.
    assert picture_grid(2, 78, 12, aspect=2.0).picture_width == 38
    assert picture_grid(3, 0, 10) is None
