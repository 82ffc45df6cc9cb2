"""The sample pictures of a run: the newest round side by side, with a caption line.

Pictures are drawn with half-block characters (``loratui.terminal_image``), which every 24-bit-colour
terminal shows, over SSH too. Loading and scaling a picture takes milliseconds, so it happens in a
thread worker, again whenever the widget changes size.

Where the optional ``textual-image`` package is installed and ``enable_terminal_graphics()`` was called
before the app started, terminals that speak Sixel or the Kitty graphics protocol get real pixels
instead; everything else keeps the half-blocks.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from PIL import Image
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Container
from textual.events import Resize
from textual.widget import Widget
from textual.widgets import Label, Static
from textual.worker import get_current_worker

from loratui.terminal_image import (
    RGB,
    fit_size,
    half_block_text,
    load_image,
    side_by_side,
    to_rgb,
)

EMPTY_TEXT = "No sample pictures yet. They show here as soon as the trainer draws some."
"""Shown before the first sampling round of a run."""
GAP = 1
"""Blank cells between two pictures (and a blank line between two rows of them)."""
MIN_PICTURE_WIDTH = 12
"""Pictures narrower than this are not worth drawing: fewer (the newest) pictures are shown instead."""


@dataclass(frozen=True)
class Grid:
    """How a round of pictures is laid out in the room there is."""

    shown: int
    """How many pictures (the newest) are drawn."""
    columns: int
    rows: int
    slot_width: int
    """Cells across one picture's slot."""
    slot_height: int
    """Lines down one picture's slot."""
    picture_width: int
    """Cells across each picture once fitted into its slot (what the layout makes as large as it can)."""


def picture_grid(count: int, width: int, height: int, aspect: float = 1.0) -> Grid | None:
    """The layout that draws the most of ``count`` pictures as large as they can be in ``width`` × ``height`` cells.

    Every arrangement of columns and rows is tried and the one giving the widest pictures wins, so a
    round of four fills a wide, low panel in one row and a tall one in two rows of two. Pictures are
    ``aspect`` (width ÷ height) in shape, drawn with two pixels per cell vertically. When even the best
    layout of all of them is narrower than ``MIN_PICTURE_WIDTH``, fewer are shown. None when there is no room.
    """
    layouts = [grid for grid in (_best_layout(shown, width, height, aspect) for shown in range(count, 0, -1))
               if grid is not None]
    if not layouts:
        return None
    if layouts[0].shown == count and layouts[0].picture_width >= MIN_PICTURE_WIDTH:
        return layouts[0]
    # Too small together: the fewest that make them larger, but never fewer for nothing.
    return max(layouts, key=lambda grid: (grid.picture_width, grid.shown))


def _best_layout(shown: int, width: int, height: int, aspect: float) -> Grid | None:
    """The arrangement of ``shown`` pictures in columns and rows that makes them widest."""
    best: Grid | None = None
    for columns in range(1, shown + 1):
        rows = math.ceil(shown / columns)
        slot_width = (width - GAP * (columns - 1)) // columns
        slot_height = (height - GAP * (rows - 1)) // rows
        if slot_width < 1 or slot_height < 1:
            continue
        picture = fit_size(max(1, round(100 * aspect)), 100, slot_width, slot_height)[0]
        if best is None or picture > best.picture_width:
            best = Grid(shown, columns, rows, slot_width, slot_height, picture)
    return best


_GRAPHICS_CELL = (16, 32)
"""Pixels per cell a picture is pre-scaled to for a pixel protocol (the widget scales it down the rest)."""


def enable_terminal_graphics() -> str | None:
    """Use Sixel or Kitty graphics for sample pictures when the terminal has them; call before ``App.run``.

    Needs the optional ``textual-image`` package. Importing it asks the terminal what it supports, and
    the answer can only be read before Textual takes over the terminal's input, hence the separate call.
    Returns ``"sixel"`` or ``"tgp"`` when a pixel protocol was found (SampleViews created afterwards use it),
    None when the package is missing, the output is not a terminal, or the terminal has neither.
    """
    stdout = sys.__stdout__
    if stdout is None or not stdout.isatty():
        return None
    try:
        from textual_image import renderable
        from textual_image.widget import SixelImage, TGPImage
    except Exception:  # noqa: BLE001 - missing, or broken on this platform: half-blocks still work
        return None
    if renderable.Image is renderable.SixelImage:
        SampleView.graphics_widget = SixelImage
        return "sixel"
    if renderable.Image is renderable.TGPImage:
        SampleView.graphics_widget = TGPImage
        return "tgp"
    return None


def sample_prompt_text(event: dict) -> str:
    """A sample event's prompt as the user wrote it: the text, then its own options (``--w 768 --d 3``) if any."""
    return " ".join(part for part in (str(event.get("prompt", "")), str(event.get("options") or "")) if part)


def sample_caption(path: Path, step: int | None = None, prompt: str = "") -> str:
    """A caption line for one sample picture: its file name, then the step and prompt when known."""
    parts = [path.name]
    if step is not None:
        parts.append(f"step {step}")
    if prompt:
        parts.append(prompt)
    return " · ".join(parts)


class _Picture(Static):
    """The half-block pictures; tells its SampleView when its size changes so they are drawn again."""

    def on_resize(self, event: Resize) -> None:
        if isinstance(self.parent, SampleView):
            self.parent.redraw()


class SampleView(Widget):
    """The newest sample pictures with a caption; call ``show_images`` when a sampling round finishes."""

    DEFAULT_CSS = """
    SampleView {
        layout: vertical;
        height: 1fr;
    }
    SampleView > #sample-picture {
        width: 1fr;
        height: 1fr;
        content-align: center middle;
        text-wrap: nowrap;
        text-overflow: clip;
        overflow: hidden;
    }
    SampleView.-empty > #sample-picture {
        color: $text-muted;
        text-wrap: wrap;
    }
    SampleView > #sample-graphics {
        height: 1fr;
        display: none;
        layout: grid;
        grid-gutter: 1 1;
    }
    SampleView.-graphics > #sample-graphics {
        display: block;
    }
    SampleView.-graphics > #sample-picture {
        display: none;
    }
    SampleView #sample-graphics > .sample-slot {
        width: 1fr;
        height: 1fr;
        align: center middle;
    }
    SampleView #sample-graphics > .sample-slot > * {
        width: auto;
        height: auto;
    }
    SampleView.-empty > #sample-caption {
        display: none;
    }
    SampleView > #sample-caption {
        width: 1fr;
        height: 1;
        color: $text-muted;
        text-align: center;
        /* One line, so the pictures keep the rest: what does not fit ends in "…". */
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    graphics_widget: ClassVar[type[Widget] | None] = None
    """The textual-image widget class for real pixels (set by ``enable_terminal_graphics``), or None."""

    def __init__(self, *, id: str | None = None, classes: str | None = None,
                 graphics: type[Widget] | None = None, empty_text: str = EMPTY_TEXT) -> None:
        """``graphics``: a textual-image widget class to use instead of half-blocks (default: the detected one).
        ``empty_text``: what shows while there is no picture."""
        super().__init__(id=id, classes=classes)
        self.empty_text = empty_text
        self.paths: list[Path] = []
        """The pictures on show, oldest first (for reading; call ``show_images`` to change them)."""
        self.caption = ""
        """The caption line on show."""
        self._graphics = graphics if graphics is not None else self.graphics_widget
        self._cache: dict[Path, tuple[int, Image.Image | None]] = {}
        self._drawn = 0  # number of the newest redraw: a slower, older worker's result is dropped
        self.add_class("-empty")

    def compose(self) -> ComposeResult:
        yield _Picture(self.empty_text, id="sample-picture", markup=False)
        yield Container(id="sample-graphics")
        yield Label("", id="sample-caption", markup=False)

    def show_images(self, paths: list[Path], caption: str, names: bool = True) -> None:
        """Show ``paths`` (one sampling round, oldest first) with ``caption`` under them; [] shows the empty state.

        The caption line starts with the file names (unless ``names`` is False: a caller whose caption
        says what each picture is saves the room); ``caption`` (step, prompt...) follows.
        """
        self.paths = [Path(path) for path in paths]
        listed = ", ".join(path.name for path in self.paths) if names else ""
        self.caption = " · ".join(part for part in (listed, caption) if part)
        self.query_one("#sample-caption", Label).update(self.caption)
        self.set_class(not self.paths, "-empty")
        # Before measuring: the graphics area takes up room only while it is displayed.
        self.set_class(bool(self.paths) and self._graphics is not None, "-graphics")
        if not self.paths:
            self._drawn += 1
            self.query_one("#sample-picture", Static).update(self.empty_text)
            self.query_one("#sample-graphics").remove_children()
            return
        # After the refresh: the caption line just (dis)appeared, so the picture's room is not final yet.
        self.call_after_refresh(self.redraw)

    def redraw(self) -> None:
        """Draw the pictures again at the current size (in a thread worker); called on every resize."""
        if not self.paths:
            return
        area = self.query_one("#sample-graphics" if self._graphics else "#sample-picture")
        width, height = area.content_size
        if width < 2 or height < 1:
            return  # not laid out yet, or on a hidden tab: the resize on showing draws it
        self._drawn += 1
        _, background = self.background_colors
        self._draw(list(self.paths), width, height, background.rgb, self._drawn)

    @work(thread=True, exclusive=True, group="sample-view", exit_on_error=False)
    def _draw(self, paths: list[Path], width: int, height: int, background: RGB, number: int) -> None:
        """Load, scale and draw ``paths`` into ``width`` × ``height`` cells (runs in a thread)."""
        worker = get_current_worker()
        # The newest picture sets the shape: every picture of a round has the same size.
        newest = self._load(paths[-1])
        aspect = newest.width / newest.height if newest is not None and newest.height else 1.0
        grid = picture_grid(len(paths), width, height, aspect)
        if grid is None:
            return
        shown = paths[-grid.shown:]
        images = [self._load(path) for path in shown]
        if worker.is_cancelled:
            return
        if self._graphics is not None:
            scaled = [_scaled_copy(image, grid.slot_width, grid.slot_height, background) if image is not None
                      else None for image in images]
            self.app.call_from_thread(self._show_graphics, shown, scaled, grid, number)
            return
        pictures = [half_block_text(image, grid.slot_width, grid.slot_height, background) if image is not None
                    else Text(f"cannot read {path.name}"[:grid.slot_width], style="italic")
                    for path, image in zip(shown, images)]
        rows = [side_by_side(pictures[start:start + grid.columns], GAP)
                for start in range(0, len(pictures), grid.columns)]
        text = Text("\n" * (GAP + 1), no_wrap=True, end="").join(rows)
        if not worker.is_cancelled:
            self.app.call_from_thread(self._show_text, text, number)

    def on_resize(self, event: Resize) -> None:
        # Half-block pictures redraw on their own area's resize (_Picture); pixel pictures on this one.
        if self._graphics is not None:
            self.call_after_refresh(self.redraw)

    def _load(self, path: Path) -> Image.Image | None:
        """The picture at ``path``, from the cache while the file is unchanged (runs in the worker)."""
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            return None
        cached = self._cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        image = load_image(path)
        # Keep only this round's pictures: a long run samples hundreds of them.
        self._cache = {p: entry for p, entry in self._cache.items() if p in self.paths}
        self._cache[path] = (stamp, image)
        return image

    def _show_text(self, text: Text, number: int) -> None:
        if number != self._drawn:
            return
        self.query_one("#sample-picture", Static).update(text)

    def _show_graphics(self, paths: list[Path], images: list[Image.Image | None], grid: Grid, number: int) -> None:
        if number != self._drawn or self._graphics is None:
            return
        box = self.query_one("#sample-graphics")
        box.styles.grid_size_columns = grid.columns
        box.styles.grid_size_rows = grid.rows
        box.remove_children()
        slots = []
        for path, image in zip(paths, images):
            content = self._graphics(image) if image is not None else Label(f"cannot read {path.name}")
            slots.append(Container(content, classes="sample-slot"))
        box.mount_all(slots)


def _scaled_copy(image: Image.Image, width: int, height: int, background: RGB) -> Image.Image:
    """``image`` as RGB, shrunk to about the pixels ``width`` × ``height`` cells can show, so the graphics
    widget (which encodes on the UI thread) works on a small picture."""
    copy = to_rgb(image, background).copy()
    copy.thumbnail((width * _GRAPHICS_CELL[0], height * _GRAPHICS_CELL[1]))
    return copy
