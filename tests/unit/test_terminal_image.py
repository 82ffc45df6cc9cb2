"""Half-block pictures: which colour lands in which half of which cell, sizes, image modes, bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from rich.text import Text

from loratui.terminal_image import (
    UPPER_HALF,
    fit_size,
    half_block_text,
    load_image,
    side_by_side,
    to_rgb,
)

RED = (255, 0, 0)
BLUE = (0, 0, 255)


def _two_colour(width: int, height: int, top=RED, bottom=BLUE, mode: str = "RGB") -> Image.Image:
    """Top half ``top``, bottom half ``bottom``."""
    image = Image.new("RGB", (width, height), bottom)
    image.paste(top, (0, 0, width, height // 2))
    return image.convert(mode) if mode != "RGB" else image


def _cells(text: Text) -> list[list[tuple[tuple[int, int, int] | None, tuple[int, int, int] | None]]]:
    """(foreground, background) RGB of every cell, line by line, read back from the Text's spans."""
    styles = [None] * len(text.plain)
    for span in text.spans:
        for offset in range(span.start, span.end):
            styles[offset] = span.style
    grid, offset = [], 0
    for line in text.plain.split("\n"):
        row = []
        for _ in line:
            style = styles[offset]
            fg = tuple(style.color.triplet) if style and style.color else None
            bg = tuple(style.bgcolor.triplet) if style and style.bgcolor else None
            row.append((fg, bg))
            offset += 1
        grid.append(row)
        offset += 1
    return grid


def _near(colour, expected, tolerance: int = 12) -> bool:
    return colour is not None and all(abs(a - b) <= tolerance for a, b in zip(colour, expected))


def test_each_cell_shows_its_upper_pixel_as_foreground_and_lower_as_background():
    # 10×10 pixels fit 10 cells × 5 lines exactly: no scaling, so every pixel is known.
    text = half_block_text(_two_colour(10, 10), 10, 5)
    assert text.plain == "\n".join([UPPER_HALF * 10] * 5)
    grid = _cells(text)
    assert all(cell == (RED, RED) for cell in grid[0] + grid[1])      # pixel rows 0–3: red
    assert all(cell == (RED, BLUE) for cell in grid[2])               # rows 4 (red) and 5 (blue)
    assert all(cell == (BLUE, BLUE) for cell in grid[3] + grid[4])    # rows 6–9: blue


def test_a_scaled_picture_keeps_red_above_blue():
    text = half_block_text(_two_colour(400, 400), 20, 10)
    grid = _cells(text)
    assert len(grid) == 10 and all(len(row) == 20 for row in grid)
    # Away from the seam the colours survive the resampling.
    assert all(_near(fg, RED) and _near(bg, RED) for fg, bg in grid[1] + grid[2])
    assert all(_near(fg, BLUE) and _near(bg, BLUE) for fg, bg in grid[7] + grid[8])


def test_flat_areas_share_spans():
    text = half_block_text(_two_colour(10, 10), 10, 5)
    # One run per line: 5 spans for 50 cells.
    assert len(text.spans) == 5


@pytest.mark.parametrize(("size", "room", "cells"), [
    ((200, 100), (80, 40), (80, 20)),    # wide: width-bound, 80×40 px = 20 lines
    ((100, 200), (80, 40), (40, 40)),    # tall: height-bound, 40×80 px
    ((512, 512), (80, 40), (80, 40)),    # square in a room of square pixels
    ((512, 512), (80, 10), (20, 10)),    # square in a flat room
    ((10, 10), (80, 40), (80, 40)),      # small pictures are scaled up to fill the room
    ((1000, 10), (40, 20), (40, 1)),     # a sliver keeps at least one line
])
def test_the_aspect_ratio_is_kept(size, room, cells):
    text = half_block_text(Image.new("RGB", size, RED), *room)
    lines = text.plain.split("\n")
    assert (len(lines[0]), len(lines)) == cells
    assert all(len(line) == cells[0] for line in lines)
    assert len(lines[0]) <= room[0] and len(lines) <= room[1]


def test_fit_size_uses_square_pixels():
    assert fit_size(300, 150, 80, 40) == (80, 40)
    assert fit_size(150, 300, 80, 40) == (40, 80)
    assert fit_size(0, 10, 80, 40) == (0, 0)
    assert fit_size(10, 10, 0, 40) == (0, 0)


def test_an_odd_number_of_pixel_rows_leaves_the_last_lower_half_to_the_background():
    image = Image.new("RGB", (4, 3), RED)
    plain = half_block_text(image, 4, 2)
    assert _cells(plain)[-1] == [(RED, None)] * 4
    filled = half_block_text(image, 4, 2, background=(1, 2, 3))
    assert _cells(filled)[-1] == [(RED, (1, 2, 3))] * 4


def test_no_room_gives_an_empty_text():
    assert half_block_text(Image.new("RGB", (10, 10)), 0, 5).plain == ""


def test_transparent_pixels_take_the_background_colour():
    image = Image.new("RGBA", (8, 8), (0, 255, 0, 0))
    image.paste((255, 0, 0, 255), (0, 0, 8, 4))
    grid = _cells(half_block_text(image, 8, 4, background=(10, 20, 30)))
    assert grid[0][0] == (RED, RED)
    assert grid[3][0] == ((10, 20, 30), (10, 20, 30))
    black = _cells(half_block_text(image, 8, 4))
    assert black[3][0] == ((0, 0, 0), (0, 0, 0))


@pytest.mark.parametrize("mode", ["RGBA", "L", "LA", "P", "1", "CMYK", "I", "F"])
def test_other_modes_render(mode):
    image = _two_colour(16, 16, top=(250, 250, 250), bottom=(5, 5, 5), mode=mode)
    grid = _cells(half_block_text(image, 16, 8))
    assert len(grid) == 8 and all(len(row) == 16 for row in grid)
    top_fg, bottom_fg = grid[0][0][0], grid[-1][0][0]
    assert sum(top_fg) > 600 and sum(bottom_fg) < 60


def test_a_palette_picture_with_transparency_is_composited():
    image = Image.new("P", (4, 4), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.paste(1, (0, 2, 4, 4))
    image.info["transparency"] = 1
    grid = _cells(half_block_text(image, 4, 2, background=(7, 7, 7)))
    assert grid[0][0] == (RED, RED)
    assert grid[1][0] == ((7, 7, 7), (7, 7, 7))


def test_16_bit_pictures_are_scaled_not_clipped():
    # Little-endian 16-bit samples: four rows at 32768, four at 0.
    image = Image.frombytes("I;16", (8, 8), (32768).to_bytes(2, "little") * 32 + bytes(64))
    assert image.getpixel((0, 0)) == 32768
    grid = _cells(half_block_text(image, 8, 4))
    # Half of 65535 is mid-grey; clipping at 255 would make it white.
    assert _near(grid[0][0][0], (128, 128, 128), tolerance=2)
    assert grid[-1][0][0] == (0, 0, 0)


def test_to_rgb_leaves_rgb_pictures_alone():
    image = Image.new("RGB", (3, 3), BLUE)
    assert to_rgb(image) is image


def test_side_by_side_puts_pictures_next_to_each_other():
    wide = half_block_text(Image.new("RGB", (20, 10), RED), 20, 5)
    tall = half_block_text(Image.new("RGB", (10, 20), BLUE), 10, 10)
    joined = side_by_side([wide, tall], gap=2)
    lines = joined.plain.split("\n")
    assert len(lines) == 10
    assert all(len(line) == 20 + 2 + 10 for line in lines)
    assert lines[0] == UPPER_HALF * 20 + "  " + UPPER_HALF * 10
    assert lines[9] == " " * 22 + UPPER_HALF * 10
    grid = _cells(joined)
    assert grid[0][0] == (RED, RED) and grid[0][22] == (BLUE, BLUE)
    assert side_by_side([]).plain == ""


def test_load_image_reads_a_png(tmp_path):
    path = tmp_path / "sample.png"
    _two_colour(30, 20).save(path)
    image = load_image(path)
    assert image is not None
    assert image.size == (30, 20)
    assert image.getpixel((0, 0)) == RED


@pytest.mark.parametrize("content", ["truncated", "text", "empty"])
def test_load_image_returns_none_for_bad_files(tmp_path, content):
    path = tmp_path / "bad.png"
    if content == "truncated":
        good = tmp_path / "good.png"
        Image.effect_noise((64, 64), 50).convert("RGB").save(good)
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif content == "text":
        path.write_text("not a picture\n")
    else:
        path.write_bytes(b"")
    assert load_image(path) is None


def test_load_image_returns_none_for_missing_paths_and_folders(tmp_path):
    assert load_image(tmp_path / "missing.png") is None
    assert load_image(tmp_path) is None
    assert load_image(str(Path(tmp_path) / "missing.jpg")) is None
