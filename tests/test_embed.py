"""The embed endpoints over HTTP: pixel, beacon, read-only count, headers, CORS."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

import pytest
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st

from hitcounter.fastpath import GIF, counts_json, query
from tests.conftest import BROWSER, add_site


@pytest.fixture
def client(client: FlaskClient) -> FlaskClient:
    add_site(client, "blog", domains=["blog.example"], dedupe_seconds=0)
    return client


def beacon(client: FlaskClient, body: object, **headers: str) -> object:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(
        "/api/v1/hit", data=data, content_type="text/plain", headers=BROWSER | headers
    )


def test_gif_is_43_bytes() -> None:
    assert len(GIF) == 43 and GIF.startswith(b"GIF89a")


# Query strings as WSGI gives them (latin-1 text of the raw bytes), rich in the
# characters parsing turns on: separators, escapes (good and broken), plus signs, UTF-8.
QUERY_TEXT = st.lists(
    st.sampled_from([*"&=%+;/ab2F", "%2", "%zz", "%C3%A9", "%FF", "\xc3\xa9", "\xff"]),
    max_size=40,
).map("".join)


@given(QUERY_TEXT)
def test_query_reads_first_values_as_parse_qsl_does(raw: str) -> None:
    """The pixel's own query parser agrees with the standard library's."""
    text = raw.encode("latin-1").decode("utf-8", "surrogateescape")
    expected: dict[str, str] = {}
    for key, value in parse_qsl(text, keep_blank_values=True, errors="surrogateescape"):
        expected.setdefault(key, value)
    assert query({"QUERY_STRING": raw}) == expected


@given(st.text(), st.none() | st.integers(0, 2**63), st.none() | st.integers(0, 2**63))
def test_counts_json_is_compact_json(path: str, hits: int | None, site_hits: int | None) -> None:
    """The beacon's hand-built answer reads (and is written) exactly as json.dumps's."""
    answer = {"path": path, "hits": hits, "site_hits": site_hits}
    assert counts_json(path, hits, site_hits) == json.dumps(answer, separators=(",", ":")).encode()


def test_pixel_counts_and_answers_gif(client: FlaskClient) -> None:
    response = client.get("/hit/blog.gif?path=/post&ref=https://news.example/", headers=BROWSER)
    assert response.status_code == 200
    assert response.data == GIF and response.mimetype == "image/gif"
    assert response.headers["Cache-Control"] == "no-store"
    assert "X-Hitcounter" not in response.headers
    assert "Set-Cookie" not in response.headers
    count = client.get("/api/v1/sites/blog/count?path=/post").get_json()
    assert count == {"path": "/post", "hits": 1, "raw_hits": 1, "site_hits": 1}


def test_pixel_takes_the_path_from_the_referer(client: FlaskClient) -> None:
    headers = BROWSER | {"Referer": "https://blog.example/from/referer?q=1"}
    assert client.get("/hit/blog.gif", headers=headers).status_code == 200
    assert client.get("/api/v1/sites/blog/count?path=/from/referer").get_json()["hits"] == 1


@pytest.mark.parametrize(
    ("url", "headers", "status", "reason"),
    [
        ("/hit/nosuch.gif?path=/", BROWSER, 404, "unknown_site"),
        ("/hit/Bad%20Name.gif?path=/", BROWSER, 400, "invalid"),
        ("/hit/blog.gif?path=/%ff", BROWSER, 400, "invalid"),
        ("/hit/blog.gif", BROWSER, 400, "invalid"),
        ("/hit/blog.gif?path=/", {"User-Agent": "Googlebot/2.1"}, 403, "bot"),
        ("/hit/blog.gif?path=/", BROWSER | {"Referer": "https://evil.example/"}, 403, "origin"),
        ("/hit/blog.gif?path=/", BROWSER | {"Sec-Purpose": "prefetch"}, 400, "prefetch"),
    ],
)
def test_pixel_not_counted_still_gets_the_gif(
    client: FlaskClient, url: str, headers: dict[str, str], status: int, reason: str
) -> None:
    response = client.get(url, headers=headers)
    assert (response.status_code, response.headers.get("X-Hitcounter")) == (status, reason)
    assert response.data == GIF
    assert client.get("/api/v1/sites/blog/count?path=/").get_json()["site_hits"] == 0


def test_beacon_counts_and_answers_counts(client: FlaskClient) -> None:
    body = {"site": "blog", "path": "/a?x=1", "referrer": "https://news.example/"}
    first = beacon(client, body, Origin="https://blog.example")
    second = beacon(client, body, Origin="https://blog.example")
    assert first.status_code == 200
    assert first.get_json() == {"path": "/a", "hits": 1, "site_hits": 1}
    assert second.get_json() == {"path": "/a", "hits": 2, "site_hits": 2}
    assert first.headers["Access-Control-Allow-Origin"] == "https://blog.example"
    assert "Origin" in first.headers["Vary"]


def test_beacon_accepts_json_content_type(client: FlaskClient) -> None:
    response = client.post("/api/v1/hit", json={"site": "blog", "path": "/"}, headers=BROWSER)
    assert response.status_code == 200


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-32"])
def test_beacon_reads_json_in_any_encoding_json_allows(client: FlaskClient, encoding: str) -> None:
    text = json.dumps({"site": "blog", "path": "/é"}, ensure_ascii=False)
    response = beacon(client, text.encode(encoding))
    assert response.status_code == 200
    assert response.get_json()["path"] == "/é"


def test_beacon_refused_origin_gets_reason_with_cors(client: FlaskClient) -> None:
    response = beacon(client, {"site": "blog", "path": "/"}, Origin="https://evil.example")
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "origin"
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_any_origin_may_read_a_site_without_domains(client: FlaskClient) -> None:
    add_site(client, "open")
    response = beacon(client, {"site": "open", "path": "/"}, Origin="https://anywhere.example")
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_errors_carry_cors(client: FlaskClient) -> None:
    response = client.get(
        "/api/v1/sites/nosuch/count?path=/", headers={"Origin": "https://x.example"}
    )
    assert response.status_code == 404
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.get_json()["error"]["code"] == "unknown_site"


def test_preflight(client: FlaskClient) -> None:
    response = client.options("/api/v1/hit", headers={"Origin": "https://blog.example"})
    assert response.status_code == 204
    assert "POST" in response.headers["Access-Control-Allow-Methods"]


def test_count_does_not_count(client: FlaskClient) -> None:
    for _ in range(3):
        client.get("/api/v1/sites/blog/count?path=/")
    assert client.get("/api/v1/sites/blog/count?path=/").get_json()["site_hits"] == 0
