"""The loss plot as a Rich ``Text``, built with plotext from plain lists.

Building a plot costs milliseconds to tens of milliseconds (plotext's time grows with the number of
points), so the train screen calls :func:`render_loss_plot` from a thread worker about once a second and
hands the result to :class:`loratui.widgets.LossPlot`. Nothing here touches a widget or the app.

Colours come from the Textual theme (:func:`colours_from_theme`), never from literals here, so the plot
follows whichever theme the user picks.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from plotext._figure import _figure_class
from rich.style import Style
from rich.text import Text
from textual.color import Color, ColorParseError
from textual.theme import Theme

RGB = tuple[int, int, int]
"""An (r, g, b) colour, each 0–255: the form plotext accepts for a series colour."""

MIN_WIDTH = 20
"""Narrower than this the axes leave no room for data: a short text is shown instead."""
MIN_HEIGHT = 6
"""Lower than this a framed plot has no data rows: a short text is shown instead."""
_MIN_LR_HEIGHT = 12
"""Below this total height the learning-rate panel is dropped so the loss keeps readable rows."""
_LR_ROWS = 5
"""The smallest learning-rate panel: its frame, two rows of curve and the step labels."""
LEGEND = {"loss": "loss", "smoothed": "smoothed", "validation": "validation", "lr": "learning rate"}
"""The legend's words for each series ..."""
SHORT_LEGEND = {"loss": "loss", "smoothed": "smooth", "validation": "val", "lr": "lr"}
"""... and the shorter ones used when the full legend leaves the title no room."""
_MARK = "━"
"""The legend's sample of each series' line, drawn in that series' colour."""
_TITLE_ROOM = 12
"""Cells of the title the full legend must leave free (else the short words are used)."""

WAITING_TEXT = "Waiting for the first steps…"
"""Shown while there is nothing to plot."""

# plotext is not written for threads (its module-level figure is shared; helpers keep module state):
# every build runs under this lock even though each uses its own figure object.
_PLOTEXT_LOCK = threading.Lock()


@dataclass(frozen=True)
class PlotColours:
    """The colours of the loss plot, as RGB tuples (take them from the theme with ``colours_from_theme``)."""

    loss: RGB
    """The raw per-step loss."""
    smoothed: RGB
    """The smoothed loss, drawn over the raw one."""
    lr: RGB
    """The learning-rate curve."""
    foreground: RGB
    """Axes, tick labels, title and legend text."""
    background: RGB | None
    """The plot's canvas; None leaves it transparent so the widget's own background shows."""
    validation: RGB | None = None
    """The validation loss (None: the smoothed loss's colour, which a theme always has)."""

    @property
    def validation_colour(self) -> RGB:
        """The colour the validation curve is drawn in."""
        return self.validation if self.validation is not None else self.smoothed


def _rgb(value: str | None, fallback: str) -> RGB:
    """Parse a theme variable (``#RRGGBB``, ``#RRGGBBAA`` or ``rgb(...)``) into an RGB tuple."""
    try:
        return Color.parse(value or fallback).rgb
    except ColorParseError:
        return Color.parse(fallback).rgb


def colours_from_theme(theme: Theme) -> PlotColours:
    """The plot colours of ``theme``, taken from its generated CSS variables ($primary, $secondary, ...).

    The variables are the ones Textual itself resolves for ``$primary`` and friends, so the plot matches
    the rest of the screen even for a theme that only sets ``primary``: raw loss in $secondary, the
    smoothed loss in $primary, the validation loss in $success, the learning rate in $accent, axes in
    $foreground on $background.
    """
    variables = theme.to_color_system().generate()
    background = _rgb(variables.get("background"), theme.primary)
    foreground = _rgb(variables.get("foreground"), theme.primary)
    smoothed = _rgb(variables.get("primary"), theme.primary)
    loss = _rgb(variables.get("secondary"), theme.primary)
    if loss == smoothed:
        # A one-colour theme would draw both loss lines alike: dim the raw one towards the background.
        loss = Color(*smoothed).blend(Color(*background), 0.5).rgb
    lr = _rgb(variables.get("accent"), theme.primary)
    validation = _rgb(variables.get("success"), theme.primary)
    if validation in (loss, smoothed):
        # Told apart from both training curves even in a theme whose warning colour is one of theirs.
        validation = Color(*validation).blend(Color(*foreground), 0.5).rgb
    return PlotColours(loss=loss, smoothed=smoothed, lr=lr, foreground=foreground, background=background,
                       validation=validation)


def _finite(xs: list[float], ys: list[float]) -> tuple[list[float], list[float]]:
    """Pairs of ``xs``/``ys`` where both are finite numbers (a diverged run logs NaN loss)."""
    pairs = [(x, y) for x, y in zip(xs, ys) if _is_finite(x) and _is_finite(y)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _is_finite(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _thin(xs: list[float], ys: list[float], limit: int) -> tuple[list[float], list[float]]:
    """At most about ``limit`` evenly spaced points, always keeping the newest one."""
    if len(xs) <= limit or limit < 2:
        return xs, ys
    stride = math.ceil(len(xs) / limit)
    idx = list(range(0, len(xs), stride))
    if idx[-1] != len(xs) - 1:
        idx.append(len(xs) - 1)
    return [xs[i] for i in idx], [ys[i] for i in idx]


def _span(values: list[float]) -> tuple[float, float]:
    """(low, high) of ``values``, widened when they are all equal so plotext never gets a zero range."""
    low, high = min(values), max(values)
    if high - low <= abs(high) * 1e-12:
        pad = abs(high) * 0.05 or 1.0
        low, high = low - pad, high + pad
    return low, high


def _number(value: float) -> str:
    """A short tick label for a loss value."""
    return f"{value:.3g}"


def _small(value: float) -> str:
    """A short tick label for a learning rate (typically 1e-6 … 1e-3)."""
    return "0" if value == 0 else f"{value:.1e}"


def _step(value: float) -> str:
    """A short tick label for a step number (12.5k beyond four digits)."""
    if abs(value) >= 10_000:
        return f"{value / 1000:.1f}k"
    return f"{value:.0f}"


def _fit(title: str, room: int) -> str:
    """``title`` shortened to ``room`` cells: plotext centres it over the plot area and silently drops
    a title that would overflow either side, so the room is the width less twice the axis labels."""
    return title if len(title) <= room else title[: max(room - 1, 0)] + "…"


def _ticks(low: float, high: float, count: int) -> list[float]:
    return [low + (high - low) * i / (count - 1) for i in range(count)]


def _step_ticks(low: float, high: float, count: int) -> list[float]:
    """Up to ``count`` whole-step ticks in [low, high]; steps are integers, so "2 2" labels never show."""
    whole = sorted({float(round(v)) for v in _ticks(low, high, count) if low <= round(v) <= high})
    return whole if len(whole) >= 2 else _ticks(low, high, count)


def _panel(colours: PlotColours, width: int, height: int) -> _figure_class:
    """A fresh plotext figure of ``width`` × ``height`` styled from ``colours`` (no plotext colour names).

    A new figure object per panel, rather than plotext's module-level figure, means no state (subplots,
    limits, data) survives from one build to the next; ``plt.clear_figure`` only clears the active subplot.
    """
    figure = _figure_class()
    # The master figure is otherwise clipped to the size of the terminal the process happens to have.
    figure._limit_size(False, False)
    figure.plotsize(width, height)
    figure.theme("clear")
    canvas = colours.background if colours.background is not None else "default"
    figure.canvas_color(canvas)
    figure.axes_color(canvas)
    figure.ticks_color(colours.foreground)
    return figure


def legend_line(title: str, series: list[str], width: int, colours: PlotColours) -> Text:
    """The line above the plot: ``title`` on the left, a legend of ``series`` (keys of ``LEGEND``) on the right.

    Kept off the plot so it never hides the newest data, which is where a legend inside the frame sits.
    Exactly ``width`` cells; a title that does not fit is shortened with "…", never dropped.
    """
    background = colours.background
    base = Style(color=Color(*colours.foreground).rich_color,
                 bgcolor=Color(*background).rich_color if background is not None else None)
    for words in (LEGEND, SHORT_LEGEND):
        legend = "  ".join(f"{_MARK} {words[name]}" for name in series)
        room = width - len(legend) - 3  # a cell at each edge and two between title and legend
        if room >= min(len(title), _TITLE_ROOM):
            break
    line = Text(" ", style=base, no_wrap=True, end="")
    shown = _fit(title, max(room, 0)) if title else ""
    line.append(shown, style=base)
    line.append(" " * max(width - len(legend) - len(shown) - 2, 1), style=base)
    for index, name in enumerate(series):
        if index:
            line.append("  ", style=base)
        colour = colours.validation_colour if name == "validation" else getattr(colours, name)
        line.append(_MARK, style=base + Style(color=Color(*colour).rich_color))
        line.append(f" {words[name]}", style=base)
    line.append(" ", style=base)
    line.truncate(width, pad=True)
    return line


def render_loss_plot(steps: list[float], loss: list[float], smoothed: list[float], lr: list[float],
                     width: int, height: int, colours: PlotColours, title: str = "",
                     validation_steps: list[float] = (), validation_loss: list[float] = ()) -> Text:
    """The loss plot as ``height`` lines of ``width`` cells; safe to call from any thread.

    The first line holds ``title`` and the legend (``legend_line``), outside the plot. Below it the raw
    loss and its smoothed curve, and under those, sharing their step axis, a smaller panel with the
    learning rate (dropped when fewer than 12 lines are available). ``loss``, ``smoothed`` and ``lr`` run parallel
    to ``steps``; an empty ``smoothed`` or ``lr`` is simply not drawn, and non-finite values (a diverged
    run logs NaN) are skipped. ``validation_steps``/``validation_loss`` (with a validation split) are
    drawn over the loss on the same axes, in the theme's colour for them and in the legend. The caller
    should have thinned the series to about ``width`` points: longer input is thinned here so a slip
    never stalls a worker. Empty input gives
    :data:`WAITING_TEXT`, and a size under 20×6 a short message, instead of a plot.
    """
    width, height = int(width), int(height)
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        return Text("Too small for the loss plot"[: max(width, 0)], no_wrap=True)
    loss_x, loss_y = _thin(*_finite(steps, loss), limit=2 * width)
    if not loss_x:
        return Text(WAITING_TEXT, no_wrap=True)
    smooth_x, smooth_y = _thin(*_finite(steps, smoothed), limit=2 * width)
    lr_x, lr_y = _thin(*_finite(steps, lr), limit=2 * width)
    val_x, val_y = _thin(*_finite(list(validation_steps), list(validation_loss)), limit=2 * width)
    show_lr = bool(lr_x) and height >= _MIN_LR_HEIGHT

    x_low, x_high = _span(loss_x + smooth_x + lr_x + val_x)
    loss_low, loss_high = _span(loss_y + smooth_y + val_y)
    loss_ticks = _ticks(loss_low, loss_high, 3)
    loss_labels = [_number(v) for v in loss_ticks]
    lr_low, lr_high = _span(lr_y) if show_lr else (0.0, 1.0)
    lr_ticks = _ticks(lr_low, lr_high, 2)
    lr_labels = [_small(v) for v in lr_ticks]
    # Same label width in both panels, so their plot areas (and step axes) line up column for column.
    label_width = max(len(label) for label in loss_labels + (lr_labels if show_lr else []))
    x_ticks = _step_ticks(x_low, x_high, max(2, min(6, width // 14)))
    x_labels = [_step(v) for v in x_ticks]
    rows = height - 1  # the legend line takes the first
    top_height = rows - max(_LR_ROWS, round(rows / 3)) if show_lr else rows
    drawn = ["loss"] + (["smoothed"] if smooth_x else []) + (["validation"] if val_x else []) + \
        (["lr"] if show_lr else [])
    legend = legend_line(title, drawn, width, colours)

    with _PLOTEXT_LOCK:
        top = _panel(colours, width, top_height)
        top.plot(loss_x, loss_y, color=colours.loss, marker="braille")
        if smooth_x:
            top.plot(smooth_x, smooth_y, color=colours.smoothed, marker="hd")
        if val_x:
            # Drawn last, so the few validation points stay visible over the dense training curves.
            top.plot(val_x, val_y, color=colours.validation_colour, marker="hd")
        top.xlim(x_low, x_high)
        top.ylim(loss_low, loss_high)
        top.yticks(loss_ticks, [label.rjust(label_width) for label in loss_labels])
        if show_lr:
            # The two panels share the step axis: only the bottom one spends a line on its labels.
            top.xticks([], [])
        else:
            top.xticks(x_ticks, x_labels)
        panels = [top.build()]
        if show_lr:
            bottom = _panel(colours, width, rows - top_height)
            bottom.plot(lr_x, lr_y, color=colours.lr, marker="braille")
            bottom.xlim(x_low, x_high)
            bottom.ylim(lr_low, lr_high)
            bottom.yticks(lr_ticks, [label.rjust(label_width) for label in lr_labels])
            bottom.xticks(x_ticks, x_labels)
            panels.append(bottom.build())
    ansi = "\n".join(panel.rstrip("\n") for panel in panels)
    plot = Text.from_ansi(ansi, no_wrap=True)
    return Text("\n", no_wrap=True, end="").join([legend, plot])
