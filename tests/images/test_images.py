"""Badges and digit counters over HTTP: counting, refusals, headers, ETags and injection."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from hitcounter import create_app
from hitcounter.errors import InvalidInput
from hitcounter.inputs import normalise_path
from hitcounter.render.badge import BADGE_STYLES, printable_text
from hitcounter.render.digits import DIGIT_THEMES
from hitcounter.store import Store
from tests.conftest import ADMIN_TOKEN, BROWSER, add_site, free_port, make_app
from tests.render.test_badge import SVG, XSS_PAYLOADS, assert_harmless, parse_svg, texts
from tests.render.test_digits import shown_digits

CAMO = {"User-Agent": "github-camo (876de43e)"}
ENDPOINTS = ("badge", "counter")


def fetch(client: FlaskClient, url: str, headers: dict[str, str] = BROWSER) -> TestResponse:
    return client.get(url, headers=headers)


def image(response: TestResponse) -> ET.Element:
    """Parse the answer as SVG and check it can run nothing."""
    root = parse_svg(response.get_data(as_text=True))
    assert_inert(root)
    return root


def assert_inert(root: ET.Element) -> None:
    """No element or attribute that runs script or fetches anything, not even via url()."""
    assert_harmless(root)
    for element in root.iter():
        for name, value in element.attrib.items():
            if name == "aria-label":  # plain text for screen readers, like <title>
                continue
            assert "javascript" not in value.lower()
            assert "url(" not in value or value.startswith("url(#"), value


def title(root: ET.Element) -> str:
    return root.findtext(f"{SVG}title") or ""


def shown(root: ET.Element, endpoint: str, theme: str = "odometer") -> int:
    """Read the count the image draws: the badge's value text, or the counter's digits."""
    if endpoint == "badge":
        return int(texts(root)[-1])
    return int(shown_digits(root, theme))


def page_hits(client: FlaskClient, site: str = "blog", path: str = "/") -> dict[str, int]:
    return dict(client.get(f"/api/v1/sites/{site}/count?path={path}").get_json())


@pytest.fixture
def client(client: FlaskClient) -> FlaskClient:
    add_site(client, "blog", domains=["blog.example"])  # the default 30-minute dedupe
    add_site(client, "every", dedupe_seconds=0)  # counts every view
    return client


# -- counting ----------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_each_fetch_counts_like_the_pixel(client: FlaskClient, endpoint: str) -> None:
    seen = [shown(image(fetch(client, f"/{endpoint}/every.svg?path=/post")), endpoint)]
    assert fetch(client, "/hit/every.gif?path=/post").status_code == 200
    seen += [shown(image(fetch(client, f"/{endpoint}/every.svg?path=/post")), endpoint)]
    assert seen == [1, 3]
    assert page_hits(client, "every", "/post") == {
        "path": "/post",
        "hits": 3,
        "raw_hits": 3,
        "site_hits": 3,
    }


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_count_0_shows_without_counting(client: FlaskClient, endpoint: str) -> None:
    fetch(client, f"/{endpoint}/every.svg?path=/a")
    for _ in range(3):
        response = fetch(client, f"/{endpoint}/every.svg?path=/a&count=0")
        assert response.status_code == 200
        assert shown(image(response), endpoint) == 1
    assert shown(image(fetch(client, f"/{endpoint}/every.svg?path=/a&count=false")), endpoint) == 1
    assert page_hits(client, "every", "/a")["raw_hits"] == 1


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_head_does_not_count(client: FlaskClient, endpoint: str) -> None:
    response = client.head(f"/{endpoint}/every.svg", headers=BROWSER)
    assert response.status_code == 200 and response.headers["ETag"]
    assert page_hits(client, "every")["raw_hits"] == 0


@pytest.mark.parametrize(
    ("query", "headers", "counted_path"),
    [
        ("?path=/given?utm=x", BROWSER | {"Referer": "https://blog.example/other"}, "/given"),
        ("", BROWSER | {"Referer": "https://blog.example/from/referer?q=1"}, "/from/referer"),
        ("", BROWSER, "/"),  # no Referer, as through an image proxy: the front page
        ("", CAMO, "/"),
    ],
)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_the_counted_path(
    client: FlaskClient, endpoint: str, query: str, headers: dict[str, str], counted_path: str
) -> None:
    assert fetch(client, f"/{endpoint}/blog.svg{query}", headers).status_code == 200
    assert page_hits(client, "blog", counted_path)["hits"] == 1


# Camo fetches for many viewers from a few addresses: every fetch is a view. A browser
# refetching the same page inside the site's window (default 1800 s) is one view.
DEDUPE_TABLE = [
    ("camo, no Referer", "blog", CAMO, [1, 2, 3, 4]),
    ("camo, any case", "blog", {"User-Agent": "GitHub-Camo (0123abcd)"}, [1, 2, 3, 4]),
    ("browser, no Referer", "blog", BROWSER, [1, 1, 1, 1]),
    ("browser on the site", "blog", BROWSER | {"Referer": "https://blog.example/"}, [1, 1, 1, 1]),
    ("browser, window 0", "every", BROWSER, [1, 2, 3, 4]),
]


def counts_of_fetches(client: FlaskClient, url: str, headers: dict[str, str], n: int) -> list[int]:
    """Fetch `n` times; every answer must be a 200 image; return the counts shown."""
    counts: list[int] = []
    for _ in range(n):
        response = fetch(client, url, headers)
        assert response.status_code == 200
        count = shown(image(response), url.split("/")[1])
        # Like the pixel, a repeat view inside the window says so; a counted view says nothing.
        repeat = "count=0" not in url and counts and count == counts[-1]
        assert response.headers.get("X-Hitcounter") == ("duplicate" if repeat else None)
        counts.append(count)
    return counts


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(("case", "site", "headers", "expected"), DEDUPE_TABLE)
def test_image_proxies_count_every_fetch_browsers_are_deduped(
    client: FlaskClient,
    endpoint: str,
    case: str,
    site: str,
    headers: dict[str, str],
    expected: list[int],
) -> None:
    url = f"/{endpoint}/{site}.svg"
    assert counts_of_fetches(client, url, headers, len(expected)) == expected, case
    assert page_hits(client, site)["raw_hits"] == len(expected)


@pytest.mark.integration
@pytest.mark.parametrize(("case", "site", "headers", "expected"), DEDUPE_TABLE)
def test_dedupe_table_on_real_redis(
    redis_app: Flask, case: str, site: str, headers: dict[str, str], expected: list[int]
) -> None:
    client = redis_app.test_client()
    add_site(client, "blog", domains=["blog.example"])
    add_site(client, "every", dedupe_seconds=0)
    assert counts_of_fetches(client, f"/badge/{site}.svg", headers, len(expected)) == expected
    assert counts_of_fetches(client, f"/counter/{site}.svg?count=0", headers, 1) == expected[-1:]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_image_proxies_skip_the_rate_limit(
    fake_store: Store, tmp_path: Path, endpoint: str
) -> None:
    client = make_app(fake_store, tmp_path, RATE_LIMIT_PER_MINUTE=3).test_client()
    add_site(client, "every", dedupe_seconds=0)
    url = f"/{endpoint}/every.svg"
    assert counts_of_fetches(client, url, BROWSER, 3) == [1, 2, 3]
    limited = fetch(client, url)
    assert (limited.status_code, limited.headers["X-Hitcounter"]) == (429, "rate_limited")
    assert title(image(limited)) == "views: rate limited"
    assert counts_of_fetches(client, url, CAMO, 5) == [4, 5, 6, 7, 8]


# -- what the images show ----------------------------------------------------------------------


def seed(store: Store, site: str, path: str, hits: int) -> None:
    """Give a page a starting count, as an import would."""
    store.set_pages(site, [(path, hits, hits)])


@pytest.mark.parametrize(
    ("query", "value", "title_text"),
    [
        ("", "12345", "views: 12345"),
        ("&abbreviate=1", "12.3k", "views: 12.3k"),
        ("&abbreviate=true", "12.3k", "views: 12.3k"),
        ("&abbreviate=0", "12345", "views: 12345"),
        ("&abbreviate=true&style=for-the-badge", "12.3K", "views: 12.3k"),
        ("&label=hits", "12345", "hits: 12345"),
        ("&label=", "12345", "12345"),  # an empty label draws the value alone
    ],
)
def test_badge_value_and_label(
    client: FlaskClient, fake_store: Store, query: str, value: str, title_text: str
) -> None:
    seed(fake_store, "every", "/", 12_344)
    root = image(fetch(client, f"/badge/every.svg?path=/{query}"))
    assert texts(root)[-1] == value
    assert title(root) == title_text


@pytest.mark.parametrize("style", BADGE_STYLES)
def test_every_badge_style(client: FlaskClient, style: str) -> None:
    query = f"style={style}&color=navy&label_color=%23abc"
    body = fetch(client, f"/badge/every.svg?{query}").get_data(as_text=True)
    root = image(fetch(client, f"/badge/every.svg?{query}&count=0"))
    assert shown(root, "badge") == 1
    assert 'fill="#000080"' in body and 'fill="#aabbcc"' in body


@pytest.mark.parametrize("theme", DIGIT_THEMES)
@pytest.mark.parametrize(("digits", "drawn"), [("", "000001"), ("3", "001"), ("1", "1")])
def test_counter_digits_and_themes(
    client: FlaskClient, theme: str, digits: str, drawn: str
) -> None:
    root = image(fetch(client, f"/counter/every.svg?theme={theme}&digits={digits}"))
    assert shown_digits(root, theme) == drawn
    assert title(root) == "1 hits"


def test_counter_default_is_a_six_digit_odometer(client: FlaskClient) -> None:
    default = fetch(client, "/counter/every.svg?count=0").get_data()
    explicit = fetch(client, "/counter/every.svg?count=0&theme=odometer&digits=6").get_data()
    assert default == explicit


@pytest.mark.parametrize(
    ("query", "fg", "bg"),
    [
        ("", "#000000", "#ffffff"),
        ("&fg=ff0000&bg=%23001", "#ff0000", "#000011"),
        ("&fg=navy&bg=silver", "#000080", "#c0c0c0"),
        ("&f=16777215&b=0", "#ffffff", "#000000"),  # SimpleHitCounter's decimal RGB
        ("&f=255&b=65280", "#0000ff", "#00ff00"),
        ("&fg=red&f=255", "#e05d44", "#ffffff"),  # fg wins over f
        ("&b=255&bg=", "#000000", "#0000ff"),  # an empty bg is no bg
    ],
)
def test_counter_colours(client: FlaskClient, query: str, fg: str, bg: str) -> None:
    root = image(fetch(client, f"/counter/every.svg?theme=plain{query}"))
    background = root.find(f"{SVG}rect")
    assert background is not None and background.attrib["fill"] == bg
    assert {text.attrib["fill"] for text in root.iter(f"{SVG}text")} == {fg}


# -- refusals ----------------------------------------------------------------------------------

EVIL_REFERER = BROWSER | {"Referer": "https://evil.example/"}

# (url, headers, status, X-Hitcounter, what the image says)
REFUSALS = [
    ("/badge/nosuch.svg", BROWSER, 404, "unknown_site", "unknown site"),
    ("/badge/nosuch.svg?count=0", BROWSER, 404, "unknown_site", "unknown site"),
    ("/counter/nosuch.svg", BROWSER, 404, "unknown_site", "unknown site"),
    ("/counter/nosuch.svg?count=0", BROWSER, 404, "unknown_site", "unknown site"),
    ("/badge/Bad%20Name.svg", BROWSER, 400, "invalid", "invalid site"),
    ("/counter/Bad%20Name.svg?count=0", BROWSER, 400, "invalid", "invalid site"),
    ("/badge/blog.svg?path=/%ff", BROWSER, 400, "invalid", "invalid path"),
    ("/counter/blog.svg?path=/%ff&count=0", BROWSER, 400, "invalid", "invalid path"),
    ("/badge/blog.svg?path=/" + "x" * 600, BROWSER, 400, "invalid", "invalid path"),
    ("/badge/blog.svg", {"User-Agent": "Googlebot/2.1"}, 403, "bot", "bot"),
    ("/counter/blog.svg", {"User-Agent": ""}, 403, "bot", "bot"),
    ("/badge/blog.svg", EVIL_REFERER, 403, "origin", "origin not allowed"),
    ("/counter/blog.svg", BROWSER | {"Origin": "https://evil.example"}, 403, "origin",
     "origin not allowed"),
    ("/badge/blog.svg", BROWSER | {"Sec-Purpose": "prefetch"}, 400, "prefetch", "prefetch"),
    # Display parameters are checked before counting.
    ("/badge/blog.svg?style=3d", BROWSER, 400, "invalid", "invalid style"),
    ("/badge/blog.svg?color=nope", BROWSER, 400, "invalid", "invalid colour"),
    ("/badge/blog.svg?label_color=%23ggg", BROWSER, 400, "invalid", "invalid colour"),
    ("/badge/blog.svg?abbreviate=maybe", BROWSER, 400, "invalid", "invalid abbreviate"),
    ("/badge/blog.svg?count=2", BROWSER, 400, "invalid", "invalid count"),
    ("/counter/blog.svg?theme=nixie", BROWSER, 400, "invalid", "invalid theme"),
    ("/counter/blog.svg?digits=0", BROWSER, 400, "invalid", "invalid digits"),
    ("/counter/blog.svg?digits=13", BROWSER, 400, "invalid", "invalid digits"),
    ("/counter/blog.svg?digits=-1", BROWSER, 400, "invalid", "invalid digits"),
    ("/counter/blog.svg?digits=six", BROWSER, 400, "invalid", "invalid digits"),
    ("/counter/blog.svg?digits=99999999999999999999", BROWSER, 400, "invalid", "invalid digits"),
    ("/counter/blog.svg?fg=nope", BROWSER, 400, "invalid", "invalid colour"),
    ("/counter/blog.svg?bg=%23abcd", BROWSER, 400, "invalid", "invalid colour"),
    ("/counter/blog.svg?f=16777216", BROWSER, 400, "invalid", "invalid colour"),
    ("/counter/blog.svg?b=-1", BROWSER, 400, "invalid", "invalid colour"),
    ("/counter/blog.svg?f=0x10", BROWSER, 400, "invalid", "invalid colour"),
    ("/counter/blog.svg?count=maybe", BROWSER, 400, "invalid", "invalid count"),
]  # fmt: skip


@pytest.mark.parametrize(("url", "headers", "status", "reason", "says"), REFUSALS)
def test_refused_requests_get_an_image_that_says_why(
    client: FlaskClient, url: str, headers: dict[str, str], status: int, reason: str, says: str
) -> None:
    response = fetch(client, url, headers)
    assert (response.status_code, response.headers["X-Hitcounter"]) == (status, reason)
    assert title(image(response)) == f"views: {says}"
    assert texts(image(response))[-1] == says
    assert page_hits(client, "blog")["site_hits"] == 0
    assert page_hits(client, "blog")["raw_hits"] == 0


def test_a_refusal_keeps_the_badge_label_and_style(client: FlaskClient) -> None:
    response = fetch(client, "/badge/blog.svg?label=hits&style=for-the-badge&color=nope")
    root = image(response)
    assert (response.status_code, title(root)) == (400, "hits: invalid colour")
    assert texts(root) == ["HITS", "INVALID COLOUR"]


@pytest.mark.parametrize("url", ["/badge/blog.svg", "/counter/blog.svg?count=0"])
def test_store_unavailable_is_a_503_image(tmp_path: Path, url: str) -> None:
    # Nothing listens on this port: every Redis call fails as when Redis is down.
    app = create_app(
        {
            "TESTING": True,
            "ADMIN_TOKEN": ADMIN_TOKEN,
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "REDIS_TIMEOUT": 0.5,
            "DATA_DIR": str(tmp_path / "data"),
        }
    )
    response = fetch(app.test_client(), url)
    assert (response.status_code, response.headers["X-Hitcounter"]) == (503, "unavailable")
    assert title(image(response)) == "views: unavailable"
    assert response.headers["Cache-Control"].startswith("no-cache, no-store")


# -- headers and ETags -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "headers", "status"),
    [
        ("/badge/blog.svg", BROWSER, 200),
        ("/counter/blog.svg", BROWSER, 200),
        ("/badge/blog.svg?count=0", BROWSER, 200),
        ("/counter/blog.svg?theme=led&count=0", BROWSER, 200),
        ("/badge/blog.svg?color=nope", BROWSER, 400),
        ("/counter/nosuch.svg", BROWSER, 404),
        ("/badge/blog.svg", {"User-Agent": "Googlebot/2.1"}, 403),
    ],
)
def test_headers_on_every_answer(
    client: FlaskClient, url: str, headers: dict[str, str], status: int
) -> None:
    response = fetch(client, url, headers)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "image/svg+xml; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-cache, no-store, max-age=0, must-revalidate"
    assert response.headers["Pragma"] == "no-cache"
    assert response.headers["Expires"] == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    csp = response.headers["Content-Security-Policy"]
    assert csp == "default-src 'none'; style-src 'unsafe-inline'"
    assert response.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert response.headers["ETag"].strip('"')
    assert "Set-Cookie" not in response.headers
    image(response)


@pytest.mark.parametrize(
    ("site", "origin", "allowed"),
    [
        ("blog", "https://blog.example", "https://blog.example"),
        ("every", "https://anywhere.example", "*"),
        ("nosuch", "https://anywhere.example", "*"),
    ],
)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_cors(client: FlaskClient, endpoint: str, site: str, origin: str, allowed: str) -> None:
    response = fetch(client, f"/{endpoint}/{site}.svg", BROWSER | {"Origin": origin})
    assert response.headers["Access-Control-Allow-Origin"] == allowed
    assert "X-Hitcounter" in response.headers["Access-Control-Expose-Headers"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_etag_follows_the_count(client: FlaskClient, endpoint: str) -> None:
    url = f"/{endpoint}/every.svg"
    first = fetch(client, url).headers["ETag"]
    second = fetch(client, url).headers["ETag"]
    read = fetch(client, f"{url}?count=0").headers["ETag"]
    assert first != second == read
    # A counting fetch never answers 304, even when it names the current ETag.
    again = fetch(client, url, BROWSER | {"If-None-Match": read})
    assert again.status_code == 200 and shown(image(again), endpoint) == 3
    assert again.headers["ETag"] not in (first, second)
    # A read may: nothing changed for it.
    current = again.headers["ETag"]
    unchanged = fetch(client, f"{url}?count=0", BROWSER | {"If-None-Match": current})
    assert (unchanged.status_code, unchanged.data) == (304, b"")
    assert page_hits(client, "every")["hits"] == 3


# -- injection ---------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", XSS_PAYLOADS)
def test_label_payloads_stay_text(client: FlaskClient, payload: str) -> None:
    response = client.get("/badge/every.svg", query_string={"label": payload}, headers=BROWSER)
    assert response.status_code == 200
    root = image(response)
    assert title(root) == f"{printable_text(payload)}: 1"


@pytest.mark.parametrize("payload", [*XSS_PAYLOADS, "/\x00<script>", "/%3Cscript%3E"])
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_path_payloads_never_reach_the_image(
    client: FlaskClient, endpoint: str, payload: str
) -> None:
    response = client.get(f"/{endpoint}/every.svg", query_string={"path": payload}, headers=BROWSER)
    root = image(response)
    assert "alert" not in response.get_data(as_text=True)
    assert "script" not in response.get_data(as_text=True)
    try:
        path = normalise_path(payload)
    except InvalidInput:
        assert (response.status_code, title(root)) == (400, "views: invalid path")
    else:
        assert response.status_code == 200 and shown(root, endpoint) == 1
        assert client.get("/api/v1/sites/every/count", query_string={"path": path}).json == {
            "path": path,
            "hits": 1,
            "raw_hits": 1,
            "site_hits": 1,
        }


COLOUR_PAYLOADS = [
    'red" onload="alert(1)',
    "red' onload='alert(1)",
    '"><script>alert(1)</script>',
    "javascript:alert(1)",
    "url(javascript:alert(1))",
    "url(#x) red",
    "#fff;background:url(//evil.example/x)",
    "expression(alert(1))",
    "red<script>",
    "#12345g",
    "\uff03fff",  # a full-width number sign
    "\u212aelvin",  # the Kelvin sign lower-cases to an ASCII k
    "rgb(1,2,3)",
    "currentColor",
    "16777215 onload=alert(1)",
]
COLOUR_PARAMETERS = [
    ("badge", "color"),
    ("badge", "label_color"),
    ("counter", "fg"),
    ("counter", "bg"),
    ("counter", "f"),
    ("counter", "b"),
]


@pytest.mark.parametrize(("endpoint", "parameter"), COLOUR_PARAMETERS)
@pytest.mark.parametrize("payload", COLOUR_PAYLOADS)
def test_bad_colours_are_refused_and_not_counted(
    client: FlaskClient, endpoint: str, parameter: str, payload: str
) -> None:
    response = client.get(
        f"/{endpoint}/every.svg", query_string={parameter: payload}, headers=BROWSER
    )
    assert (response.status_code, response.headers["X-Hitcounter"]) == (400, "invalid")
    assert title(image(response)) == "views: invalid colour"
    body = response.get_data(as_text=True)
    assert "alert" not in body and "script" not in body and "onload" not in body
    assert page_hits(client, "every")["raw_hits"] == 0
