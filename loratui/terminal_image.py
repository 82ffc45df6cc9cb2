"""Pictures in a terminal with half-block characters, for the sample images of a run.

Each cell shows two vertical pixels: the upper half-block ``▀`` in the upper pixel's colour over a
background of the lower pixel's colour. A terminal cell is about twice as tall as it is wide, so the
two half-cells are close to square and an image keeps its proportions when it is fitted into
``width`` × ``2*height`` pixels.

This works in every terminal with 24-bit colour, over SSH too. Rendering is plain Python and Pillow, so
the widget runs it in a thread worker; an 80×40 render takes a few milliseconds.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from PIL import Image
from rich.color import Color, ColorTriplet
from rich.style import Style
from rich.text import Span, Text

RGB = tuple[int, int, int]
"""An (r, g, b) colour, each 0–255."""

UPPER_HALF = "▀"
"""The character of every image cell: its foreground is the upper pixel, its background the lower one."""

_HIGH_BIT_DEPTH = {"I;16", "I;16B", "I;16L", "I;16N"}


def load_image(path: Path | str) -> Image.Image | None:
    """The decoded image at ``path``, or None when it is missing, unreadable or damaged (never raises).

    The pixels are decoded here, not lazily, so a truncated file fails now and not in the middle of a
    render; the file is closed before returning.
    """
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except Exception:  # noqa: BLE001 - Pillow raises many types (OSError, SyntaxError, struct.error...) for bad files
        return None


def to_rgb(image: Image.Image, background: RGB = (0, 0, 0)) -> Image.Image:
    """``image`` as an RGB image: transparency composited on ``background``, 16-bit and float scaled to 8-bit."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _HIGH_BIT_DEPTH or mode in ("I", "F"):
        # A plain convert("L") clips these at 255, which turns most 16-bit pictures white: scale instead.
        _, high = image.getextrema() if mode in ("I", "F") else (0, 65535)
        scale = 255.0 / high if high > 255 else 1.0
        return image.convert("F").point(lambda v: v * scale).convert("L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    base = Image.new("RGBA", rgba.size, (*background, 255))
    return Image.alpha_composite(base, rgba).convert("RGB")


def fit_size(image_width: int, image_height: int, width: int, height: int) -> tuple[int, int]:
    """The pixel size (w, h) that fits an image into ``width`` × ``height`` half-block cells, keeping its shape.

    Half-block pixels are square, so the room is ``width`` × ``2*height`` pixels; small images are
    scaled up to fill it. Both sides are at least one pixel.
    """
    if image_width <= 0 or image_height <= 0 or width <= 0 or height <= 0:
        return 0, 0
    scale = min(width / image_width, 2 * height / image_height)
    return max(1, min(width, round(image_width * scale))), max(1, min(2 * height, round(image_height * scale)))


def half_block_text(image: Image.Image, width: int, height: int, background: RGB | None = None) -> Text:
    """``image`` as a Rich ``Text`` of at most ``width`` × ``height`` cells, keeping its aspect ratio.

    The text is exactly as large as the fitted image (it is not padded): ``fit_size(...)[0]`` cells wide
    and half its pixel height (rounded up) lines high. Transparent pixels are composited on
    ``background`` (black when None); when the image has an odd number of pixel rows, the last line's
    lower halves take ``background``, or the terminal's own background when None.
    Safe to call from a worker thread.
    """
    columns, rows = fit_size(image.width, image.height, width, height)
    if columns == 0:
        return Text("")
    pixels = to_rgb(image, background or (0, 0, 0))
    if pixels.size != (columns, rows):
        # Lanczos with a reducing gap: a large sample shrinks in a few ms with little aliasing.
        pixels = pixels.resize((columns, rows), Image.Resampling.LANCZOS, reducing_gap=3.0)
    data = pixels.tobytes()
    stride = columns * 3
    bottom_fill = bytes(background) if background is not None else None

    styles: dict[bytes, Style] = {}
    plain: list[str] = []
    spans: list[Span] = []
    offset = 0
    for y in range(0, rows, 2):
        top_row = data[y * stride:(y + 1) * stride]
        bottom_row = data[(y + 1) * stride:(y + 2) * stride] if y + 1 < rows else None
        run_key = b""
        run_start = offset
        for x in range(0, stride, 3):
            top = top_row[x:x + 3]
            bottom = bottom_row[x:x + 3] if bottom_row is not None else bottom_fill
            key = top + bottom if bottom is not None else top
            # Neighbouring cells of one colour pair share one span: flat areas cost almost nothing.
            if key != run_key:
                if run_key:
                    spans.append(Span(run_start, offset, styles[run_key]))
                if key not in styles:
                    styles[key] = _style(top, bottom)
                run_key, run_start = key, offset
            offset += 1
        spans.append(Span(run_start, offset, styles[run_key]))
        plain.append(UPPER_HALF * columns)
        offset += 1  # the newline between lines
    return Text("\n".join(plain), spans=spans, no_wrap=True, end="")


# Building a Rich Color costs microseconds and a picture has thousands: shared by all renders (and
# threads; lru_cache is thread-safe), bounded so a long session of noisy samples cannot grow it forever.
@lru_cache(maxsize=8192)
def _color(rgb: bytes) -> Color:
    return Color.from_triplet(ColorTriplet(rgb[0], rgb[1], rgb[2]))


def _style(top: bytes, bottom: bytes | None) -> Style:
    """The style of a cell: upper pixel as the foreground, lower pixel (if any) as the background."""
    return Style.from_color(_color(top), _color(bottom) if bottom is not None else None)


def side_by_side(pictures: list[Text], gap: int = 1) -> Text:
    """Several half-block pictures next to each other, top-aligned, ``gap`` blank cells apart."""
    if not pictures:
        return Text("")
    columns = [picture.split("\n", allow_blank=True) for picture in pictures]
    widths = [max((line.cell_len for line in lines), default=0) for lines in columns]
    result = Text(no_wrap=True, end="")
    for row in range(max(len(lines) for lines in columns)):
        if row:
            result.append("\n")
        for index, lines in enumerate(columns):
            if index:
                result.append(" " * gap)
            line = lines[row] if row < len(lines) else Text("")
            result.append_text(line)
            result.append(" " * (widths[index] - line.cell_len))
    return result
