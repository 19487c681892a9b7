"""Measure text as DejaVu Sans draws it, from the committed width table."""

from __future__ import annotations

import unicodedata

from hitcounter.render import font_widths

# DejaVu Sans first, since the widths are its own; the rest are near enough in width that
# textLength can absorb the difference where DejaVu is not installed.
FONT_FAMILY = "DejaVu Sans,Verdana,Geneva,sans-serif"

# The height of a digit above its baseline, in em.
DIGIT_HEIGHT_EM = font_widths.DIGIT_HEIGHT / font_widths.UNITS_PER_EM

# DejaVu has no ideographs or emoji, so the browser draws them from another font: CJK
# fonts on a 1 em square, colour-emoji fonts wider (Noto Color Emoji advances ~1.245 em).
# Take the wider so neither overflows; textLength spreads the rest as spacing.
WIDE_FALLBACK_EM = 1.25

# Combining marks, enclosing marks and format characters (joiners, direction marks)
# take no space of their own.
_ZERO_WIDTH_CATEGORIES = frozenset({"Mn", "Me", "Cf", "Cc"})


def char_width_em(char: str, bold: bool = False) -> float:
    """Return the advance width of one character in em."""
    widths = font_widths.BOLD if bold else font_widths.REGULAR
    units = widths.get(ord(char))
    if units is not None:
        return units / font_widths.UNITS_PER_EM
    if unicodedata.category(char) in _ZERO_WIDTH_CATEGORIES:
        return 0.0
    if unicodedata.east_asian_width(char) in ("W", "F"):
        return WIDE_FALLBACK_EM
    fallback = font_widths.BOLD_FALLBACK if bold else font_widths.REGULAR_FALLBACK
    return fallback / font_widths.UNITS_PER_EM


def text_width(text: str, size_px: float, bold: bool = False) -> float:
    """Return the width in pixels of `text` set in DejaVu Sans at `size_px`."""
    return size_px * sum(char_width_em(char, bold) for char in text)
