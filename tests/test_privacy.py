"""Privacy: no cookies, and no IP address or User-Agent in Redis or in the logs."""

from __future__ import annotations

import logging

import pytest
from flask.testing import FlaskClient

from hitcounter.store import Store
from tests.conftest import add_site
from tests.privacy import assert_nothing_about_visitors

IP = "198.51.100.77"
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36 Marker/4242"


def test_no_visitor_data_kept_or_logged(
    client: FlaskClient, fake_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    add_site(client, "blog")
    env = {"REMOTE_ADDR": IP}
    headers = {"User-Agent": UA, "Referer": "https://blog.example/post"}
    for path in ("/a", "/b", "/a"):
        response = client.get(f"/hit/blog.gif?path={path}", headers=headers, environ_base=env)
        assert response.status_code == 200
        assert "Set-Cookie" not in response.headers
    response = client.post(
        "/api/v1/hit",
        data='{"site": "blog", "path": "/c", "referrer": "https://news.example/x"}',
        content_type="text/plain",
        headers=headers,
        environ_base=env,
    )
    assert response.status_code == 200 and "Set-Cookie" not in response.headers
    assert fake_store.page_count("blog", "/a")[1] == 2
    assert_nothing_about_visitors(fake_store.redis, [IP, UA, "Marker/4242"])
    assert IP not in caplog.text and "Marker/4242" not in caplog.text
