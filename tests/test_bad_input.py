"""Bad input: each gets its 4xx (or the GIF with a 4xx and a reason), and counts nothing."""

from __future__ import annotations

import json

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hitcounter.store import Store
from tests.conftest import ADMIN, BROWSER, add_site

LONG = "/" + "a" * 600
CASES = [
    # (method, url, body, content type, extra headers, status, X-Hitcounter or error code)
    ("GET", f"/hit/blog.gif?path={LONG}", None, None, {}, 400, "invalid"),
    ("GET", "/hit/blog.gif?path=/%ff%fe%00", None, None, {}, 400, "invalid"),
    ("GET", "/hit/blog.gif?path=/a%0d%0aSet-Cookie:x=1", None, None, {}, 400, "invalid"),
    ("GET", "/hit/BLOG.gif?path=/", None, None, {}, 400, "invalid"),
    ("GET", "/hit/-x.gif?path=/", None, None, {}, 400, "invalid"),
    ("GET", "/hit/nosuch.gif?path=/", None, None, {}, 404, "unknown_site"),
    ("POST", "/api/v1/hit", {"site": "blog", "path": LONG}, "text/plain", {}, 400, "invalid"),
    ("POST", "/api/v1/hit", {"site": "blog", "path": "/\x00"}, "text/plain", {}, 400, "invalid"),
    ("POST", "/api/v1/hit", {"site": "no such", "path": "/"}, "text/plain", {}, 400, "invalid"),
    ("POST", "/api/v1/hit", {"site": "nosuch", "path": "/"}, "text/plain", {}, 404, "unknown_site"),
    ("POST", "/api/v1/hit", "not json", "text/plain", {}, 400, "invalid"),
    ("POST", "/api/v1/hit", b"\xff\xfe\x00garbage", "text/plain", {}, 400, "invalid"),
    ("POST", "/api/v1/hit", "[1,2,3]", "text/plain", {}, 400, "invalid"),
    ("POST", "/api/v1/hit", '{"site": 5}', "text/plain", {}, 400, "invalid"),
    ("POST", "/api/v1/hit", {"site": "blog", "path": 5}, "text/plain", {}, 400, "invalid"),
    (
        "POST",
        "/api/v1/hit",
        {"site": "blog", "path": "/", "referrer": []},
        "text/plain",
        {},
        400,
        "invalid",
    ),
    ("POST", "/api/v1/hit", "", "text/plain", {}, 400, "invalid"),
    ("POST", "/api/v1/hit", "x" * 5000, "text/plain", {}, 413, "too_large"),
    (
        "POST",
        "/api/v1/hit",
        {"site": "blog", "path": "/"},
        "application/xml",
        {},
        415,
        "unsupported_media_type",
    ),
    (
        "POST",
        "/api/v1/hit",
        "site=blog&path=/",
        "application/x-www-form-urlencoded",
        {},
        415,
        "unsupported_media_type",
    ),
    ("GET", "/api/v1/sites/blog/count?path=" + LONG, None, None, {}, 400, "invalid"),
    ("GET", "/api/v1/sites/nosuch/count?path=/", None, None, {}, 404, "unknown_site"),
    ("GET", "/api/v1/sites", None, None, {"Authorization": "Bearer nope"}, 401, "unauthorized"),
    ("GET", "/api/v1/sites?token=nope", None, None, {}, 401, "unauthorized"),
    ("POST", "/api/v1/sites", "{", "application/json", ADMIN, 400, "invalid"),
    (
        "DELETE",
        "/api/v1/sites/blog",
        None,
        None,
        {"Authorization": "Bearer " + "x" * 5000},
        401,
        "unauthorized",
    ),
    ("GET", "/no/such/page", None, None, {}, 404, "not_found"),
    ("PUT", "/api/v1/hit", None, None, {}, 405, "method_not_allowed"),
]


@pytest.fixture
def client(client: FlaskClient) -> FlaskClient:
    add_site(client, "blog", dedupe_seconds=0)
    return client


@pytest.mark.parametrize(("method", "url", "body", "ctype", "headers", "status", "code"), CASES)
def test_bad_input(
    client: FlaskClient,
    fake_store: Store,
    method: str,
    url: str,
    body: object,
    ctype: str | None,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    data = body if body is None or isinstance(body, str | bytes) else json.dumps(body)
    response = client.open(
        url, method=method, data=data, content_type=ctype, headers=BROWSER | headers
    )
    assert response.status_code == status
    if response.mimetype == "image/gif":
        assert response.headers["X-Hitcounter"] == code
    else:
        assert response.get_json()["error"]["code"] == code
    assert fake_store.page_count("blog", "/") == (0, 0, 0)
    # Nothing counted: the totals hold only what the site was made with.
    assert fake_store.redis.hgetall(fake_store.keys.totals("blog")) == {b"returns_since": b"0"}
    assert fake_store.site_names() == ["blog"]  # nothing else lost


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300),
        st.dictionaries(
            st.sampled_from(["site", "path", "referrer", "x"]),
            st.one_of(st.none(), st.integers(), st.text(max_size=80), st.lists(st.integers())),
        ).map(json.dumps),
    )
)
def test_random_beacon_bodies_never_500(client: FlaskClient, body: str | bytes) -> None:
    response = client.post("/api/v1/hit", data=body, content_type="text/plain", headers=BROWSER)
    assert response.status_code < 500
