"""Export and import: formats, validation, the page cap, and the round trip on real Redis."""

from __future__ import annotations

import base64
import csv
import io
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from hitcounter import create_app
from hitcounter.services import get_services
from hitcounter.store import Keys, Store
from hitcounter.transfer import HLL_DENSE_SIZE, Export, valid_hll
from tests.conftest import ADMIN, ADMIN_TOKEN, RedisServer, add_site, make_app, spawn_redis
from tests.stats.conftest import get_json, hit

NOW = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
API = "/api/v1/sites/blog"


def traffic(app: Flask, days: int = 5, seed: int = 4) -> None:
    """Hits over several days: repeat visitors, repeats inside the window, referrers, drops."""
    rng = random.Random(seed)
    paths = ["/", "/a", "/b/", "/c?q=1", "/ünïcode", '/"><img src=x onerror=alert(1)>']
    for day in range(days):
        when = NOW - timedelta(days=day)
        for n in range(40):
            hit(
                app,
                "blog",
                rng.choice(paths),
                when + timedelta(minutes=n * 7),
                ip=f"10.0.0.{rng.randint(1, 25)}",
                referrer=rng.choice([None, "https://news.example/", "https://search.example/q"]),
            )
        hit(app, "blog", "/x", when, user_agent="curl/8.0")  # a bot drop


def answers(client: FlaskClient) -> dict[str, Any]:
    """Every stats answer worth comparing, over several ranges."""
    today = NOW.date()
    ranges = [
        f"from={today - timedelta(days=6)}&to={today}",
        f"from={today - timedelta(days=2)}&to={today - timedelta(days=1)}",
        f"from={today}&to={today}",
    ]
    out: dict[str, Any] = {}
    for query in ranges:
        for endpoint in ("stats", "pages?limit=100", "referrers", "timeseries"):
            url = f"{API}/{endpoint}{'&' if '?' in endpoint else '?'}{query}"
            out[url] = get_json(client, url, headers=ADMIN)
    hours = f"{API}/timeseries?interval=hour&from={today - timedelta(days=2)}&to={today}"
    out[hours] = get_json(client, hours, headers=ADMIN)
    out["page"] = get_json(client, f"{API}/timeseries?path=/a&{ranges[0]}", headers=ADMIN)
    return out


def export(client: FlaskClient, fmt: str = "json") -> str:
    response = client.get(f"{API}/export?format={fmt}", headers=ADMIN)
    assert response.is_streamed
    text = response.get_data(as_text=True)
    assert response.status_code == 200
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="blog-') and disposition.endswith(
        f'.{fmt}"'
    )
    return text


def test_json_export_holds_everything(app: Flask, client: FlaskClient) -> None:
    add_site(client, "blog", public=True, timezone="Europe/Paris")
    traffic(app, days=2)
    body = json.loads(export(client))
    assert (body["format"], body["version"]) == ("hitcounter-export", 1)
    assert body["site"]["timezone"] == "Europe/Paris" and "token_hash" not in body["site"]
    stats = get_json(client, f"{API}/stats?from={NOW.date() - timedelta(days=5)}")
    assert body["totals"] == {"hits": stats["hits"], "raw_hits": stats["raw_hits"]}
    assert sum(p["hits"] for p in body["pages"]) == stats["hits"]
    assert {p["path"] for p in body["pages"]} >= {"/a", "/c", '/"><img src=x onerror=alert(1)>'}
    days = body["days"]
    assert [d["date"] for d in days] == sorted(d["date"] for d in days)
    assert sum(d["hits"] for d in days) == stats["hits"]
    assert all(sum(d["hours"].values()) == d["hits"] for d in days)
    assert all(sum(d["pages"].values()) == d["hits"] for d in days)
    assert sum(d["dropped"].get("bot", 0) for d in days) == 2
    assert sum(d["visitors"] for d in days) == stats["visitors"]
    assert all("visitors_hll" not in d for d in days)  # fakeredis has no HyperLogLog bytes


def test_csv_export(app: Flask, client: FlaskClient) -> None:
    add_site(client, "blog", public=True)
    traffic(app, days=2)
    rows = list(csv.reader(io.StringIO(export(client, "csv"))))
    assert rows[0] == ["section", "date", "key", "value"]
    sections = {row[0] for row in rows[1:]}
    assert sections == {
        "setting", "total", "page", "page_raw", "day", "hour", "dropped", "page_day", "referrer"
    }  # fmt: skip
    totals = {row[2]: int(row[3]) for row in rows if row[0] == "total"}
    assert totals["hits"] == sum(int(row[3]) for row in rows if row[0] == "page")
    assert totals["hits"] == sum(int(row[3]) for row in rows if row[0] == "page_day")
    assert ["page", "", '/"><img src=x onerror=alert(1)>'] in [row[:3] for row in rows]


def test_export_streams_in_pieces(app: Flask, client: FlaskClient, fake_store: Store) -> None:
    add_site(client, "blog", public=True)
    fake_store.add_pages("blog", [(f"/p{n}", n + 1, n + 1) for n in range(2500)])
    with app.app_context():
        services = get_services()
        plan = Export.plan(services.store, services.sites.require("blog"), retention_days=400)
        chunks = list(plan.json_chunks())
    # Pages arrive a batch of 1,000 at a time, never as one piece.
    page_chunks = [c for c in chunks if '"path"' in c]
    assert len(page_chunks) == 3
    assert len(json.loads("".join(chunks))["pages"]) == 2500


def test_round_trip_on_fakeredis(app: Flask, client: FlaskClient, tmp_path: Path) -> None:
    # The embedded store gives no HyperLogLog bytes: visitor counts travel as numbers, and
    # since visitor ids change every day (the salt does), every range still adds up.
    add_site(client, "blog", public=True)
    traffic(app)
    before = answers(client)
    dumped = json.loads(export(client))
    other_client = make_app(Store(fakeredis.FakeRedis()), tmp_path).test_client()
    add_site(other_client, "blog")
    response = other_client.post(f"{API}/import", json=dumped, headers=ADMIN)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["form"] == "export"
    assert answers(other_client) == before


@pytest.mark.integration
def test_round_trip_into_a_fresh_redis(redis_app: Flask, tmp_path: Path) -> None:
    client = redis_app.test_client()
    add_site(client, "blog", public=False, timezone="America/New_York", domains=["blog.example"])
    traffic(redis_app, days=8)
    before = answers(client)
    dumped = json.loads(export(client))
    assert all("visitors_hll" in d for d in dumped["days"] if d["visitors"])

    fresh: RedisServer = spawn_redis(tmp_path)
    try:
        other = create_app(
            {"TESTING": True, "ADMIN_TOKEN": ADMIN_TOKEN, "REDIS_URL": fresh.url,
             "SITE_CACHE_SECONDS": 0, "DATA_DIR": str(tmp_path / "data")}
        )  # fmt: skip
        other_client = other.test_client()
        add_site(other_client, "blog")  # default settings: the import brings the real ones
        response = other_client.post(f"{API}/import", json=dumped, headers=ADMIN)
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["days"] == len(dumped["days"])
        assert answers(other_client) == before
        settings = get_json(other_client, "/api/v1/sites/blog", headers=ADMIN)
        assert (settings["timezone"], settings["domains"]) == ("America/New_York", ["blog.example"])
        # Importing the same export again changes nothing: an export restores, it does not add.
        other_client.post(f"{API}/import", json=dumped, headers=ADMIN)
        assert answers(other_client) == before
        # Day keys keep an expiry; all-time keys have none.
        keys = fresh.client()
        day_key = f"hc:{{blog}}:day:{dumped['days'][0]['date']}"
        assert 0 < keys.ttl(day_key) <= 401 * 86400
        assert keys.ttl(Keys().pages_of("blog", dumped["pages"][0]["path"])) == -1
    finally:
        fresh.stop()


def test_starting_counts_add_up(app: Flask, client: FlaskClient) -> None:
    add_site(client, "blog", public=True)
    hit(app, "blog", "/a", NOW)
    body = {"pages": {"/a": 10, "/b?utm=x": 5, "//b": 2, "/zero": 0}}
    response = client.post(f"{API}/import", json=body, headers=ADMIN)
    assert response.status_code == 200
    assert response.get_json() == {
        "site": "blog",
        "form": "pages",
        "pages": 2,
        "hits": 17,
        "other": 0,
    }
    count = get_json(client, f"{API}/count?path=/b")
    assert count == {"path": "/b", "hits": 7, "raw_hits": 7, "site_hits": 18}
    stats = get_json(client, f"{API}/stats")
    assert stats["all_time"] == {"hits": 18, "raw_hits": 18, "pages": 2}
    assert stats["hits"] == 1  # starting counts belong to no day


def test_starting_counts_respect_the_page_cap(tmp_path: Path, fake_store: Store) -> None:
    app = make_app(fake_store, tmp_path, MAX_PAGES=3)
    client = app.test_client()
    add_site(client, "blog", public=True)
    body = {"pages": {"/1": 1, "/2": 2, "/3": 3, "/4": 4, "/5": 5}}
    summary = client.post(f"{API}/import", json=body, headers=ADMIN).get_json()
    assert (summary["hits"], summary["other"]) == (15, 2)
    assert fake_store.page_count("blog", "(other)")[0] == 9
    assert fake_store.page_count("blog", "/1")[0] == 1
    assert get_json(client, f"{API}/stats")["all_time"]["pages"] == 4  # 3 pages and (other)


def test_export_import_respects_the_page_cap(tmp_path: Path, fake_store: Store) -> None:
    app = make_app(fake_store, tmp_path, MAX_PAGES=2)
    client = app.test_client()
    add_site(client, "blog")
    export_body = {
        "format": "hitcounter-export",
        "version": 1,
        "pages": [{"path": f"/{n}", "hits": 1, "raw_hits": 1} for n in range(3)],
    }
    response = client.post(f"{API}/import", json=export_body, headers=ADMIN)
    assert response.status_code == 400
    assert "HITCOUNTER_MAX_PAGES" in response.get_json()["error"]["message"]


GOOD_DAY = {"date": "2026-01-01", "hits": 1}
# A sparse HyperLogLog whose runs claim 3 x 16384 registers: the shape of CVE-2025-32023.
OVERRUN_HLL = b"HYLL\x01" + bytes(11) + b"\x7f\xff" * 3
BAD_IMPORTS = [
    ({}, "must be an export"),
    ({"pages": []}, "path: hits"),
    ({"pages": {"/a": -1}}, "whole number"),
    ({"pages": {"/a": 1.5}}, "whole number"),
    ({"pages": {"/a": True}}, "whole number"),
    ({"pages": {"/a": "3"}}, "whole number"),
    ({"pages": {"": 1}}, "path is required"),
    ({"pages": {"/" + "x" * 600: 1}}, "longer than 512"),
    ({"pages": {"/a\x00": 1}}, "control characters"),
    ({"pages": {"/a": 1}, "extra": 1}, "must be an export"),
    ({"format": "hitcounter-export", "version": 2}, "version"),
    ({"format": "other", "version": 1}, "format"),
    ({"format": "hitcounter-export", "version": 1, "pages": {}}, "pages must be a list"),
    ({"format": "hitcounter-export", "version": 1, "pages": [{"path": "a//b", "hits": 1}]},
     "not a normalised path"),
    ({"format": "hitcounter-export", "version": 1, "days": [{"date": "2026-02-30"}]},
     "not a real date"),
    ({"format": "hitcounter-export", "version": 1, "days": [GOOD_DAY | {"hours": {"24": 1}}]},
     "not an hour"),
    ({"format": "hitcounter-export", "version": 1,
      "days": [GOOD_DAY | {"dropped": {"DROP TABLE": 1}}]}, "not a drop reason"),
    ({"format": "hitcounter-export", "version": 1,
      "days": [GOOD_DAY | {"referrers": {"<script>": 1}}]}, "not a hostname"),
    ({"format": "hitcounter-export", "version": 1,
      "days": [GOOD_DAY | {"visitors_hll": "not base64!"}]}, "not base64"),
    ({"format": "hitcounter-export", "version": 1,
      "days": [GOOD_DAY | {"visitors_hll": base64.b64encode(OVERRUN_HLL).decode()}]},
     "well-formed"),
    ({"format": "hitcounter-export", "version": 1, "site": {"timezone": "Mars/Base"}},
     "unknown timezone"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "message"), BAD_IMPORTS)
def test_bad_imports_are_400_and_write_nothing(
    client: FlaskClient, fake_store: Store, body: Any, message: str
) -> None:
    add_site(client, "blog")
    before = sorted(fake_store.redis.keys())
    response = client.post(f"{API}/import", json=body, headers=ADMIN)
    assert response.status_code == 400, response.get_json()
    assert message in response.get_json()["error"]["message"]
    assert sorted(fake_store.redis.keys()) == before


def test_import_needs_json_and_an_existing_site(client: FlaskClient) -> None:
    response = client.post(f"{API}/import", data="{nope", headers=ADMIN)
    assert response.status_code == 400
    missing = client.post("/api/v1/sites/nosuch/import", json={"pages": {}}, headers=ADMIN)
    assert missing.status_code == 404


def sparse_hll(runs: list[int]) -> bytes:
    """A sparse HyperLogLog of XZERO runs (each at most 16384 registers)."""
    body = b"".join(bytes([0x40 | ((run - 1) >> 8), (run - 1) & 0xFF]) for run in runs)
    return b"HYLL\x01" + bytes(11) + body


@pytest.mark.parametrize(
    ("raw", "valid"),
    [
        (sparse_hll([16384]), True),
        (sparse_hll([8192, 8192]), True),
        (sparse_hll([16384, 1]), False),  # runs past the last register
        (sparse_hll([100]), False),  # runs short of it
        (b"HYLL\x00" + bytes(HLL_DENSE_SIZE - 5), True),
        (b"HYLL\x00" + bytes(HLL_DENSE_SIZE - 6), False),
        (b"HYLL\x02" + bytes(20), False),
        (b"JUNK\x01" + bytes(11), False),
        (b"HYLL\x01" + bytes(11) + b"\x40", False),  # a cut-off XZERO
    ],
)
def test_hyperloglog_bytes_are_checked(raw: bytes, valid: bool) -> None:
    assert valid_hll(raw) is valid


@pytest.mark.integration
def test_real_hyperloglog_bytes_pass_the_check(redis_server: RedisServer) -> None:
    client: redis.Redis = redis_server.client()
    client.flushall()
    client.pfadd("small", *[f"v{n}" for n in range(50)])
    client.pfadd("large", *[f"v{n}" for n in range(20000)])
    for key in ("small", "large"):
        raw = client.get(key)
        assert raw is not None and valid_hll(raw)


def test_import_is_seen_at_once_despite_the_union_cache(app: Flask, client: FlaskClient) -> None:
    add_site(client, "blog", public=True)
    traffic(app, days=3)
    today = NOW.date()
    url = f"{API}/pages?from={today - timedelta(days=2)}&to={today}&limit=1"
    assert get_json(client, url)["pages"][0]["path"] != "/imported"  # now cached
    dumped = json.loads(export(client))
    dumped["days"][0]["pages"]["/imported"] = 10_000
    assert client.post(f"{API}/import", json=dumped, headers=ADMIN).status_code == 200
    assert get_json(client, url)["pages"][0] == {"path": "/imported", "hits": 10_000}
