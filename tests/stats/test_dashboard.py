"""The dashboard: its HTML answers, and what Chromium shows and runs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import LiveServer, add_site, serve_in_thread
from tests.stats.conftest import hit

HOSTILE_PATHS = ["/<script>alert(1)</script>", '/"><img src=x onerror=alert(1)>']
HOSTILE_REFERRER = "https://evil.example/"
DAYS = 30


@pytest.fixture
def traffic(app: Flask, client: FlaskClient) -> str:
    """A private site with a month of traffic, hostile paths included; its read token."""
    token = add_site(client, "blog")
    now = datetime.now(UTC)
    for day in range(DAYS):
        for n in range(day % 4 + 1):
            path = HOSTILE_PATHS[n % 2] if n < 2 and day % 3 == 0 else f"/post/{n}"
            hit(app, "blog", path, now - timedelta(days=day), ip=f"10.0.{day}.{n}",
                referrer=HOSTILE_REFERRER)  # fmt: skip
    hit(app, "blog", "/x", now, user_agent="Googlebot/2.1")
    return token


def test_dashboard_html(client: FlaskClient, traffic: str) -> None:
    response = client.get(f"/sites/blog/?token={traffic}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert response.headers["Referrer-Policy"] == "no-referrer"  # the token stays here
    assert "script-src" not in response.headers["Content-Security-Policy"]  # none at all
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert "<script" not in html and "<img" not in html
    assert "/&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "/&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert html.count('class="bar"') == DAYS
    # The range picker and quick links keep the token.
    assert f'name="token" value="{traffic}"' in html
    assert html.count(f"token={traffic}") >= 3


@pytest.mark.parametrize(
    ("query", "status", "text"),
    [
        ("", 401, "read token"),
        ("?token=wrong", 401, "read token"),
        ("?token={token}&from=2026-02-30", 400, "not a real date"),
        ("?token={token}&from=2026-03-02&to=2026-03-01", 400, "is after"),
    ],
)
def test_dashboard_errors_are_pages(
    client: FlaskClient, traffic: str, query: str, status: int, text: str
) -> None:
    response = client.get("/sites/blog/" + query.format(token=traffic))
    assert response.status_code == status
    assert response.mimetype == "text/html"
    assert text in response.get_data(as_text=True)
    assert "/post/" not in response.get_data(as_text=True)


def test_dashboard_of_unknown_site(client: FlaskClient) -> None:
    response = client.get("/sites/nosuch/")
    assert (response.status_code, response.mimetype) == (404, "text/html")


# -- in Chromium --------------------------------------------------------------------------


@pytest.fixture
def served(app: Flask) -> Iterator[LiveServer]:
    live = serve_in_thread(app)
    yield live
    live.stop()


@pytest.mark.browser
@pytest.mark.parametrize(("width", "height"), [(1280, 900), (375, 812)])
def test_dashboard_in_chromium(
    browser: Any, served: LiveServer, traffic: str, width: int, height: int, tmp_path: Any
) -> None:
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(f"{served.url}/sites/blog/?token={traffic}")
        page.wait_for_load_state("load")
        # The chart: a bar per day and the visitors line.
        assert page.locator("svg.chart rect.bar").count() == DAYS
        assert page.locator("svg.chart polyline.visitors").count() == 1
        # The tables, with the hostile paths shown as text.
        assert page.locator("#pages tbody tr").count() >= 4
        for path in HOSTILE_PATHS:
            assert page.get_by_text(path, exact=True).is_visible()
        assert page.locator("#referrers").get_by_text("evil.example").is_visible()
        assert page.locator("#dropped").get_by_text("bot").is_visible()
        # ... and nothing of theirs became an element or ran.
        assert page.locator("script").count() == 0
        assert page.locator("img").count() == 0
        assert dialogs == [] and errors == []
        # Nothing is wider than the screen, on a phone too.
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0
        page.screenshot(path=str(tmp_path / f"dashboard-{width}.png"), full_page=True)

        # A quick range link keeps the token and shows 7 days.
        page.get_by_role("link", name="7 days").click()
        page.wait_for_load_state("load")
        assert f"token={traffic}" in page.url
        assert page.locator("svg.chart rect.bar").count() == 7
    finally:
        context.close()


@pytest.mark.browser
def test_range_picker_submits_the_range(browser: Any, served: LiveServer, traffic: str) -> None:
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"{served.url}/sites/blog/?token={traffic}")
        today = datetime.now(UTC).date()
        page.fill("input[name=from]", str(today - timedelta(days=2)))
        page.fill("input[name=to]", str(today))
        page.get_by_role("button", name="Show").click()
        page.wait_for_load_state("load")
        assert f"from={today - timedelta(days=2)}" in page.url and f"token={traffic}" in page.url
        assert page.locator("svg.chart rect.bar").count() == 3
    finally:
        context.close()
