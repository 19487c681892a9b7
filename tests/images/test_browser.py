"""Badges and counters as Chromium draws them: declared size, text inside its box, counting."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from flask import Flask

from hitcounter.render.badge import BADGE_STYLES
from hitcounter.render.digits import DIGIT_THEMES
from hitcounter.store import Store
from tests.conftest import LiveServer, add_site, serve_in_thread

pytestmark = pytest.mark.browser

# Long enough texts that a wrong width would show: a wide label, a seven-digit value.
LONG_LABEL = "Page views WWW"
WIDE_PATH = "/wide"
WIDE_COUNT = 1_234_567

# Run inside the SVG document opened on its own: the root's box, each <text>'s box, and
# the box of every filled rectangle (the backgrounds a text may sit on).
MEASURE = """() => {
  const svg = document.documentElement;
  const box = (b) => ({x: b.x, y: b.y, right: b.x + b.width, bottom: b.y + b.height});
  const rendered = svg.getBoundingClientRect();
  return {
    declared: [Number(svg.getAttribute("width")), Number(svg.getAttribute("height"))],
    rendered: [rendered.width, rendered.height],
    texts: [...svg.querySelectorAll("text")].map((t) => ({
      text: t.textContent, anchor: Number(t.getAttribute("x")), ...box(t.getBBox())})),
    shapes: [...svg.querySelectorAll("polygon")].map((p) => box(p.getBBox())),
    backgrounds: [...svg.querySelectorAll("rect")]
      .filter((r) => (r.getAttribute("fill") || "").startsWith("#"))
      .map((r) => box(r.getBBox())),
  };
}"""

# Run in an HTML page: each <img>'s drawn size and the size its SVG declares.
IMAGES = """() => [...document.images].map((img) => {
  const box = img.getBoundingClientRect();
  return {src: img.src, complete: img.complete, natural: [img.naturalWidth, img.naturalHeight],
          rendered: [box.width, box.height]};
})"""


@pytest.fixture
def server(app: Flask, fake_store: Store, live_server: LiveServer) -> LiveServer:
    add_site(app.test_client(), "demo", domains=["localhost"], dedupe_seconds=0)
    fake_store.set_pages("demo", [(WIDE_PATH, WIDE_COUNT, WIDE_COUNT)])
    return live_server


def open_svg(context: Any, url: str) -> tuple[dict[str, Any], list[str]]:
    """Open an SVG as a document; return its measures and any CSP complaints."""
    page = context.new_page()
    complaints: list[str] = []
    page.on(
        "console",
        lambda message: (
            complaints.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    response = page.goto(url, timeout=15_000)
    assert response is not None and response.status == 200
    assert response.headers["content-type"] == "image/svg+xml; charset=utf-8"
    measures: dict[str, Any] = page.evaluate(MEASURE)
    page.close()
    return measures, complaints


def assert_inside(inner: dict[str, float], outer: dict[str, float], what: str) -> None:
    assert outer["x"] <= inner["x"] and inner["right"] <= outer["right"], what
    assert outer["y"] <= inner["y"] and inner["bottom"] <= outer["bottom"], what


def background_of(text: dict[str, Any], backgrounds: list[dict[str, float]]) -> dict[str, float]:
    """The smallest filled rectangle under the text's anchor: its box or digit cell."""
    middle = (text["y"] + text["bottom"]) / 2
    under = [
        rect
        for rect in backgrounds
        if rect["x"] <= text["anchor"] <= rect["right"] and rect["y"] <= middle <= rect["bottom"]
    ]
    assert under, text
    return min(under, key=lambda r: (r["right"] - r["x"]) * (r["bottom"] - r["y"]))


def assert_drawn_to_size(measures: dict[str, Any]) -> None:
    width, height = measures["declared"]
    assert measures["rendered"] == [width, height]
    viewport = {"x": 0, "y": 0, "right": width, "bottom": height}
    for text in measures["texts"]:
        assert_inside(text, viewport, text["text"])
        assert_inside(text, background_of(text, measures["backgrounds"]), text["text"])
    for shape in measures["shapes"]:
        assert_inside(shape, viewport, "segment")


@pytest.mark.parametrize("style", BADGE_STYLES)
def test_badge_text_fits_in_chromium(server: LiveServer, browser_context: Any, style: str) -> None:
    url = f"{server.url}/badge/demo.svg?path={WIDE_PATH}&count=0&style={style}&label={LONG_LABEL}"
    measures, complaints = open_svg(browser_context, url)
    assert_drawn_to_size(measures)
    drawn = {text["text"] for text in measures["texts"]}
    expected = {LONG_LABEL, str(WIDE_COUNT)}
    assert drawn == ({t.upper() for t in expected} if style == "for-the-badge" else expected)
    assert complaints == []


@pytest.mark.parametrize("theme", DIGIT_THEMES)
def test_counter_digits_fit_in_chromium(
    server: LiveServer, browser_context: Any, theme: str
) -> None:
    url = f"{server.url}/counter/demo.svg?path={WIDE_PATH}&count=0&theme={theme}&digits=9"
    measures, complaints = open_svg(browser_context, url)
    assert_drawn_to_size(measures)
    if theme in ("odometer", "plain"):
        assert "".join(text["text"] for text in measures["texts"]) == f"{WIDE_COUNT:09d}"
    else:
        assert len(measures["shapes"]) == 9 * 7 and measures["texts"] == []
    assert complaints == []


def test_img_tags_draw_every_style_and_theme_and_count(
    server: LiveServer, browser_context: Any, app: Flask
) -> None:
    reads = [f"/badge/demo.svg?path={WIDE_PATH}&count=0&style={s}" for s in BADGE_STYLES] + [
        f"/counter/demo.svg?path={WIDE_PATH}&count=0&theme={t}" for t in DIGIT_THEMES
    ]
    counting = ["/badge/demo.svg", "/counter/demo.svg?theme=led"]
    tags = "".join(f'<p><img src="{server.url}{src}"></p>' for src in reads + counting)
    # The embedding page is served by another server on another origin (the site's own),
    # so its images are cross-origin and carry its Referer, as on a real site.
    site_server = serve_in_thread(html_app(f"<!doctype html><title>post</title>{tags}"))
    try:
        page = browser_context.new_page()
        page.goto(site_server.url.replace("127.0.0.1", "localhost") + "/post", timeout=15_000)
        drawn = page.evaluate(IMAGES)
        page.close()
    finally:
        site_server.stop()
    client = app.test_client()
    for src, img in zip(reads + counting, drawn, strict=True):
        declared = client.get(f"{src}&count=0" if "?" in src else f"{src}?count=0")
        root_size = [float(v) for v in _declared_size(declared.get_data(as_text=True))]
        assert img["complete"] and img["natural"] == root_size == img["rendered"], src
    # Each counting <img> counted once, at the page the Referer names (its origin only).
    count = client.get("/api/v1/sites/demo/count?path=/").get_json()
    assert count["hits"] == len(counting)


def html_app(html: str) -> Callable[..., Iterable[bytes]]:
    """A WSGI app answering every request with one HTML page."""

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [html.encode()]

    return serve


def _declared_size(svg: str) -> tuple[str, str]:
    root = ET.fromstring(svg)
    return root.attrib["width"], root.attrib["height"]
