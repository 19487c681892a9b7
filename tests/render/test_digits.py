"""Digit counters: padding, every theme's layout inside its box, colours, and refusals."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hitcounter.errors import InvalidInput
from hitcounter.render.digits import (
    DIGIT_THEMES,
    LIT_SEGMENTS,
    MAX_DIGITS,
    SEGMENTS,
    render_digits,
)

from .test_badge import SVG, assert_harmless, parse_svg

TEXT_THEMES = ("odometer", "plain")


def shown_digits(root: ET.Element, theme: str) -> str:
    """Read the digits back: from <text> elements, or from which segments are lit."""
    if theme in TEXT_THEMES:
        return "".join(text.text or "" for text in root.iter(f"{SVG}text"))
    # A row of 8s lights every segment in drawing order (cell by cell, a to g), so each
    # lit polygon's points say which cell and segment it is.
    cells = len(list(root.iter(f"{SVG}polygon"))) // 7
    all_lit = parse_svg(render_digits(int("8" * cells), digits=1, theme=theme))
    position = {
        polygon.attrib["points"]: i for i, polygon in enumerate(all_lit.iter(f"{SVG}polygon"))
    }
    lit: list[set[str]] = [set() for _ in range(cells)]
    for polygon in root.findall(f"{SVG}g")[-1]:
        cell, segment = divmod(position[polygon.attrib["points"]], 7)
        lit[cell].add(SEGMENTS[segment])
    digit_of = {frozenset(segments): digit for digit, segments in LIT_SEGMENTS.items()}
    return "".join(digit_of[frozenset(segments)] for segments in lit)


def points_in(root: ET.Element) -> list[tuple[float, float]]:
    """Return every polygon corner and text anchor in the drawing."""
    corners = [
        (float(x), float(y))
        for polygon in root.iter(f"{SVG}polygon")
        for x, y in (pair.split(",") for pair in polygon.attrib["points"].split())
    ]
    anchors = [(float(t.attrib["x"]), float(t.attrib["y"])) for t in root.iter(f"{SVG}text")]
    return corners + anchors


@pytest.mark.parametrize("theme", DIGIT_THEMES)
@pytest.mark.parametrize(
    ("count", "digits", "expected"),
    [
        (42, 6, "000042"),
        (0, 1, "0"),
        (7, 3, "007"),
        (999, 12, "000000000999"),
        (1_234_567, 6, "1234567"),  # longer than `digits`: shown in full, never cut
        (9_876_543_210, 4, "9876543210"),
    ],
)
def test_padding_and_layout(theme: str, count: int, digits: int, expected: str) -> None:
    root = parse_svg(render_digits(count, digits=digits, theme=theme))
    assert_harmless(root)
    assert root.findtext(f"{SVG}title") == f"{count} hits"
    assert shown_digits(root, theme) == expected
    width, height = float(root.attrib["width"]), float(root.attrib["height"])
    for x, y in points_in(root):
        assert 0 < x < width and 0 < y < height


@pytest.mark.parametrize("theme", DIGIT_THEMES)
def test_width_grows_by_whole_cells(theme: str) -> None:
    widths = [
        float(parse_svg(render_digits(1, digits=n, theme=theme)).attrib["width"]) for n in (1, 2, 3)
    ]
    assert widths[2] - widths[1] == widths[1] - widths[0] > 0
    heights = {parse_svg(render_digits(1, digits=n, theme=theme)).attrib["height"] for n in (1, 12)}
    assert len(heights) == 1


def test_unlit_segments_are_a_faint_ghost() -> None:
    root = parse_svg(render_digits(1, digits=1, theme="led"))
    unlit, lit = root.findall(f"{SVG}g")
    assert (len(unlit), len(lit)) == (5, 2)
    assert float(unlit.attrib["fill-opacity"]) < 0.5 and "fill-opacity" not in lit.attrib


@pytest.mark.parametrize("theme", DIGIT_THEMES)
def test_colours_override_the_theme(theme: str) -> None:
    svg = render_digits(5, theme=theme, fg="#123456", bg="red")
    assert 'fill="#123456"' in svg and 'fill="#e05d44"' in svg


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"theme": "nixie"}, "counter theme"),
        ({"theme": "<script>"}, "counter theme"),
        ({"digits": 0}, "digits"),
        ({"digits": MAX_DIGITS + 1}, "digits"),
        ({"digits": -1}, "digits"),
        ({"fg": "red;background:url(x)"}, "colour"),
        ({"bg": "javascript:alert(1)"}, "colour"),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        render_digits(1, **options)  # type: ignore[arg-type]


def test_a_negative_count_is_a_bug_not_input() -> None:
    with pytest.raises(ValueError, match="negative"):
        render_digits(-1)


@given(
    count=st.integers(min_value=0, max_value=10**15),
    digits=st.integers(min_value=1, max_value=MAX_DIGITS),
    theme=st.sampled_from(DIGIT_THEMES),
)
def test_any_count_renders_well_formed(count: int, digits: int, theme: str) -> None:
    root = parse_svg(render_digits(count, digits=digits, theme=theme))
    assert_harmless(root)
    assert int(shown_digits(root, theme)) == count
