"""Badges: well-formed SVG, shields geometry, text measurement, and no way to inject markup."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hitcounter.errors import InvalidInput
from hitcounter.render import font_widths
from hitcounter.render.badge import (
    BADGE_STYLES,
    MAX_TEXT_LENGTH,
    format_count,
    printable_text,
    render_badge,
)
from hitcounter.render.fonts import WIDE_FALLBACK_EM, text_width

SVG = "{http://www.w3.org/2000/svg}"
# Elements that run script, embed other documents or pull in resources.
FORBIDDEN_ELEMENTS = {
    "script",
    "foreignObject",
    "iframe",
    "img",
    "image",
    "use",
    "a",
    "style",
    "object",
    "embed",
    "animate",
    "set",
    "handler",
    "listener",
}


def parse_svg(svg: str) -> ET.Element:
    """Parse an SVG document and check its declared size agrees with its viewBox."""
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    width, height = float(root.attrib["width"]), float(root.attrib["height"])
    assert root.attrib["viewBox"] == f"0 0 {root.attrib['width']} {root.attrib['height']}"
    assert width > 0 and height > 0
    return root


def assert_harmless(root: ET.Element) -> None:
    """Fail on anything in the tree that could run script or fetch another document."""
    for element in root.iter():
        local_name = element.tag.rpartition("}")[2]
        assert local_name not in FORBIDDEN_ELEMENTS, local_name
        for attribute in element.attrib:
            name = attribute.rpartition("}")[2].lower()
            assert not name.startswith("on"), attribute
            assert name not in {"href", "style", "src"}, attribute


def texts(root: ET.Element) -> list[str]:
    """Return the text of every drawn <text> element, in document order."""
    return [element.text or "" for element in root.iter(f"{SVG}text")]


@pytest.mark.parametrize("style", BADGE_STYLES)
def test_every_style_renders_the_count(style: str) -> None:
    root = parse_svg(render_badge("hits", "12345", style=style))
    assert_harmless(root)
    assert "12345" in texts(root)
    assert root.findtext(f"{SVG}title") == "hits: 12345"
    assert root.attrib["role"] == "img"
    assert root.attrib["aria-label"] == "hits: 12345"
    assert "DejaVu Sans,Verdana,Geneva,sans-serif" in ET.tostring(root, encoding="unicode")


@pytest.mark.parametrize(
    ("style", "height"), [("flat", 20), ("flat-square", 20), ("plastic", 18), ("for-the-badge", 28)]
)
def test_style_geometry(style: str, height: int) -> None:
    root = parse_svg(render_badge("hits", "7", style=style))
    assert root.attrib["height"] == str(height)
    rounded = root.find(f".//{SVG}clipPath/{SVG}rect")
    assert (rounded is not None) == (style in ("flat", "plastic"))
    gradient = root.find(f".//{SVG}linearGradient")
    assert (gradient is not None) == (style in ("flat", "plastic"))


@pytest.mark.parametrize("style", BADGE_STYLES)
def test_every_text_fits_its_box(style: str) -> None:
    root = parse_svg(render_badge("a much longer label WWW", "1234567890", style=style))
    boxes = [rect for rect in root.iter(f"{SVG}rect") if rect.get("fill", "").startswith("#")]
    edges = [float(box.get("x", 0)) for box in boxes] + [float(root.attrib["width"])]
    for text in root.iter(f"{SVG}text"):
        center, length = float(text.attrib["x"]), float(text.attrib["textLength"])
        left = max(edge for edge in edges if edge < center)
        right = min(edge for edge in edges if edge > center)
        assert left < center - length / 2 and center + length / 2 < right


def test_for_the_badge_is_upper_case_with_a_bold_value() -> None:
    root = parse_svg(render_badge("hits", "12.3k", style="for-the-badge"))
    drawn = list(root.iter(f"{SVG}text"))
    assert [text.text for text in drawn] == ["HITS", "12.3K"]
    assert drawn[1].get("font-weight") == "bold"
    assert root.attrib["aria-label"] == "hits: 12.3k"


def test_an_empty_label_draws_the_value_alone() -> None:
    root = parse_svg(render_badge("", "42"))
    assert set(texts(root)) == {"42"}
    assert root.attrib["aria-label"] == "42"
    filled = [rect for rect in root.iter(f"{SVG}rect") if rect.get("fill", "").startswith("#")]
    assert len(filled) == 1


@pytest.mark.parametrize("style", ["", "FLAT", "social", "flat;x", "<script>"])
def test_unknown_style_is_refused(style: str) -> None:
    with pytest.raises(InvalidInput, match="badge style"):
        render_badge("hits", "1", style=style)


def test_colours_are_normalised_and_checked() -> None:
    svg = render_badge("hits", "1", color="red", label_color="#ABC")
    assert 'fill="#e05d44"' in svg and 'fill="#aabbcc"' in svg
    with pytest.raises(InvalidInput):
        render_badge("hits", "1", color="red;background:url(x)")


@pytest.mark.parametrize(
    ("background", "text_fill"),
    [
        ("brightgreen", "#ffffff"),
        ("yellow", "#ffffff"),
        ("navy", "#ffffff"),
        ("silver", "#333333"),
        ("lime", "#333333"),
        ("white", "#333333"),
        ("#ffe", "#333333"),
    ],
)
def test_text_stays_readable_on_the_background(background: str, text_fill: str) -> None:
    root = parse_svg(render_badge("", "1", color=background))
    drawn = [text for text in root.iter(f"{SVG}text") if text.get("aria-hidden") is None]
    assert [text.get("fill") for text in drawn] == [text_fill]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hits", "hits"),
        ("  padded  ", "padded"),
        ("a\x00b\x08c", "abc"),
        ("line\nbreak\ttab", "line break tab"),
        ("c1\x85control", "c1control"),
        ("lone\ud800surrogate", "lonesurrogate"),
        ("non\ufffechar\uffff", "nonchar"),
        ("emoji \U0001f600 ok", "emoji \U0001f600 ok"),
        ("x" * MAX_TEXT_LENGTH, "x" * MAX_TEXT_LENGTH),
        ("x" * (MAX_TEXT_LENGTH + 1), "x" * (MAX_TEXT_LENGTH - 1) + "\u2026"),
    ],
)
def test_printable_text(text: str, expected: str) -> None:
    assert printable_text(text) == expected


def test_long_labels_and_values_are_truncated() -> None:
    root = parse_svg(render_badge("L" * 500, "V" * 500))
    assert texts(root)[-1] == "V" * (MAX_TEXT_LENGTH - 1) + "\u2026"
    assert texts(root)[0] == "L" * (MAX_TEXT_LENGTH - 1) + "\u2026"


XSS_PAYLOADS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "'><svg onload=alert(1)>",
    "<svg onload=alert(1)>",
    "javascript:alert(document.cookie)",
    "]]><script>alert(1)</script>",
    "<![CDATA[<script>alert(1)</script>]]>",
    "--><script>alert(1)</script><!--",
    "<?xml-stylesheet href='x.xsl'?>",
    "<foreignObject><iframe src='//evil'></iframe></foreignObject>",
    "<a xlink:href='javascript:alert(1)'>x</a>",
    "<use href='data:image/svg+xml,<svg onload=alert(1)>'/>",
    "<style>*{fill:url(//evil)}</style>",
    "<!ENTITY x SYSTEM 'file:///etc/passwd'>&x;",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "&#60;script&#62;alert(1)&#60;/script&#62;",
    "&amp;&quot;&apos;&",
    '" onmouseover="alert(1)',
    "' style='fill:url(//evil)",
]


@pytest.mark.parametrize("field", ["label", "value"])
@pytest.mark.parametrize("payload", XSS_PAYLOADS)
def test_client_text_stays_text(field: str, payload: str) -> None:
    label, value = (payload, "1") if field == "label" else ("hits", payload)
    for style in BADGE_STYLES:
        root = parse_svg(render_badge(label, value, style=style))
        assert_harmless(root)
        shown = payload.upper() if style == "for-the-badge" else payload
        assert shown in texts(root)
        assert root.findtext(f"{SVG}title") == f"{label}: {value}"
        assert root.attrib["aria-label"] == f"{label}: {value}"


unicode_text = st.text(st.characters(exclude_categories=()) | st.characters(categories=["Cs"]))


@given(label=unicode_text, value=unicode_text, style=st.sampled_from(BADGE_STYLES))
def test_any_unicode_renders_well_formed(label: str, value: str, style: str) -> None:
    svg = render_badge(label, value, style=style)
    svg.encode("utf-8")  # what the view sends: a lone surrogate would raise here
    root = parse_svg(svg)
    assert_harmless(root)
    shown_label, shown_value = printable_text(label), printable_text(value)
    expected = f"{shown_label}: {shown_value}" if shown_label else shown_value
    assert root.findtext(f"{SVG}title") == expected


@pytest.mark.parametrize(
    ("count", "abbreviate", "expected"),
    [
        (0, False, "0"),
        (12345, False, "12345"),
        (1_234_567_890, False, "1234567890"),
        (0, True, "0"),
        (999, True, "999"),
        (1000, True, "1k"),
        (1050, True, "1.1k"),
        (1999, True, "2k"),
        (12345, True, "12.3k"),
        (100_000, True, "100k"),
        (999_949, True, "999.9k"),
        (999_950, True, "1M"),
        (1_000_000, True, "1M"),
        (1_234_567, True, "1.2M"),
        (999_999_999, True, "1B"),
        (3_400_000_000, True, "3.4B"),
        (10**12, True, "1T"),
        (10**16, True, "10000T"),
    ],
)
def test_format_count(count: int, abbreviate: bool, expected: str) -> None:
    assert format_count(count, abbreviate) == expected


def em(units: int) -> float:
    return units / font_widths.UNITS_PER_EM


@pytest.mark.parametrize(
    ("text", "bold", "expected_em"),
    [
        ("", False, 0.0),
        ("a", False, em(font_widths.REGULAR[ord("a")])),
        ("a", True, em(font_widths.BOLD[ord("a")])),
        ("hits", False, em(sum(font_widths.REGULAR[ord(c)] for c in "hits"))),
        ("e\u0301", False, em(font_widths.REGULAR[ord("e")])),  # a combining accent is free
        ("\u200d", False, 0.0),  # so is a zero-width joiner
        ("\u6f22", False, WIDE_FALLBACK_EM),  # CJK
        ("\U0001f600", False, WIDE_FALLBACK_EM),  # emoji
        ("\u0436", False, em(font_widths.REGULAR_FALLBACK)),  # Cyrillic, not in the table
    ],
)
def test_text_width(text: str, bold: bool, expected_em: float) -> None:
    assert text_width(text, 10, bold) == pytest.approx(10 * expected_em)
    assert text_width(text, 20, bold) == pytest.approx(20 * expected_em)


def test_bold_is_wider_and_digits_are_tabular() -> None:
    assert text_width("hits", 11, bold=True) > text_width("hits", 11)
    assert len({text_width(digit, 11) for digit in "0123456789"}) == 1
