"""Turn client-supplied colours into normalised `#rrggbb`, or refuse them."""

from __future__ import annotations

import re

from hitcounter.errors import InvalidInput

# The shields.io palette (so badge URLs copied from shields keep their colours) and the
# CSS basic names. An allow-list, not a CSS parser: nothing but `#rrggbb` leaves here.
NAMED_COLORS: dict[str, str] = {
    "brightgreen": "#44cc11",
    "green": "#97ca00",
    "yellowgreen": "#a4a61d",
    "yellow": "#dfb317",
    "orange": "#fe7d37",
    "red": "#e05d44",
    "blue": "#007ec6",
    "lightgrey": "#9f9f9f",
    "lightgray": "#9f9f9f",
    "grey": "#555555",
    "gray": "#555555",
    "success": "#44cc11",
    "important": "#fe7d37",
    "critical": "#e05d44",
    "informational": "#007ec6",
    "inactive": "#9f9f9f",
    "blueviolet": "#8a2be2",
    "black": "#000000",
    "white": "#ffffff",
    "silver": "#c0c0c0",
    "maroon": "#800000",
    "purple": "#800080",
    "fuchsia": "#ff00ff",
    "lime": "#00ff00",
    "olive": "#808000",
    "navy": "#000080",
    "teal": "#008080",
    "aqua": "#00ffff",
}

_HEX_COLOR = re.compile(r"#?([0-9a-f]{3}|[0-9a-f]{6})")
_DECIMAL = re.compile(r"[0-9]{1,8}")
MAX_RGB = 0xFFFFFF


def parse_color(value: str | None, default: str) -> str:
    """Return `value` (hex or an allowed name) as `#rrggbb`; no value gives `default`."""
    if value is None or not value.strip():
        value = default
    # isascii() first: lower() maps some non-ASCII letters (the Kelvin sign) onto ASCII.
    candidate = value.strip().lower() if value.isascii() else ""
    if candidate in NAMED_COLORS:
        return NAMED_COLORS[candidate]
    match = _HEX_COLOR.fullmatch(candidate)
    if match is None:
        raise InvalidInput(
            f"invalid colour {_shorten(value)}: use hex (rgb or rrggbb, '#' optional) "
            f"or one of {', '.join(NAMED_COLORS)}"
        )
    digits = match.group(1)
    if len(digits) == 3:
        digits = "".join(digit * 2 for digit in digits)
    return f"#{digits}"


def decimal_rgb(value: str) -> str:
    """Return a SimpleHitCounter colour (24-bit RGB as a decimal integer) as `#rrggbb`."""
    candidate = value.strip()
    if _DECIMAL.fullmatch(candidate) is None or int(candidate) > MAX_RGB:
        raise InvalidInput(
            f"invalid colour {_shorten(value)}: use a decimal integer from 0 to {MAX_RGB}"
        )
    return f"#{int(candidate):06x}"


def relative_luminance(color: str) -> float:
    """Return the WCAG relative luminance (0 black .. 1 white) of a `#rrggbb` colour."""
    channels = (int(color[i : i + 2], 16) / 255 for i in (1, 3, 5))
    red, green, blue = (
        c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels
    )
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def _shorten(value: str, limit: int = 40) -> str:
    """Quote a client value for an error message without echoing a whole payload."""
    return repr(value if len(value) <= limit else value[:limit] + "...")
