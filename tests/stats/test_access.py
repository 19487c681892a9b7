"""Who may read what: public and private sites x no, wrong, read and admin token."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import ADMIN_TOKEN, add_site
from tests.stats.conftest import hit

SECRET_PATH = "/secret-page"
SECRET_HOST = "friend.example"
# (method, url) of every way to read a site's stats, and the admin-only import; with what
# an answer that shows the site's data holds.
READS = [
    ("GET", "/api/v1/sites/{site}/stats"),
    ("GET", "/api/v1/sites/{site}/pages"),
    ("GET", "/api/v1/sites/{site}/timeseries"),
    ("GET", "/api/v1/sites/{site}/referrers"),
    ("GET", "/api/v1/sites/{site}/export?format=json"),
    ("GET", "/api/v1/sites/{site}/export?format=csv"),
    ("GET", "/sites/{site}/"),
]
IMPORT = ("POST", "/api/v1/sites/{site}/import")
EVIDENCE = {
    "/stats": '"hits":1,',
    "/pages": SECRET_PATH,
    "/timeseries": '"hits":1,',
    "/referrers": SECRET_HOST,
    "/export?format=json": SECRET_PATH,
    "/export?format=csv": SECRET_PATH,
    "/": SECRET_PATH,
    "/import": '"hits":1,',
}
TOKENS = ["none", "wrong", "read", "admin"]


def expected(public: bool, token: str, admin_only: bool) -> int:
    if admin_only:
        return 200 if token == "admin" else 401
    return 200 if public or token in ("read", "admin") else 401


CASES = [
    pytest.param(public, token, method, url, expected(public, token, (method, url) == IMPORT),
                 id=f"{'public' if public else 'private'}-{token}-{url.split('{site}')[1]}")
    for public in (True, False)
    for token in TOKENS
    for method, url in [*READS, IMPORT]
]  # fmt: skip


@pytest.mark.parametrize(("public", "token", "method", "url", "status"), CASES)
@pytest.mark.parametrize("presented_as", ["header", "query"])
def test_access_matrix(
    app: Flask,
    client: FlaskClient,
    public: bool,
    token: str,
    method: str,
    url: str,
    status: int,
    presented_as: str,
) -> None:
    read_token = add_site(client, "site", public=public)
    hit(app, "site", SECRET_PATH, datetime.now(UTC), referrer=f"https://{SECRET_HOST}/")
    value = {"none": None, "wrong": "x" * 43, "read": read_token, "admin": ADMIN_TOKEN}[token]
    target = url.format(site="site")
    headers = {}
    if value and presented_as == "header":
        headers["Authorization"] = f"Bearer {value}"
    elif value:
        target += ("&" if "?" in target else "?") + f"token={value}"
    body = {"pages": {"/imported": 1}} if method == "POST" else None
    response = client.open(target, method=method, headers=headers, json=body)
    text = response.get_data(as_text=True)
    assert response.status_code == status, text[:300]
    evidence = EVIDENCE[url.split("{site}")[1]]
    if status == 401:
        assert evidence not in text and SECRET_PATH not in text  # a refusal shows no data
        if not target.startswith("/sites/"):
            assert response.get_json()["error"]["code"] == "unauthorized"
    else:
        assert evidence in text
