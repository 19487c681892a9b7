"""GET /counter.js as served (caching, ETag, size, no cookies) and the landing page around it.

What the snippet does in a browser is tested in Chromium: tests/browser/test_counter_js.py.
"""

from __future__ import annotations

import gzip
import logging
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from markupsafe import escape

from hitcounter.store import Store, connect
from tests.conftest import ADMIN, BROWSER, add_site, free_port, make_app

SNIPPET = resources.files("hitcounter").joinpath("static", "counter.js").read_bytes()
MAX_GZIPPED = 1536  # 1.5 KB


@pytest.fixture(autouse=True)
def blog(client: FlaskClient) -> None:
    add_site(client, "blog", public=True)


def test_the_snippet_is_served_cacheable_with_a_strong_etag(client: FlaskClient) -> None:
    response = client.get("/counter.js")
    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    assert response.data == SNIPPET
    etag, weak = response.get_etag()
    assert etag and not weak
    assert response.cache_control.public
    assert response.cache_control.max_age is not None and response.cache_control.max_age >= 86400
    # Any page may load it, and cross-origin isolated pages may embed it.
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Cross-Origin-Resource-Policy"] == "cross-origin"


@pytest.mark.parametrize(
    ("if_none_match", "status"),
    [("{etag}", 304), ('"stale", {etag}', 304), ("*", 304), ('"stale"', 200), ("", 200)],
)
def test_a_cached_snippet_is_revalidated_by_etag(
    client: FlaskClient, if_none_match: str, status: int
) -> None:
    etag = client.get("/counter.js").headers["ETag"]
    headers = {"If-None-Match": if_none_match.format(etag=etag)} if if_none_match else {}
    response = client.get("/counter.js", headers=headers)
    assert response.status_code == status
    assert response.headers["ETag"] == etag
    assert response.data == (b"" if status == 304 else SNIPPET)
    assert "max-age" in response.headers["Cache-Control"]


def test_the_snippet_is_at_most_1_5_kb_gzipped(client: FlaskClient) -> None:
    served = client.get("/counter.js").data
    assert len(gzip.compress(served, compresslevel=9)) <= MAX_GZIPPED
    assert len(gzip.compress(served, compresslevel=6)) <= MAX_GZIPPED  # nginx's usual level


def test_the_snippet_never_touches_cookies() -> None:
    assert b"cookie" not in SNIPPET.lower()
    assert SNIPPET.count(b"credentials:'omit'") == 2  # the beacon and the count read


EMBED_REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/counter.js", {}),
    ("GET", "/hit/blog.gif?path=/a", {}),
    ("POST", "/api/v1/hit", {"data": '{"site": "blog", "path": "/a"}'}),
    ("OPTIONS", "/api/v1/hit", {}),
    ("GET", "/api/v1/sites/blog/count?path=/a", {}),
    ("GET", "/badge/blog.svg?path=/a", {}),
    ("GET", "/counter/blog.svg?path=/a", {}),
    ("GET", "/hit/nosuchsite.gif?path=/a", {}),
    ("GET", "/", {}),
]


@pytest.mark.parametrize(("method", "url", "extra"), EMBED_REQUESTS)
def test_no_embed_answer_sets_or_reads_a_cookie(
    client: FlaskClient, method: str, url: str, extra: dict[str, Any]
) -> None:
    response = client.open(
        url,
        method=method,
        headers={**BROWSER, "Origin": "https://example.com", "Cookie": "session=x"},
        **extra,
    )
    assert response.status_code < 500
    assert "Set-Cookie" not in response.headers
    assert "cookie" not in response.headers.get("Vary", "").lower()


# -- the landing page ---------------------------------------------------------------------


def test_the_landing_page_shows_the_embed_codes_for_this_host(client: FlaskClient) -> None:
    response = client.get("/", base_url="https://count.example.net")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    for code in (
        '<script async src="https://count.example.net/counter.js" data-site="your-site">',
        "<span data-hitcounter></span>",
        '<img src="https://count.example.net/hit/your-site.gif"',
        "![views](https://count.example.net/badge/your-site.svg?path=/)",
        '<img src="https://count.example.net/badge/your-site.svg?path=/" alt="views">',
        '<img src="https://count.example.net/counter/your-site.svg"',
    ):
        # Shown as text to copy, escaped once.
        assert str(escape(code)) in page
    # And the page's own demo counter is the snippet itself.
    assert (
        '<script async src="https://count.example.net/counter.js" data-site="demo" '
        "data-allow-local></script>"
    ) in page
    assert re.search(r"<span [^>]*data-hitcounter></span>", page)


def test_the_demo_site_is_created_public_and_open_to_any_domain(client: FlaskClient) -> None:
    assert client.get("/api/v1/sites/demo", headers=ADMIN).status_code == 404
    assert client.get("/").status_code == 200
    settings = client.get("/api/v1/sites/demo", headers=ADMIN).get_json()
    assert settings["public"] is True
    assert settings["domains"] == []
    assert client.get("/").status_code == 200  # it exists now: nothing to do


def test_an_existing_demo_site_is_left_as_it_is(client: FlaskClient) -> None:
    add_site(client, "demo", domains=["example.com"])
    assert client.get("/").status_code == 200
    settings = client.get("/api/v1/sites/demo", headers=ADMIN).get_json()
    assert (settings["public"], settings["domains"]) == (False, ["example.com"])


def test_the_demo_site_name_comes_from_config(fake_store: Store, tmp_path: Path) -> None:
    client = make_app(fake_store, tmp_path, DEMO_SITE="showcase").test_client()
    assert 'data-site="showcase" data-allow-local' in client.get("/").get_data(as_text=True)
    assert client.get("/api/v1/sites/showcase", headers=ADMIN).get_json()["public"] is True


@pytest.mark.parametrize("host", ['x"><b>y', "a&b.example", "evil host.example"])
def test_an_invalid_host_header_is_never_echoed(client: FlaskClient, host: str) -> None:
    page = client.get("/", headers={"Host": host}).get_data(as_text=True)
    assert host not in page
    assert str(escape(host)) not in page
    assert 'src="http://localhost:8080/counter.js" data-site="demo"' in page  # PUBLIC_URL


@pytest.mark.parametrize("trouble", ["bad demo site name", "store unreachable"])
def test_the_landing_page_renders_without_its_demo_site(
    fake_store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture, trouble: str
) -> None:
    if trouble == "store unreachable":
        # Nothing listens on this port: every Redis call fails at once.
        down = connect(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
        app = make_app(Store(down), tmp_path)
    else:
        app = make_app(fake_store, tmp_path, DEMO_SITE="Not A Site!")
    with caplog.at_level(logging.WARNING, logger="hitcounter.landing"):
        response = app.test_client().get("/")
    assert response.status_code == 200
    assert b"counter.js" in response.data
    assert "demo site" in caplog.text
