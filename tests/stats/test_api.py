"""The stats API: every endpoint and parameter, on fakeredis, with controlled time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from hitcounter.auth import FailureLimiter
from hitcounter.stats import DROP_REASONS
from tests.conftest import ADMIN, add_site
from tests.stats.conftest import get_json, hit

NOON = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
API = "/api/v1/sites/blog"


@pytest.fixture
def blog(app: Flask, client: FlaskClient) -> Flask:
    """A public UTC site with known traffic on 2026-03-09 and 2026-03-10."""
    add_site(client, "blog", public=True, domains=["blog.example"])
    day1 = NOON - timedelta(days=1)
    hit(app, "blog", "/a", day1, ip="10.0.0.1", referrer="https://news.example/x")
    hit(app, "blog", "/a", day1, ip="10.0.0.2", referrer="https://search.example/")
    hit(app, "blog", "/b", day1 + timedelta(hours=2), ip="10.0.0.1")
    hit(app, "blog", "/a", NOON, ip="10.0.0.1", referrer="https://news.example/y")
    hit(app, "blog", "/a", NOON, ip="10.0.0.1")  # a repeat inside the dedupe window: raw only
    hit(app, "blog", "/c", NOON, ip="10.0.0.3")
    hit(app, "blog", "/c", NOON, ip="10.0.0.4", user_agent="Googlebot/2.1")  # bot
    hit(app, "blog", "/\x00", NOON, ip="10.0.0.5")  # invalid path
    return app


def test_stats_totals_over_two_days(blog: Flask, client: FlaskClient) -> None:
    body = get_json(client, f"{API}/stats?from=2026-03-09&to=2026-03-10")
    assert body == {
        "site": "blog",
        "timezone": "UTC",
        "from": "2026-03-09",
        "to": "2026-03-10",
        "hits": 5,
        "raw_hits": 6,
        "visitors": 4,  # ids change with the daily salt: 10.0.0.1 is new each day
        "pages": 3,
        "dropped": {"bot": 1, "origin": 0, "unknown_site": 0, "invalid": 1, "rate_limited": 0},
        "all_time": {"hits": 5, "raw_hits": 6, "pages": 3},
    }


@pytest.mark.parametrize(
    ("query", "hits", "visitors", "pages"),
    [
        ("from=2026-03-09&to=2026-03-09", 3, 2, 2),
        ("from=2026-03-10&to=2026-03-10", 2, 2, 2),
        ("from=2026-01-01&to=2026-01-31", 0, 0, 0),  # an empty range
        ("from=2026-03-10", 2, 2, 2),  # `to` defaults to today, but never before `from`
    ],
)
def test_stats_ranges(
    blog: Flask, client: FlaskClient, query: str, hits: int, visitors: int, pages: int
) -> None:
    body = get_json(client, f"{API}/stats?{query}")
    assert (body["hits"], body["visitors"], body["pages"]) == (hits, visitors, pages)
    assert body["all_time"]["hits"] == 5
    assert set(body["dropped"]) == set(DROP_REASONS)


def test_default_range_is_the_last_30_days(app: Flask, client: FlaskClient) -> None:
    add_site(client, "blog", public=True)
    now = datetime.now(UTC)
    hit(app, "blog", "/today", now)
    hit(app, "blog", "/old", now - timedelta(days=30), ip="10.9.9.9")
    body = get_json(client, f"{API}/stats")
    today = now.date()
    assert (body["from"], body["to"]) == (str(today - timedelta(days=29)), str(today))
    assert (body["hits"], body["pages"], body["all_time"]["hits"]) == (1, 1, 2)
    assert len(get_json(client, f"{API}/timeseries")["points"]) == 30


def test_days_are_local_to_the_sites_timezone(app: Flask, client: FlaskClient) -> None:
    # 23:30 UTC on 20 November is 08:30 on 21 November in Tokyo.
    add_site(client, "blog", public=True, timezone="Asia/Tokyo")
    hit(app, "blog", "/late", datetime(2026, 11, 20, 23, 30, tzinfo=UTC))
    assert get_json(client, f"{API}/stats?from=2026-11-20&to=2026-11-20")["hits"] == 0
    tokyo = get_json(client, f"{API}/stats?from=2026-11-21&to=2026-11-21")
    assert (tokyo["hits"], tokyo["timezone"]) == (1, "Asia/Tokyo")
    hours = get_json(client, f"{API}/timeseries?interval=hour&from=2026-11-21&to=2026-11-21")
    assert [p["time"] for p in hours["points"] if p["hits"]] == ["2026-11-21T08:00"]
    days = get_json(client, f"{API}/timeseries?from=2026-11-20&to=2026-11-21")
    assert days["points"] == [
        {"date": "2026-11-20", "hits": 0, "visitors": 0},
        {"date": "2026-11-21", "hits": 1, "visitors": 1},
    ]


def test_pages_in_order_with_limit_and_offset(blog: Flask, client: FlaskClient) -> None:
    url = f"{API}/pages?from=2026-03-09&to=2026-03-10"
    body = get_json(client, url)
    assert body["pages"] == [
        {"path": "/a", "hits": 3},
        {"path": "/c", "hits": 1},
        {"path": "/b", "hits": 1},
    ]
    assert (body["total"], body["limit"], body["offset"]) == (3, 10, 0)
    sliced = get_json(client, f"{url}&limit=1&offset=1")
    assert sliced["pages"] == [{"path": "/c", "hits": 1}]
    assert get_json(client, f"{url}&offset=3")["pages"] == []
    one_day = get_json(client, f"{API}/pages?from=2026-03-09&to=2026-03-09")
    assert one_day["pages"] == [{"path": "/a", "hits": 2}, {"path": "/b", "hits": 1}]


def test_referrers(blog: Flask, client: FlaskClient) -> None:
    body = get_json(client, f"{API}/referrers?from=2026-03-09&to=2026-03-10")
    assert body["referrers"] == [
        {"host": "news.example", "hits": 2},
        {"host": "search.example", "hits": 1},
    ]
    assert body["total"] == 2
    limited = get_json(client, f"{API}/referrers?from=2026-03-09&to=2026-03-10&limit=1")
    assert limited["referrers"] == [{"host": "news.example", "hits": 2}]


def test_timeseries_by_day_zero_filled(blog: Flask, client: FlaskClient) -> None:
    body = get_json(client, f"{API}/timeseries?from=2026-03-08&to=2026-03-11")
    assert body["points"] == [
        {"date": "2026-03-08", "hits": 0, "visitors": 0},
        {"date": "2026-03-09", "hits": 3, "visitors": 2},
        {"date": "2026-03-10", "hits": 2, "visitors": 2},
        {"date": "2026-03-11", "hits": 0, "visitors": 0},
    ]
    assert (body["interval"], body["path"]) == ("day", None)


def test_timeseries_of_one_page(blog: Flask, client: FlaskClient) -> None:
    # The path is normalised like a hit's: query dropped, slashes collapsed.
    body = get_json(client, f"{API}/timeseries?from=2026-03-09&to=2026-03-11&path=//a?x=1")
    assert body["path"] == "/a"
    assert body["points"] == [
        {"date": "2026-03-09", "hits": 2},
        {"date": "2026-03-10", "hits": 1},
        {"date": "2026-03-11", "hits": 0},
    ]


def test_timeseries_by_hour(blog: Flask, client: FlaskClient) -> None:
    body = get_json(client, f"{API}/timeseries?interval=hour&from=2026-03-09&to=2026-03-10")
    assert len(body["points"]) == 48
    assert body["points"][0] == {"time": "2026-03-09T00:00", "hits": 0}
    busy = {p["time"]: p["hits"] for p in body["points"] if p["hits"]}
    assert busy == {"2026-03-09T12:00": 2, "2026-03-09T14:00": 1, "2026-03-10T12:00": 2}


def test_empty_site(app: Flask, client: FlaskClient) -> None:
    add_site(client, "blog", public=True)
    query = "from=2026-01-01&to=2026-01-03"
    stats = get_json(client, f"{API}/stats?{query}")
    assert (stats["hits"], stats["raw_hits"], stats["visitors"], stats["pages"]) == (0, 0, 0, 0)
    assert stats["all_time"] == {"hits": 0, "raw_hits": 0, "pages": 0}
    assert get_json(client, f"{API}/pages?{query}")["pages"] == []
    assert get_json(client, f"{API}/referrers?{query}")["referrers"] == []
    points = get_json(client, f"{API}/timeseries?{query}")["points"]
    assert [p["hits"] for p in points] == [0, 0, 0]


BAD_REQUESTS = [
    ("stats?from=2026-13-01", "from must be a date|not a real date"),
    ("stats?from=2026-02-30", "not a real date"),
    ("stats?to=2026-1-1", "to must be a date"),
    ("stats?from=yesterday", "from must be a date"),
    ("stats?from=2026-03-10&to=2026-03-09", "is after"),
    ("stats?from=2025-01-01&to=2026-03-10", "at most 400 days"),
    ("pages?from=2026-03-10&to=2026-03-01", "is after"),
    ("pages?limit=0", "limit must be"),
    ("pages?limit=1001", "limit must be"),
    ("pages?limit=ten", "limit must be"),
    ("pages?offset=-1", "offset must be"),
    ("referrers?limit=-5", "limit must be"),
    ("referrers?to=2026-03-32", "not a real date"),
    ("timeseries?interval=week", "interval must be"),
    ("timeseries?interval=hour&from=2026-01-01&to=2026-02-15", "at most 31 days"),
    ("timeseries?interval=hour&path=/a", "per site, not per page"),
    ("timeseries?path=/%00", "control characters"),
    ("timeseries?from=0001-01-01&to=9999-12-31", "at most 400 days"),
    ("export?format=xml", "format must be"),
]


@pytest.mark.parametrize(("query", "message"), BAD_REQUESTS)
def test_bad_parameters_are_400_json(
    blog: Flask, client: FlaskClient, query: str, message: str
) -> None:
    body = get_json(client, f"{API}/{query}", status=400)
    assert body["error"]["code"] == "invalid"
    assert any(part in body["error"]["message"] for part in message.split("|"))


@pytest.mark.parametrize("endpoint", ["stats", "pages", "timeseries", "referrers", "export"])
@pytest.mark.parametrize(("site", "status"), [("nosuch", 404), ("Bad Name!", 400)])
def test_unknown_or_invalid_site(
    client: FlaskClient, endpoint: str, site: str, status: int
) -> None:
    body = get_json(client, f"/api/v1/sites/{site}/{endpoint}", status=status)
    assert body["error"]["code"] in ("unknown_site", "invalid")


def test_earliest_date_does_not_overflow(app: Flask, client: FlaskClient) -> None:
    add_site(client, "blog", public=True)
    body = get_json(client, f"{API}/stats?to=0001-01-05")
    assert (body["from"], body["to"], body["hits"]) == ("0001-01-01", "0001-01-05", 0)


def test_repeated_token_failures_are_rate_limited(app: Flask, client: FlaskClient) -> None:
    token = add_site(client, "blog")
    wrong = {"Authorization": "Bearer wrong"}
    statuses = [client.get(f"{API}/stats", headers=wrong).status_code for _ in range(21)]
    assert statuses == [401] * 20 + [429]
    # Even the right token waits: the client is refused before any token is compared.
    limited = client.get(f"{API}/stats", headers={"Authorization": f"Bearer {token}"})
    assert limited.status_code == 429
    assert limited.get_json()["error"]["code"] == "rate_limited"
    other_client = client.get(
        f"{API}/stats", headers={"Authorization": f"Bearer {token}"}, environ_base=_from("10.1.1.1")
    )
    assert other_client.status_code == 200


def _from(ip: str) -> dict[str, Any]:
    return {"REMOTE_ADDR": ip}


def test_stats_answers_are_not_cached(blog: Flask, client: FlaskClient) -> None:
    response = client.get(f"{API}/stats", headers=ADMIN)
    assert "no-store" in response.headers["Cache-Control"]


def test_failure_limiter_forgets_after_a_minute() -> None:
    limiter = FailureLimiter(limit=3, window=60)
    for second in range(3):
        limiter.fail("10.0.0.1", now=second)
    assert limiter.blocked("10.0.0.1", now=10) and not limiter.blocked("10.0.0.2", now=10)
    assert limiter.blocked("10.0.0.1", now=59.5)
    assert not limiter.blocked("10.0.0.1", now=60.5)  # the first failure left the window
    assert not limiter.blocked("10.0.0.1", now=200)
    off = FailureLimiter(limit=0)
    off.fail("10.0.0.1", now=0)
    assert not off.blocked("10.0.0.1", now=0)
