"""Render classic digit counters (odometer, LED, LCD, plain) as SVG."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from hitcounter.errors import InvalidInput
from hitcounter.render.colors import parse_color
from hitcounter.render.fonts import DIGIT_HEIGHT_EM, FONT_FAMILY

MIN_DIGITS = 1
MAX_DIGITS = 12

# Seven-segment geometry, in px: segments 2.5 wide, kept 2.5 inside their cell so
# neighbouring digits never touch, with a 0.5 seam where two segments meet, and leaning
# forward by tan(6 degrees) like most LED and LCD displays.
SEGMENT_THICKNESS = 2.5
SEGMENT_MARGIN = 2.5
SEGMENT_SEAM = 0.5
SLANT = math.tan(math.radians(6))

# Which of the seven segments (a top, b top right, c bottom right, d bottom, e bottom
# left, f top left, g middle) each digit lights.
SEGMENTS = "abcdefg"
LIT_SEGMENTS = {
    "0": "abcdef",
    "1": "bc",
    "2": "abdeg",
    "3": "abcdg",
    "4": "bcfg",
    "5": "acdfg",
    "6": "acdefg",
    "7": "abc",
    "8": "abcdefg",
    "9": "abcdfg",
}


@dataclass(frozen=True)
class DigitTheme:
    """Fixed geometry and default colours of one counter theme."""

    cell_width: int
    cell_height: int
    gap: int  # px between neighbouring cells
    frame: int  # px of housing around the row of cells
    fg: str
    bg: str
    draw: Callable[[str, str, str, DigitTheme], str]  # (digits, fg, bg, theme) -> SVG body
    font_size: int = 0  # px, for the themes that draw digits as text

    def cell_x(self, index: int) -> int:
        """Return the left edge of the cell at `index`."""
        return self.frame + index * (self.cell_width + self.gap)

    def size(self, cells: int) -> tuple[int, int]:
        """Return the width and height of a counter of `cells` digits."""
        width = 2 * self.frame + cells * self.cell_width + (cells - 1) * self.gap
        return width, 2 * self.frame + self.cell_height


def render_digits(
    count: int,
    *,
    digits: int = 6,
    theme: str = "odometer",
    fg: str | None = None,
    bg: str | None = None,
) -> str:
    """Render `count` zero-padded to `digits` cells as a complete SVG document."""
    look = _THEMES.get(theme)
    if look is None:
        raise InvalidInput(f"unknown counter theme: use one of {', '.join(DIGIT_THEMES)}")
    if not MIN_DIGITS <= digits <= MAX_DIGITS:
        raise InvalidInput(f"digits must be from {MIN_DIGITS} to {MAX_DIGITS}")
    if count < 0:
        raise ValueError(f"a count is never negative, got {count}")
    # A count longer than `digits` grows the counter: a hit counter must not lie.
    shown = str(count).zfill(digits)
    width, height = look.size(len(shown))
    body = look.draw(shown, parse_color(fg, look.fg), parse_color(bg, look.bg), look)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{count} hits">'
        f"<title>{count} hits</title>{body}</svg>"
    )


def _draw_odometer(shown: str, fg: str, bg: str, look: DigitTheme) -> str:
    """Draw digits on drums in a dark housing, shaded so the drums look round."""
    width, height = look.size(len(shown))
    parts = [
        # Dark at the top and bottom edges, a faint highlight across the middle.
        '<defs><linearGradient id="drum" x2="0" y2="1">'
        '<stop offset="0" stop-color="#000000" stop-opacity=".65"/>'
        '<stop offset=".25" stop-color="#000000" stop-opacity=".1"/>'
        '<stop offset=".5" stop-color="#ffffff" stop-opacity=".1"/>'
        '<stop offset=".75" stop-color="#000000" stop-opacity=".1"/>'
        '<stop offset="1" stop-color="#000000" stop-opacity=".65"/>'
        "</linearGradient></defs>",
        f'<rect width="{width}" height="{height}" rx="3" fill="#111111"/>',
    ]
    for index, digit in enumerate(shown):
        x = look.cell_x(index)
        parts.append(
            f'<rect x="{x}" y="{look.frame}" width="{look.cell_width}" '
            f'height="{look.cell_height}" fill="{bg}"/>'
            f"{_digit_text(digit, x, look, fg)}"
            f'<rect x="{x}" y="{look.frame}" width="{look.cell_width}" '
            f'height="{look.cell_height}" fill="url(#drum)"/>'
        )
    return "".join(parts)


def _draw_plain(shown: str, fg: str, bg: str, look: DigitTheme) -> str:
    """Draw digits on a flat background."""
    width, height = look.size(len(shown))
    cells = "".join(_digit_text(digit, look.cell_x(i), look, fg) for i, digit in enumerate(shown))
    return f'<rect width="{width}" height="{height}" fill="{bg}"/>{cells}'


def _draw_segments(shown: str, fg: str, bg: str, look: DigitTheme) -> str:
    """Draw seven-segment digits: lit segments in `fg`, unlit ones as a faint ghost."""
    width, height = look.size(len(shown))
    lit: list[str] = []
    unlit: list[str] = []
    for index, digit in enumerate(shown):
        polygons = _segment_polygons(look.cell_x(index), look.frame, look)
        for segment in SEGMENTS:
            (lit if segment in LIT_SEGMENTS[digit] else unlit).append(
                f'<polygon points="{polygons[segment]}"/>'
            )
    return (
        f'<rect width="{width}" height="{height}" rx="3" fill="{bg}"/>'
        f'<g fill="{fg}" fill-opacity=".1">{"".join(unlit)}</g>'
        f'<g fill="{fg}">{"".join(lit)}</g>'
    )


def _digit_text(digit: str, x: int, look: DigitTheme, fg: str) -> str:
    """Draw one bold digit centred in the cell whose left edge is `x`."""
    # Centre the digit's own height, not the font's line box, in the cell.
    baseline = look.frame + (look.cell_height + DIGIT_HEIGHT_EM * look.font_size) / 2
    return (
        f'<text x="{x + look.cell_width / 2:g}" y="{baseline:.2f}" text-anchor="middle" '
        f'font-family="{FONT_FAMILY}" font-size="{look.font_size}" font-weight="bold" '
        f'fill="{fg}">{digit}</text>'
    )


def _segment_polygons(left: float, top: float, look: DigitTheme) -> dict[str, str]:
    """Return the `points` of each of the seven segments of a digit in the given cell."""
    half = SEGMENT_THICKNESS / 2
    x0 = left + SEGMENT_MARGIN + half
    x1 = left + look.cell_width - SEGMENT_MARGIN - half
    y0 = top + SEGMENT_MARGIN + half
    y1 = top + look.cell_height / 2
    y2 = top + look.cell_height - SEGMENT_MARGIN - half

    def points(corners: list[tuple[float, float]]) -> str:
        # Lean each point by its height above the middle line, like a real display.
        return " ".join(f"{x + (y1 - y) * SLANT:.2f},{y:.2f}" for x, y in corners)

    def horizontal(y: float) -> str:
        a, b = x0 + SEGMENT_SEAM, x1 - SEGMENT_SEAM
        return points(
            [(a, y), (a + half, y - half), (b - half, y - half),
             (b, y), (b - half, y + half), (a + half, y + half)]
        )  # fmt: skip

    def vertical(x: float, start: float, end: float) -> str:
        a, b = start + SEGMENT_SEAM, end - SEGMENT_SEAM
        return points(
            [(x, a), (x + half, a + half), (x + half, b - half),
             (x, b), (x - half, b - half), (x - half, a + half)]
        )  # fmt: skip

    return {
        "a": horizontal(y0),
        "b": vertical(x1, y0, y1),
        "c": vertical(x1, y1, y2),
        "d": horizontal(y2),
        "e": vertical(x0, y1, y2),
        "f": vertical(x0, y0, y1),
        "g": horizontal(y1),
    }


_THEMES: dict[str, DigitTheme] = {
    "odometer": DigitTheme(
        cell_width=14, cell_height=22, gap=1, frame=2, font_size=16,
        fg="#ffffff", bg="#2a2a2a", draw=_draw_odometer,
    ),
    "led": DigitTheme(
        cell_width=14, cell_height=24, gap=1, frame=3,
        fg="#ff3322", bg="#000000", draw=_draw_segments,
    ),
    "plain": DigitTheme(
        cell_width=10, cell_height=18, gap=0, frame=2, font_size=14,
        fg="#000000", bg="#ffffff", draw=_draw_plain,
    ),
    "lcd": DigitTheme(
        cell_width=14, cell_height=24, gap=1, frame=3,
        fg="#1e2a18", bg="#a7bd8c", draw=_draw_segments,
    ),
}  # fmt: skip

DIGIT_THEMES = tuple(_THEMES)  # ("odometer", "led", "plain", "lcd")
