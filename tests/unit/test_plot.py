"""The loss plot renderer: sizes, odd inputs, theme colours and rendering from several threads at once."""

from __future__ import annotations

import math
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from textual.color import Color
from textual.theme import BUILTIN_THEMES, Theme

import loratui.monitor.plot
from loratui.monitor.plot import WAITING_TEXT, PlotColours, colours_from_theme, render_loss_plot
from loratui.themes import LORATUI_THEME

COLOURS = colours_from_theme(LORATUI_THEME)


def _series(n: int, start: int = 0) -> tuple[list[float], list[float], list[float], list[float]]:
    """A plausible run: noisy falling loss, its smoothing, and a warm-up-then-flat learning rate."""
    steps = [float(start + i) for i in range(n)]
    loss = [0.2 + 0.8 / (1 + i * 0.05) + 0.04 * math.sin(i * 1.7) for i in range(n)]
    smoothed = [0.2 + 0.8 / (1 + i * 0.05) for i in range(n)]
    lr = [1e-4 * min(1.0, (i + 1) / 10) for i in range(n)]
    return steps, loss, smoothed, lr


def _lines(text) -> list[str]:
    return text.plain.split("\n")


def _foregrounds(text) -> set[tuple[int, int, int]]:
    return {tuple(span.style.color.triplet) for span in text.spans
            if not isinstance(span.style, str) and span.style.color and span.style.color.triplet}


def _backgrounds(text) -> set[tuple[int, int, int]]:
    return {tuple(span.style.bgcolor.triplet) for span in text.spans
            if not isinstance(span.style, str) and span.style.bgcolor and span.style.bgcolor.triplet}


@pytest.mark.parametrize(("width", "height"), [(80, 16), (40, 12), (120, 30), (20, 6), (30, 9), (200, 10)])
def test_the_plot_has_the_requested_size(width, height):
    text = render_loss_plot(*_series(80), width, height, COLOURS, title="run-1")
    lines = _lines(text)
    assert len(lines) == height
    # plotext pads every line to the full width; none may be wider or the widget would wrap it.
    assert max(len(line) for line in lines) == width
    assert all(len(line) <= width for line in lines)


def test_the_plot_shows_title_legend_and_both_panels():
    text = render_loss_plot(*_series(80), 80, 16, COLOURS, title="run-1")
    plain = text.plain
    assert "run-1" in _lines(text)[0]
    assert "loss" in plain and "smoothed" in plain
    # The learning-rate panel's tick labels are in scientific notation, the loss panel's are not.
    assert "e-04" in plain or "e-05" in plain
    # Two framed panels: two top-left corners.
    assert plain.count("┌") == 2


def test_a_short_plot_drops_the_learning_rate_panel():
    text = render_loss_plot(*_series(80), 60, 8, COLOURS)
    assert len(_lines(text)) == 8
    assert text.plain.count("┌") == 1
    assert "e-0" not in text.plain


def test_a_long_title_is_shortened_rather_than_dropped():
    title = "a very long run name that cannot possibly fit above a narrow plot"
    text = render_loss_plot(*_series(20), 40, 12, COLOURS, title=title)
    first = _lines(text)[0]
    assert "a very" in first and "…" in first
    assert len(first) == 40


def test_empty_input_says_it_is_waiting():
    text = render_loss_plot([], [], [], [], 80, 16, COLOURS, title="run-1")
    assert text.plain == WAITING_TEXT


def test_only_non_finite_losses_count_as_empty():
    text = render_loss_plot([1, 2], [math.nan, math.inf], [], [], 80, 16, COLOURS)
    assert text.plain == WAITING_TEXT


def test_nan_values_are_skipped():
    steps, loss, smoothed, lr = _series(40)
    loss[10] = math.nan
    smoothed[11] = math.inf
    text = render_loss_plot(steps, loss, smoothed, lr, 60, 14, COLOURS)
    assert len(_lines(text)) == 14
    assert "nan" not in text.plain.lower()


def test_a_single_point_plots():
    text = render_loss_plot([7.0], [0.3], [0.3], [1e-4], 60, 14, COLOURS, title="one")
    assert len(_lines(text)) == 14
    assert "one" in text.plain


def test_constant_values_plot():
    n = 30
    text = render_loss_plot(list(range(n)), [0.5] * n, [0.5] * n, [2e-4] * n, 60, 14, COLOURS)
    assert len(_lines(text)) == 14
    assert max(len(line) for line in _lines(text)) == 60


def test_all_zero_values_plot():
    n = 10
    text = render_loss_plot(list(range(n)), [0.0] * n, [], [0.0] * n, 40, 12, COLOURS)
    assert len(_lines(text)) == 12


def test_missing_smoothed_and_lr_series_are_left_out():
    steps, loss, _, _ = _series(50)
    text = render_loss_plot(steps, loss, [], [], 60, 14, COLOURS)
    assert len(_lines(text)) == 14
    assert "smoothed" not in text.plain
    assert text.plain.count("┌") == 1


@pytest.mark.parametrize(("width", "height"), [(19, 16), (80, 5), (0, 0), (5, 3), (-4, 10)])
def test_tiny_sizes_give_a_short_text(width, height):
    text = render_loss_plot(*_series(30), width, height, COLOURS)
    assert "\n" not in text.plain
    assert len(text.plain) <= max(width, 0)


def test_too_many_points_are_thinned_to_keep_the_size():
    steps, loss, smoothed, lr = _series(20_000)
    text = render_loss_plot(steps, loss, smoothed, lr, 80, 16, COLOURS)
    assert len(_lines(text)) == 16
    # The step axis still reaches the newest step.
    assert "20.0k" in _lines(text)[-1] or "19999" in _lines(text)[-1]


def test_theme_colours_come_from_the_theme_variables():
    variables = LORATUI_THEME.to_color_system().generate()
    assert COLOURS.smoothed == Color.parse(variables["primary"]).rgb
    assert COLOURS.loss == Color.parse(variables["secondary"]).rgb
    assert COLOURS.lr == Color.parse(variables["accent"]).rgb
    assert COLOURS.foreground == Color.parse(variables["foreground"]).rgb
    assert COLOURS.background == Color.parse(variables["background"]).rgb
    # And those are the registered theme's own colours (Textual may round a channel by one).
    declared = Color.parse(LORATUI_THEME.primary).rgb
    assert all(abs(a - b) <= 2 for a, b in zip(COLOURS.smoothed, declared))


def test_the_plot_is_drawn_in_the_theme_colours():
    text = render_loss_plot(*_series(80), 80, 16, COLOURS, title="run-1")
    foregrounds = _foregrounds(text)
    assert {COLOURS.loss, COLOURS.smoothed, COLOURS.lr, COLOURS.foreground} <= foregrounds
    assert _backgrounds(text) == {COLOURS.background}


def test_another_theme_gives_another_plot():
    light = colours_from_theme(BUILTIN_THEMES["textual-light"])
    assert light.background != COLOURS.background
    text = render_loss_plot(*_series(80), 80, 16, light)
    assert _backgrounds(text) == {light.background}
    assert light.smoothed in _foregrounds(text)


def test_a_one_colour_theme_still_tells_raw_from_smoothed_loss():
    colours = colours_from_theme(Theme(name="mono", primary="#00FF00"))
    assert colours.loss != colours.smoothed


def test_a_transparent_background_sets_no_background_colour():
    colours = PlotColours(loss=COLOURS.loss, smoothed=COLOURS.smoothed, lr=COLOURS.lr,
                          foreground=COLOURS.foreground, background=None)
    text = render_loss_plot(*_series(40), 60, 14, colours)
    assert _backgrounds(text) == set()
    assert COLOURS.smoothed in _foregrounds(text)


def test_the_module_has_no_colour_literals():
    source = Path(loratui.monitor.plot.__file__).read_text(encoding="utf-8")
    code = re.sub(r'""".*?"""', "", source, flags=re.DOTALL)
    assert not re.search(r"#[0-9A-Fa-f]{6}\b", code)
    assert not re.search(r"\(\s*\d{1,3}\s*,\s*\d{1,3}\s*,\s*\d{1,3}\s*\)", code)
    for name in ("red", "green", "blue", "cyan", "magenta", "yellow", "orange"):
        assert f'"{name}"' not in code and f"'{name}'" not in code


def test_four_threads_rendering_at_once_each_get_their_own_plot():
    sizes = [(80, 16), (50, 12), (120, 24), (36, 10)]
    start = threading.Barrier(len(sizes))

    def render(index: int) -> list:
        width, height = sizes[index]
        start.wait()
        results = []
        for round_ in range(5):
            steps, loss, smoothed, lr = _series(60 + 40 * index, start=1000 * index)
            results.append(render_loss_plot(steps, loss, smoothed, lr, width, height, COLOURS,
                                            title=f"thread-{index}-{round_}"))
        return results

    with ThreadPoolExecutor(max_workers=len(sizes)) as pool:
        outcomes = list(pool.map(render, range(len(sizes))))
    for index, results in enumerate(outcomes):
        width, height = sizes[index]
        for round_, text in enumerate(results):
            lines = _lines(text)
            assert len(lines) == height
            assert max(len(line) for line in lines) == width
            assert f"thread-{index}-{round_}" in lines[0]
            # Each thread's own step range on its axis: no data leaked in from another thread's plot.
            assert str(1000 * index) in lines[-1] or f"{index}.0k" in lines[-1]
