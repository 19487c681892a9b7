"""The admin site API: create, list, show, update, token, delete."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from hitcounter.store import Store
from tests.conftest import ADMIN, BROWSER, add_site, make_app


def test_create_shows_token_once(client: FlaskClient, fake_store: Store) -> None:
    response = client.post(
        "/api/v1/sites",
        json={"name": "blog", "domains": ["Blog.Example", "*.blog.example"], "public": True},
        headers=ADMIN,
    )
    assert response.status_code == 201
    body = response.get_json()
    token = body.pop("token")
    assert len(token) >= 43  # 32 random bytes, base64url
    assert body | {"created": ""} == {
        "name": "blog",
        "domains": ["blog.example", "*.blog.example"],
        "public": True,
        "timezone": "UTC",
        "dedupe_seconds": 1800,
        "created": "",
    }
    shown = client.get("/api/v1/sites/blog", headers=ADMIN).get_json()
    assert "token" not in shown and "token_hash" not in shown
    stored = fake_store.site_fields("blog")
    assert stored is not None and token not in stored.values()  # only its SHA-256 is kept


def test_create_twice_conflicts(client: FlaskClient) -> None:
    add_site(client, "blog")
    response = client.post("/api/v1/sites", json={"name": "blog"}, headers=ADMIN)
    assert response.status_code == 409


def test_list_update_token_delete(client: FlaskClient, fake_store: Store) -> None:
    add_site(client, "blog")
    add_site(client, "news")
    names = [s["name"] for s in client.get("/api/v1/sites", headers=ADMIN).get_json()["sites"]]
    assert names == ["blog", "news"]

    patched = client.patch(
        "/api/v1/sites/blog", json={"timezone": "Asia/Tokyo", "dedupe_seconds": 0}, headers=ADMIN
    )
    assert patched.status_code == 200
    assert patched.get_json()["timezone"] == "Asia/Tokyo"

    old = fake_store.site_fields("blog")
    new = client.post("/api/v1/sites/blog/token", headers=ADMIN).get_json()["token"]
    assert old is not None and fake_store.site_fields("blog")["token_hash"] != old["token_hash"]
    assert len(new) >= 43

    client.get("/hit/blog.gif?path=/", headers=BROWSER)
    assert client.delete("/api/v1/sites/blog", headers=ADMIN).status_code == 204
    assert client.get("/api/v1/sites/blog", headers=ADMIN).status_code == 404
    assert fake_store.redis.keys("hc:{blog}:*") == []
    assert fake_store.site_names() == ["news"]


@pytest.mark.parametrize(
    ("method", "url", "body", "status"),
    [
        ("post", "/api/v1/sites", {"name": "Bad Name"}, 400),
        ("post", "/api/v1/sites", {}, 400),
        ("post", "/api/v1/sites", {"name": "x", "timezone": "Mars/Olympus"}, 400),
        ("post", "/api/v1/sites", {"name": "x", "dedupe_seconds": -1}, 400),
        ("post", "/api/v1/sites", {"name": "x", "dedupe_seconds": "10"}, 400),
        ("post", "/api/v1/sites", {"name": "x", "public": "yes"}, 400),
        ("post", "/api/v1/sites", {"name": "x", "domains": "example.com"}, 400),
        ("post", "/api/v1/sites", {"name": "x", "domains": ["http://x.com"]}, 400),
        ("post", "/api/v1/sites", {"name": "x", "colour": "red"}, 400),
        ("post", "/api/v1/sites", [1, 2], 400),
        ("patch", "/api/v1/sites/nosuch", {"public": True}, 404),
        ("delete", "/api/v1/sites/nosuch", None, 404),
        ("post", "/api/v1/sites/nosuch/token", None, 404),
        ("get", "/api/v1/sites/Bad%20Name", None, 400),
    ],
)
def test_bad_admin_requests(
    client: FlaskClient, method: str, url: str, body: object, status: int
) -> None:
    response = getattr(client, method)(url, json=body, headers=ADMIN)
    assert response.status_code == status
    assert set(response.get_json()["error"]) == {"code", "message"}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}],
)
def test_admin_needs_the_token(client: FlaskClient, headers: dict[str, str]) -> None:
    response = client.get("/api/v1/sites", headers=headers)
    assert response.status_code == 401


def test_admin_token_by_query(client: FlaskClient) -> None:
    from tests.conftest import ADMIN_TOKEN

    assert client.get(f"/api/v1/sites?token={ADMIN_TOKEN}").status_code == 200


def test_admin_api_off_without_token(fake_store: Store, tmp_path: Path) -> None:
    app = make_app(fake_store, tmp_path, ADMIN_TOKEN=None)
    response = app.test_client().get("/api/v1/sites", headers=ADMIN)
    assert response.status_code == 403
    assert "HITCOUNTER_ADMIN_TOKEN" in response.get_json()["error"]["message"]
