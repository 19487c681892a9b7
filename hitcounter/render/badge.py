"""Render shields.io-look SVG badges: a label box and a value box."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from hitcounter.errors import InvalidInput
from hitcounter.render.colors import parse_color, relative_luminance
from hitcounter.render.fonts import FONT_FAMILY, text_width

MAX_TEXT_LENGTH = 64
ELLIPSIS = "\u2026"

# Shields keeps white text on its own palette (brightgreen, yellow, orange) even where the
# contrast is modest, and badges should look like their neighbours in a README; dark text
# is for backgrounds so light that white would all but vanish (silver, lime, white).
LIGHT_BACKGROUND_LUMINANCE = 0.5

# XML 1.0 forbids C0 controls, lone surrogates and U+FFFE/U+FFFF; C1 controls are legal
# but invisible. None belongs in a badge, and one forbidden character breaks the image.
_LINE_BREAKS = re.compile(r"[\t\n\v\f\r]+")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class BadgeStyle:
    """Geometry and decoration of one badge style, after shields' badge-maker."""

    height: int
    font_size: float
    padding: int  # px left and right of each text
    radius: int  # corner radius; 0 draws square corners
    baseline: float  # y of the text baseline
    gradient: tuple[tuple[str, str, str], ...]  # (offset, colour, opacity) stops
    shadow: bool  # a 1px darker copy under the text, for contrast
    uppercase: bool = False
    letter_spacing: float = 0.0  # extra px between characters, laid out by textLength
    bold_value: bool = False


_STYLES: dict[str, BadgeStyle] = {
    "flat": BadgeStyle(
        height=20,
        font_size=11,
        padding=5,
        radius=3,
        baseline=14,
        gradient=(("0", "#bbbbbb", ".1"), ("1", "#000000", ".1")),
        shadow=True,
    ),
    "flat-square": BadgeStyle(
        height=20, font_size=11, padding=5, radius=0, baseline=14, gradient=(), shadow=True
    ),
    "plastic": BadgeStyle(
        height=18,
        font_size=11,
        padding=5,
        radius=4,
        baseline=13,
        gradient=(
            ("0", "#ffffff", ".7"),
            (".1", "#aaaaaa", ".1"),
            (".9", "#000000", ".3"),
            ("1", "#000000", ".5"),
        ),
        shadow=True,
    ),
    "for-the-badge": BadgeStyle(
        height=28,
        font_size=10,
        padding=12,
        radius=0,
        baseline=17.5,
        gradient=(),
        shadow=False,
        uppercase=True,
        letter_spacing=1.25,
        bold_value=True,
    ),
}

BADGE_STYLES = tuple(_STYLES)  # ("flat", "flat-square", "plastic", "for-the-badge")


def format_count(n: int, abbreviate: bool = False) -> str:
    """Format a count as plain digits, or abbreviated to one decimal ("12.3k", "1M")."""
    if not abbreviate or abs(n) < 1000:
        return str(n)
    sign = "-" if n < 0 else ""
    magnitude = abs(n)
    for power, unit in enumerate("kMBT", start=1):
        base = 1000**power
        tenths = (magnitude * 10 + base // 2) // base  # round half up, in integers
        # 999,950 rounds to 1000.0k: say 1M instead, unless there is no larger unit.
        if tenths < 10_000 or unit == "T":
            break
    whole, tenth = divmod(tenths, 10)
    return f"{sign}{whole}{f'.{tenth}' if tenth else ''}{unit}"


def printable_text(text: str, limit: int = MAX_TEXT_LENGTH) -> str:
    """Drop characters XML or a badge cannot show, trim, and cut to `limit` with an ellipsis."""
    text = _UNPRINTABLE.sub("", _LINE_BREAKS.sub(" ", text)).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + ELLIPSIS
    return text


def render_badge(
    label: str,
    value: str,
    *,
    style: str = "flat",
    color: str = "#4c1",
    label_color: str = "#555",
) -> str:
    """Render a label|value badge as a complete SVG document; an empty label draws one box."""
    look = _STYLES.get(style)
    if look is None:
        raise InvalidInput(f"unknown badge style: use one of {', '.join(BADGE_STYLES)}")
    value_fill = parse_color(color, "#4c1")
    label_fill = parse_color(label_color, "#555")
    label = printable_text(label)
    value = printable_text(value)
    accessible_name = f"{label}: {value}" if label else value
    if look.uppercase:
        label, value = label.upper(), value.upper()

    label_text = _text_length(label, look, bold=False)
    value_text = _text_length(value, look, bold=look.bold_value)
    label_width = label_text + 2 * look.padding if label else 0
    value_width = value_text + 2 * look.padding
    width = label_width + value_width
    height = look.height

    shapes: list[str] = []
    texts: list[str] = []
    if label:
        shapes.append(f'<rect width="{label_width}" height="{height}" fill="{label_fill}"/>')
        texts.append(_text(label, label_width / 2, label_text, label_fill, look, False))
    shapes.append(
        f'<rect x="{label_width}" width="{value_width}" height="{height}" fill="{value_fill}"/>'
    )
    texts.append(
        _text(value, label_width + value_width / 2, value_text, value_fill, look, look.bold_value)
    )
    defs: list[str] = []
    if look.gradient:
        stops = "".join(
            f'<stop offset="{offset}" stop-color="{stop}" stop-opacity="{opacity}"/>'
            for offset, stop, opacity in look.gradient
        )
        defs.append(f'<linearGradient id="s" x2="0" y2="100%">{stops}</linearGradient>')
        shapes.append(f'<rect width="{width}" height="{height}" fill="url(#s)"/>')
    if look.radius:
        defs.append(
            f'<clipPath id="r"><rect width="{width}" height="{height}" rx="{look.radius}"/>'
            "</clipPath>"
        )
        group = '<g clip-path="url(#r)">'
    else:
        group = '<g shape-rendering="crispEdges">'

    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label={quoteattr(accessible_name)}>'
        f"<title>{escape(accessible_name)}</title>"
        f"{''.join(defs)}"
        f"{group}{''.join(shapes)}</g>"
        f'<g text-anchor="middle" font-family="{FONT_FAMILY}" font-size="{look.font_size:g}" '
        'text-rendering="geometricPrecision">'
        f"{''.join(texts)}</g>"
        "</svg>"
    )


def _text_length(text: str, look: BadgeStyle, bold: bool) -> int:
    """Return the whole pixels `text` needs in this style, letter spacing included."""
    spacing = look.letter_spacing * max(len(text) - 1, 0)
    return math.ceil(text_width(text, look.font_size, bold) + spacing)


def _text(
    text: str, center: float, length: int, background: str, look: BadgeStyle, bold: bool
) -> str:
    """Draw one centred text (and its shadow) in a colour readable on `background`."""
    light = relative_luminance(background) > LIGHT_BACKGROUND_LUMINANCE
    fill, shadow = ("#333333", "#cccccc") if light else ("#ffffff", "#010101")
    # textLength pins the drawn width to the measured one, so a browser that substitutes a
    # wider font squeezes the text into its box instead of overflowing it.
    weight = ' font-weight="bold"' if bold else ""
    common = f'x="{center:g}" textLength="{length}" lengthAdjust="spacing"{weight}'
    content = escape(text)
    drawn = f'<text {common} y="{look.baseline:g}" fill="{fill}">{content}</text>'
    if not look.shadow:
        return drawn
    return (
        f'<text aria-hidden="true" {common} y="{look.baseline + 1:g}" fill="{shadow}" '
        f'fill-opacity=".3">{content}</text>{drawn}'
    )
