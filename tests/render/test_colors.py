"""Colour parsing: the allow-list, normalisation and everything it refuses."""

from __future__ import annotations

import re

import pytest

from hitcounter.errors import InvalidInput
from hitcounter.render.colors import NAMED_COLORS, decimal_rgb, parse_color, relative_luminance


@pytest.mark.parametrize(
    ("value", "default", "expected"),
    [
        (None, "#4c1", "#44cc11"),
        ("", "red", "#e05d44"),
        ("   ", "#555", "#555555"),
        ("fff", "#000", "#ffffff"),
        ("#FFF", "#000", "#ffffff"),
        ("AbCdEf", "#000", "#abcdef"),
        ("#0a0B0c", "#000", "#0a0b0c"),
        (" #123456 ", "#000", "#123456"),
        ("brightgreen", "#000", "#44cc11"),
        ("BrightGreen", "#000", "#44cc11"),
        ("lightgrey", "#000", "#9f9f9f"),
        ("lightgray", "#000", "#9f9f9f"),
        ("grey", "#000", "#555555"),
        ("success", "#000", "#44cc11"),
        ("important", "#000", "#fe7d37"),
        ("critical", "#000", "#e05d44"),
        ("informational", "#000", "#007ec6"),
        ("inactive", "#000", "#9f9f9f"),
        ("blueviolet", "#000", "#8a2be2"),
        ("teal", "#000", "#008080"),
        ("aqua", "#000", "#00ffff"),
    ],
)
def test_parse_color_accepts(value: str | None, default: str, expected: str) -> None:
    assert parse_color(value, default) == expected


@pytest.mark.parametrize(
    "value",
    [
        "red;background:url(x)",
        "#12345",
        "#1234567",
        "12",
        "#",
        "ggg",
        "#ggg",
        "0x123456",
        "javascript:alert(1)",
        "expression(alert(1))",
        "url(#x)",
        "rgb(0,0,0)",
        "transparent",
        "currentColor",
        "inherit",
        "#fff;",
        "f f f",
        "fff\x00",
        "blac\u212a",  # Kelvin sign: lower() turns it into an ASCII k
        "\uff46\uff46\uff46",  # full-width fff
        "<script>",
        '"><svg onload=alert(1)>',
    ],
)
def test_parse_color_refuses(value: str) -> None:
    with pytest.raises(InvalidInput, match="invalid colour"):
        parse_color(value, "#000")


def test_every_named_color_normalises_to_six_hex_digits() -> None:
    for name in NAMED_COLORS:
        assert re.fullmatch(r"#[0-9a-f]{6}", parse_color(name, "#000"))


def test_error_message_does_not_echo_a_whole_payload() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_color("x" * 10_000, "#000")
    assert len(caught.value.message) < 1_000


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", "#000000"),
        ("255", "#0000ff"),
        ("65280", "#00ff00"),
        ("16711680", "#ff0000"),
        ("16777215", "#ffffff"),
        (" 42 ", "#00002a"),
        ("00000042", "#00002a"),
    ],
)
def test_decimal_rgb_accepts(value: str, expected: str) -> None:
    assert decimal_rgb(value) == expected


@pytest.mark.parametrize(
    "value",
    ["", "16777216", "99999999999", "-1", "+1", "0x10", "1e3", "1.5", "ff", "\u0661\u0662"],
)
def test_decimal_rgb_refuses(value: str) -> None:
    with pytest.raises(InvalidInput, match="decimal"):
        decimal_rgb(value)


@pytest.mark.parametrize(
    ("color", "expected"),
    [("#000000", 0.0), ("#ffffff", 1.0), ("#00ff00", 0.7152), ("#808080", 0.2159)],
)
def test_relative_luminance(color: str, expected: float) -> None:
    assert relative_luminance(color) == pytest.approx(expected, abs=1e-4)
