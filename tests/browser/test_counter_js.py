"""counter.js in Chromium: test pages on one origin, the counter on another."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from flask.testing import FlaskClient
from playwright.sync_api import expect

from hitcounter.store import Store
from tests.browser.harness import (
    PUBLIC_COUNTER,
    PUBLIC_PAGES,
    Pages,
    Tab,
    embed_page,
    serve_under_public_names,
)
from tests.conftest import BROWSER, BROWSER_UA, add_site

pytestmark = pytest.mark.browser

# Playwright's Chromium reports navigator.webdriver; this makes it an ordinary browser.
NOT_AUTOMATED = "Object.defineProperty(Navigator.prototype, 'webdriver', {get: () => false})"


@pytest.fixture(autouse=True)
def blog(client: FlaskClient) -> None:
    """A public site open to any domain that counts every view (no dedupe window)."""
    add_site(client, "blog", public=True, dedupe_seconds=0)


def page_hits(store: Store, path: str, site: str = "blog") -> int:
    return store.page_count(site, path)[0]


def today(store: Store, site: str = "blog") -> dict[str, str]:
    day = store.keys.day(site, datetime.now(UTC).date().isoformat())
    return {k.decode(): v.decode() for k, v in store.redis.hgetall(day).items()}


def counts_shown(tab: Tab, page: str, site: str) -> None:
    expect(tab.page.locator("#page-count")).to_have_text(page)
    expect(tab.page.locator("#site-count")).to_have_text(site)


def test_a_view_is_counted_shown_and_the_next_view_shows_the_next_number(
    tab: Tab, pages: Pages, fake_store: Store, browser_context: Any
) -> None:
    pages.show(embed_page(tab.counter))
    with tab.page.expect_request(f"{tab.counter}/api/v1/hit") as sent:
        tab.page.goto(f"{pages.url}/post/")
    beacon = sent.value
    assert beacon.method == "POST"
    assert beacon.headers["content-type"] == "text/plain"
    assert json.loads(beacon.post_data) == {"site": "blog", "path": "/post/", "referrer": ""}
    counts_shown(tab, "1", "1")

    tab.page.reload()
    counts_shown(tab, "2", "2")
    assert tab.sent == [("beacon", "/post/"), ("beacon", "/post/")]
    assert page_hits(fake_store, "/post/") == 2
    assert browser_context.cookies() == []
    assert tab.console_errors == []


@pytest.mark.parametrize(
    ("locale", "shown"), [("en-US", "1,235"), ("de-DE", "1.235"), ("fr-FR", "1\u202f235")]
)
def test_counts_are_formatted_for_the_readers_locale(
    browser: Any, pages: Pages, counter: str, fake_store: Store, locale: str, shown: str
) -> None:
    fake_store.set_pages("blog", [("/", 1234, 1234)])
    fake_store.redis.hset(fake_store.keys.totals("blog"), "hits", 1234)
    pages.show(embed_page(counter))
    context = browser.new_context(user_agent=BROWSER_UA, locale=locale)
    try:
        page = context.new_page()
        page.goto(f"{pages.url}/")
        expect(page.locator("#page-count")).to_have_text(shown)
        expect(page.locator("#site-count")).to_have_text(shown)
    finally:
        context.close()


def test_only_an_external_referrer_is_sent(tab: Tab, pages: Pages, fake_store: Store) -> None:
    pages.show(embed_page(tab.counter))
    with tab.page.expect_request(f"{tab.counter}/api/v1/hit") as sent:
        tab.page.goto(f"{pages.url}/post/", referer="https://news.example.org/item?id=1")
    assert json.loads(sent.value.post_data)["referrer"].startswith("https://news.example.org/")
    counts_shown(tab, "1", "1")
    # Following a link on the site itself: the referrer is the site, so none is sent.
    with tab.page.expect_request(f"{tab.counter}/api/v1/hit") as sent:
        tab.page.click("#next")
    assert json.loads(sent.value.post_data) == {"site": "blog", "path": "/next/", "referrer": ""}
    counts_shown(tab, "1", "2")
    day = datetime.now(UTC).date().isoformat()
    referrers = fake_store.redis.zrange(fake_store.keys.referrers("blog", day), 0, -1)
    assert referrers == [b"news.example.org"]


def test_single_page_navigation_counts_each_new_path_once(
    tab: Tab, pages: Pages, fake_store: Store
) -> None:
    pages.show(embed_page(tab.counter))
    page = tab.page
    page.goto(f"{pages.url}/app/")
    counts_shown(tab, "1", "1")

    page.evaluate("history.pushState({}, '', '/app/two')")
    counts_shown(tab, "1", "2")
    page.evaluate("history.pushState({}, '', '/app/two?tab=1')")  # same path: no hit
    page.evaluate("location.hash = 'section'")  # no data-hash: no hit
    page.evaluate("history.replaceState({}, '', '/app/three')")
    counts_shown(tab, "1", "3")
    page.go_back()  # popstate: /app/two (the entry replaceState did not touch)
    counts_shown(tab, "2", "4")
    page.go_back()
    page.go_back()  # popstate: /app/
    counts_shown(tab, "2", "5")

    assert tab.paths == ["/app/", "/app/two", "/app/three", "/app/two", "/app/"]
    assert [page_hits(fake_store, p) for p in ("/app/", "/app/two", "/app/three")] == [2, 2, 1]
    assert tab.console_errors == []


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ("data-allow-local", ["/docs/"]),
        ("data-allow-local data-hash", ["/docs/", "/docs/%23/install", "/docs/"]),
    ],
)
def test_hash_changes_count_only_with_data_hash(
    tab: Tab, pages: Pages, fake_store: Store, attrs: str, expected: list[str]
) -> None:
    pages.show(embed_page(tab.counter, attrs=attrs))
    page = tab.page
    page.goto(f"{pages.url}/docs/")
    counts_shown(tab, "1", "1")
    page.evaluate("location.hash = '/install'")
    page.evaluate("location.hash = '/install'")  # unchanged: no event, no hit
    page.go_back()  # back to no hash
    # A hit the page can wait for: everything before it has been sent by then. Its answer
    # may overtake the hit on going back, so the count is read once all were answered.
    with page.expect_response(lambda answer: "/marker" in (answer.request.post_data or "")):
        page.evaluate("hitcounter.hit('/marker')")
    tab.wait_for_answers()
    assert tab.paths == [*expected, "/marker"]
    assert fake_store.all_time_totals("blog")[0] == len(expected) + 1
    if "data-hash" in attrs:
        assert page_hits(fake_store, "/docs/%23/install") == 1


@pytest.mark.parametrize(
    ("domains", "counted"), [(["127.0.0.1"], True), (["example.com", "*.example.org"], False)]
)
def test_allowed_domains_decide_whether_a_page_counts(
    tab: Tab,
    pages: Pages,
    client: FlaskClient,
    fake_store: Store,
    domains: list[str],
    counted: bool,
) -> None:
    add_site(client, "shop", domains=domains, dedupe_seconds=0)
    pages.show(embed_page(tab.counter, site="shop"))
    with tab.page.expect_response(f"{tab.counter}/api/v1/hit") as answer:
        tab.page.goto(f"{pages.url}/cart/")
    if counted:
        assert answer.value.status == 200
        counts_shown(tab, "1", "1")
        assert page_hits(fake_store, "/cart/", "shop") == 1
    else:
        assert answer.value.status == 403
        assert answer.value.headers["x-hitcounter"] == "origin"
        assert page_hits(fake_store, "/cart/", "shop") == 0
        assert today(fake_store, "shop")["drop:origin"] == "1"
        # Dropped: nothing is shown and the GIF is not tried as a second attempt.
        expect(tab.page.locator("#page-count")).to_have_text("")
        assert tab.sent == [("beacon", "/cart/")]


BLOCK_FETCH = {
    "fetch missing": "window.fetch = undefined",
    "fetch rejects": "window.fetch = () => Promise.reject(new TypeError('Failed to fetch'))",
}


@pytest.mark.parametrize("stub", BLOCK_FETCH.values(), ids=BLOCK_FETCH.keys())
def test_without_fetch_the_gif_counts(tab: Tab, pages: Pages, fake_store: Store, stub: str) -> None:
    tab.page.add_init_script(stub)
    pages.show(embed_page(tab.counter))
    with tab.page.expect_response(f"{tab.counter}/hit/blog.gif?*") as answer:
        tab.page.goto(f"{pages.url}/post/?utm=x")
    assert answer.value.status == 200
    assert answer.value.headers["content-type"] == "image/gif"
    assert page_hits(fake_store, "/post/") == 1
    assert tab.sent == [("pixel", "/post/")]


def test_a_blocked_beacon_falls_back_to_the_gif_and_still_shows_the_count(
    tab: Tab, pages: Pages, fake_store: Store
) -> None:
    # Like an ad blocker refusing the beacon URL: fetch itself rejects.
    tab.page.route(f"{tab.counter}/api/v1/hit", lambda route: route.abort("blockedbyclient"))
    pages.show(embed_page(tab.counter))
    tab.page.goto(f"{pages.url}/post/")
    counts_shown(tab, "1", "1")
    assert tab.sent == [("beacon", "/post/"), ("pixel", "/post/")]
    assert page_hits(fake_store, "/post/") == 1


SKIPS = {
    "ignore flag": ("data-allow-local", "localStorage.setItem('hitcounter_ignore', '1')"),
    "do not track": (
        "data-allow-local data-respect-dnt",
        "Object.defineProperty(Navigator.prototype, 'doNotTrack', {get: () => '1'})",
    ),
    "global privacy control": (
        "data-allow-local data-respect-dnt",
        "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true})",
    ),
    "automated browser": ("", ""),
    "localhost": ("", NOT_AUTOMATED),
}


@pytest.mark.parametrize(("attrs", "init"), SKIPS.values(), ids=SKIPS.keys())
def test_skipped_views_are_not_counted_but_still_shown(
    tab: Tab, pages: Pages, client: FlaskClient, fake_store: Store, attrs: str, init: str
) -> None:
    earlier = client.post("/api/v1/hit", data='{"site": "blog", "path": "/post/"}', headers=BROWSER)
    assert earlier.status_code == 200  # one earlier view, for the page to show
    if init:
        tab.page.add_init_script(init)
    pages.show(embed_page(tab.counter, attrs=attrs))
    with tab.page.expect_response(f"{tab.counter}/api/v1/sites/blog/count?*"):
        tab.page.goto(f"{pages.url}/post/")
    counts_shown(tab, "1", "1")
    assert tab.sent == []
    assert page_hits(fake_store, "/post/") == 1


RESPECTED_ONLY_WHEN_ASKED = {
    "dnt without data-respect-dnt": (
        "data-allow-local",
        "Object.defineProperty(Navigator.prototype, 'doNotTrack', {get: () => '1'})",
    ),
    "not automated, not local": ("", NOT_AUTOMATED),
}


@pytest.mark.parametrize(
    ("attrs", "init"), RESPECTED_ONLY_WHEN_ASKED.values(), ids=RESPECTED_ONLY_WHEN_ASKED.keys()
)
def test_views_count_when_no_skip_applies(
    tab: Tab, fake_store: Store, attrs: str, init: str
) -> None:
    serve_under_public_names(tab.page, embed_page(PUBLIC_COUNTER, attrs=attrs), tab.counter)
    tab.counter = PUBLIC_COUNTER
    tab.page.add_init_script(init)
    tab.page.goto(f"{PUBLIC_PAGES}/post/")
    counts_shown(tab, "1", "1")
    assert tab.sent == [("beacon", "/post/")]
    assert page_hits(fake_store, "/post/") == 1


def test_an_automated_browser_is_skipped_on_a_public_name(tab: Tab, fake_store: Store) -> None:
    serve_under_public_names(tab.page, embed_page(PUBLIC_COUNTER, attrs=""), tab.counter)
    tab.counter = PUBLIC_COUNTER
    with tab.page.expect_response(f"{PUBLIC_COUNTER}/api/v1/sites/blog/count?*"):
        tab.page.goto(f"{PUBLIC_PAGES}/post/")
    counts_shown(tab, "0", "0")
    assert tab.sent == []
    assert page_hits(fake_store, "/post/") == 0


def test_visiting_hitcounter_ignore_toggles_the_owners_flag(
    tab: Tab, pages: Pages, fake_store: Store
) -> None:
    pages.show(embed_page(tab.counter))
    page = tab.page
    with page.expect_console_message(lambda m: "hitcounter: ignoring" in m.text):
        page.goto(f"{pages.url}/a/#hitcounter-ignore")
    assert page.evaluate("localStorage.getItem('hitcounter_ignore')") is not None
    with page.expect_response(f"{tab.counter}/api/v1/sites/blog/count?*"):
        page.goto(f"{pages.url}/b/")
    counts_shown(tab, "0", "0")
    with page.expect_console_message(lambda m: "hitcounter: counting" in m.text):
        page.evaluate("location.hash = 'hitcounter-ignore'")  # on a loaded page, too
    assert page.evaluate("localStorage.getItem('hitcounter_ignore')") is None
    page.goto(f"{pages.url}/c/")
    counts_shown(tab, "1", "1")
    assert tab.paths == ["/c/"]
    assert [page_hits(fake_store, p) for p in ("/a/", "/b/", "/c/")] == [0, 0, 1]


def test_a_throwing_localstorage_breaks_nothing(tab: Tab, pages: Pages, fake_store: Store) -> None:
    tab.page.add_init_script(
        "Object.defineProperty(window, 'localStorage', "
        "{get() { throw new DOMException('denied', 'SecurityError') }})"
    )
    pages.show(embed_page(tab.counter))
    tab.page.goto(f"{pages.url}/post/")
    counts_shown(tab, "1", "1")
    # The ignore toggle cannot store anything: it says so and the view stays uncounted.
    with tab.page.expect_console_message(lambda m: "hitcounter: counting" in m.text):
        tab.page.evaluate("location.hash = 'hitcounter-ignore'")
    tab.page.evaluate("location.hash = ''; hitcounter.hit('/marker')")
    counts_shown(tab, "1", "2")
    assert tab.paths == ["/post/", "/marker"]
    assert page_hits(fake_store, "/post/") == 1
    assert tab.console_errors == []


def test_manual_tracking_and_a_fixed_path(tab: Tab, pages: Pages, fake_store: Store) -> None:
    pages.show(embed_page(tab.counter, attrs='data-allow-local data-auto="false"'))
    page = tab.page
    page.goto(f"{pages.url}/shop/")
    page.wait_for_function("window.hitcounter && typeof hitcounter.hit === 'function'")
    page.evaluate("history.pushState({}, '', '/shop/item')")  # automatic hits are off
    page.evaluate("hitcounter.hit('/virtual/checkout')")
    counts_shown(tab, "1", "1")
    page.evaluate("hitcounter.hit()")  # the current path
    counts_shown(tab, "1", "2")
    assert tab.paths == ["/virtual/checkout", "/shop/item"]

    pages.show(embed_page(tab.counter, attrs='data-allow-local data-path="/fixed"'))
    page.goto(f"{pages.url}/anything/")
    counts_shown(tab, "1", "3")
    assert page_hits(fake_store, "/fixed") == 1


PRERENDER = """
window.__prerendering = true;
Object.defineProperty(Document.prototype, 'prerendering', {get: () => window.__prerendering});
"""


def test_a_prerendered_page_counts_once_it_is_shown(
    tab: Tab, pages: Pages, fake_store: Store
) -> None:
    tab.page.add_init_script(PRERENDER)
    pages.show(embed_page(tab.counter))
    page = tab.page
    page.goto(f"{pages.url}/pre/")  # returns after load, so after the async script ran
    page.wait_for_function("window.hitcounter")
    page.evaluate("history.replaceState({}, '', '/pre/landing')")  # still prerendering
    assert tab.sent == []
    page.evaluate(
        "window.__prerendering = false; document.dispatchEvent(new Event('prerenderingchange'))"
    )
    counts_shown(tab, "1", "1")
    assert tab.paths == ["/pre/landing"]
    assert (page_hits(fake_store, "/pre/"), page_hits(fake_store, "/pre/landing")) == (0, 1)


def test_loading_the_snippet_twice_counts_once(tab: Tab, pages: Pages, fake_store: Store) -> None:
    page_html = embed_page(tab.counter)
    script = page_html.split("<script", 1)[1].split("</script>", 1)[0]
    pages.show(page_html.replace("</body>", f"<script{script}</script></body>"))
    tab.page.goto(f"{pages.url}/post/")
    counts_shown(tab, "1", "1")
    tab.page.evaluate("hitcounter.hit('/marker')")
    counts_shown(tab, "1", "2")
    assert tab.paths == ["/post/", "/marker"]
    assert page_hits(fake_store, "/post/") == 1


def test_the_counter_sets_no_cookie_and_the_page_logs_no_error(
    tab: Tab, pages: Pages, browser_context: Any
) -> None:
    pages.show(embed_page(tab.counter))
    responses: list[Any] = []
    tab.page.on("response", lambda response: responses.append(response))
    tab.page.goto(f"{pages.url}/post/")
    counts_shown(tab, "1", "1")
    tab.page.evaluate("history.pushState({}, '', '/post/2')")
    counts_shown(tab, "1", "2")
    counter_answers = [r for r in responses if r.url.startswith(tab.counter)]
    assert {r.url.split("?")[0].removeprefix(tab.counter) for r in counter_answers} == {
        "/counter.js",
        "/api/v1/hit",
    }
    assert all("set-cookie" not in r.all_headers() for r in counter_answers)
    assert browser_context.cookies() == []
    assert tab.console_errors == []
