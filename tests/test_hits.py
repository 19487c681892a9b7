"""The hit rules on fakeredis: counting, drops, dedupe, rate limit, page cap, days, salts."""

from __future__ import annotations

import hmac
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st

from hitcounter.hits import HitOutcome, HitRequest, local_day_and_hour
from hitcounter.services import get_services
from hitcounter.store import Store
from hitcounter.visitors import KeyedSha256
from tests.conftest import BROWSER_UA, make_app

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def make(fake_store: Store, tmp_path: Path, **config: Any) -> Flask:
    return make_app(fake_store, tmp_path, **config)


def register(app: Flask, name: str = "blog", **settings: Any) -> None:
    with app.app_context():
        get_services().sites.create({"name": name, **settings})


def hit(app: Flask, now: datetime = NOW, **fields: Any) -> HitOutcome:
    request = {
        "site": "blog",
        "path": "/",
        "referrer": None,
        "source": None,
        "ip": "192.0.2.1",
        "user_agent": BROWSER_UA,
    } | fields
    with app.app_context():
        return get_services().recorder.record(HitRequest(**request), now=now)


def day_hash(store: Store, day: str, site: str = "blog") -> dict[str, int]:
    raw = store.redis.hgetall(store.keys.day(site, day))
    return {k.decode(): int(v) for k, v in raw.items()}


@pytest.fixture
def app(fake_store: Store, tmp_path: Path) -> Flask:
    application = make(fake_store, tmp_path)
    register(application, dedupe_seconds=0)
    return application


def test_counts_page_and_site(app: Flask, fake_store: Store) -> None:
    outcomes = [hit(app, path=p) for p in ["/a", "/a", "/b"]]
    assert [(o.counted, o.path, o.hits, o.site_hits) for o in outcomes] == [
        (True, "/a", 1, 1),
        (True, "/a", 2, 2),
        (True, "/b", 1, 3),
    ]
    assert fake_store.page_count("blog", "/a") == (2, 2, 3)
    assert day_hash(fake_store, "2026-03-10") == {"hits": 3, "raw": 3, "h:12": 3}


@pytest.mark.parametrize(
    ("fields", "settings", "reason", "status", "tallied"),
    [
        ({"site": "Not A Site"}, {}, "invalid", 400, False),
        ({"site": "nosuchsite"}, {}, "unknown_site", 404, False),
        ({"path": "/%ff"}, {}, "invalid", 400, True),
        ({"path": "/" + "x" * 600}, {}, "invalid", 400, True),
        ({"path": None}, {}, "invalid", 400, True),
        ({"user_agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"}, {}, "bot", 403, True),
        ({"user_agent": "curl/8.5.0"}, {}, "bot", 403, True),
        ({"user_agent": ""}, {}, "bot", 403, True),
        ({"user_agent": "Mozilla/5.0 HeadlessChrome/120.0"}, {}, "bot", 403, True),
        (
            {"source": "https://evil.example.net/"},
            {"domains": ["blog.example"]},
            "origin",
            403,
            True,
        ),
        ({"prefetch": True}, {}, "prefetch", 400, False),
    ],
)
def test_drops(
    fake_store: Store,
    tmp_path: Path,
    fields: dict[str, Any],
    settings: dict[str, Any],
    reason: str,
    status: int,
    tallied: bool,
) -> None:
    app = make(fake_store, tmp_path)
    register(app, **settings)
    outcome = hit(app, **fields)
    assert (outcome.counted, outcome.reason, outcome.status) == (False, reason, status)
    assert fake_store.page_count("blog", "/") == (0, 0, 0)
    tally = day_hash(fake_store, "2026-03-10").get(f"drop:{reason}", 0)
    assert tally == (1 if tallied else 0)


@pytest.mark.parametrize(
    ("source", "domains", "counted"),
    [
        ("https://blog.example/post", ["blog.example"], True),
        ("https://www.blog.example", ["*.blog.example"], True),
        (None, ["blog.example"], True),  # image proxies and strict browsers send neither
        ("https://anything.net", [], True),  # no list: any domain
        ("https://blog.example.evil.net", ["blog.example"], False),
    ],
)
def test_allowed_domains(
    fake_store: Store, tmp_path: Path, source: str | None, domains: list[str], counted: bool
) -> None:
    app = make(fake_store, tmp_path)
    register(app, domains=domains)
    assert hit(app, source=source).counted is counted


def test_dedupe_inside_and_outside_window(fake_store: Store, tmp_path: Path) -> None:
    app = make(fake_store, tmp_path)
    register(app, dedupe_seconds=1)
    first, repeat, other_page, other_visitor = (
        hit(app),
        hit(app),
        hit(app, path="/other"),
        hit(app, ip="192.0.2.99"),
    )
    assert (first.counted, first.hits) == (True, 1)
    assert (repeat.counted, repeat.reason, repeat.status, repeat.hits) == (
        False,
        "duplicate",
        200,
        1,
    )
    assert other_page.counted and other_visitor.counted
    time.sleep(1.1)  # let the one-second window pass
    assert hit(app).counted
    assert fake_store.page_count("blog", "/") == (3, 4, 4)
    assert day_hash(fake_store, "2026-03-10")["raw"] == 5


def test_image_proxy_counts_every_fetch(fake_store: Store, tmp_path: Path) -> None:
    app = make(fake_store, tmp_path, RATE_LIMIT_PER_MINUTE=2)
    register(app)  # default 30-minute dedupe window
    camo = "github-camo (876de43e)"
    outcomes = [hit(app, user_agent=camo, ip="140.82.115.1") for _ in range(5)]
    assert all(o.counted for o in outcomes)
    assert outcomes[-1].hits == 5


def test_rate_limit(fake_store: Store, tmp_path: Path) -> None:
    app = make(fake_store, tmp_path, RATE_LIMIT_PER_MINUTE=3)
    register(app, dedupe_seconds=0)
    outcomes = [hit(app, path=f"/p{i}") for i in range(5)]
    assert [o.reason for o in outcomes] == ["", "", "", "rate_limited", "rate_limited"]
    assert outcomes[-1].status == 429
    assert hit(app, ip="192.0.2.2").counted  # another visitor is not limited
    day = day_hash(fake_store, "2026-03-10")
    assert (day["hits"], day["raw"], day["drop:rate_limited"]) == (4, 4, 2)


def test_page_cap_counts_new_paths_as_other(fake_store: Store, tmp_path: Path) -> None:
    app = make(fake_store, tmp_path, MAX_PAGES=3)
    register(app, dedupe_seconds=0)
    paths = [hit(app, path=f"/p{i}").path for i in range(5)] + [hit(app, path="/p0").path]
    assert paths == ["/p0", "/p1", "/p2", "(other)", "(other)", "/p0"]
    # Three pages and "(other)" are kept (the count the cap is checked against).
    assert fake_store.page_scores("blog", [])[0] == 4
    assert fake_store.page_scores("blog", ["/p3", "(other)"])[1] == [None, 2]
    assert fake_store.page_count("blog", "(other)")[0] == 2
    assert fake_store.page_count("blog", "/p0") == (2, 2, 6)


def test_days_and_hours_in_site_timezone(fake_store: Store, tmp_path: Path) -> None:
    app = make(fake_store, tmp_path)
    register(app, timezone="America/New_York", dedupe_seconds=0)
    # 03:59 UTC is 23:59 on the 9th in New York (UTC-4 from 8 March 2026); 04:01 the 10th.
    hit(app, now=datetime(2026, 3, 10, 3, 59, tzinfo=UTC))
    hit(app, now=datetime(2026, 3, 10, 4, 1, tzinfo=UTC))
    hit(app, now=datetime(2026, 3, 10, 4, 2, tzinfo=UTC))
    assert day_hash(fake_store, "2026-03-09") == {"hits": 1, "raw": 1, "h:23": 1}
    assert day_hash(fake_store, "2026-03-10") == {"hits": 2, "raw": 2, "h:00": 2}
    keys = fake_store.keys
    assert fake_store.redis.zscore(keys.page_day_of("blog", "2026-03-09", "/"), "/") == 1
    assert fake_store.redis.pfcount(keys.visitors("blog", "2026-03-10")) == 1


def test_day_keys_expire_after_retention(fake_store: Store, tmp_path: Path) -> None:
    app = make(fake_store, tmp_path, RETENTION_DAYS=10)
    register(app, dedupe_seconds=0)
    hit(app, referrer="https://news.ycombinator.com/item?id=1")
    keys = fake_store.keys
    day = "2026-03-10"
    for key in (
        keys.day("blog", day),
        keys.page_day_of("blog", day, "/"),
        keys.visitors("blog", day),
    ):
        assert 9 * 86400 < fake_store.redis.ttl(key) <= 10 * 86400
    assert 9 * 86400 < fake_store.redis.ttl(keys.referrers("blog", day)) <= 10 * 86400
    for key in (keys.pages_of("blog", "/"), keys.raw_of("blog", "/"), keys.totals("blog")):
        assert fake_store.redis.ttl(key) == -1  # all-time counters never expire


@pytest.mark.parametrize(
    ("referrer", "source", "expected"),
    [
        ("https://news.ycombinator.com/item?id=1", None, b"news.ycombinator.com"),
        ("https://blog.example/other-post", "https://blog.example/", None),  # internal
        ("https://www.blog.example/", None, None),  # one of the site's own domains
        ("not a url", None, None),
    ],
)
def test_referrers_are_external_hosts(
    fake_store: Store, tmp_path: Path, referrer: str, source: str | None, expected: bytes | None
) -> None:
    app = make(fake_store, tmp_path)
    register(app, domains=["*.blog.example"])
    assert hit(app, referrer=referrer, source=source).counted
    members = fake_store.redis.zrange(fake_store.keys.referrers("blog", "2026-03-10"), 0, -1)
    assert members == ([expected] if expected else [])


def test_only_two_salts_exist(fake_store: Store) -> None:
    today = datetime.now(UTC).date()
    salts = {
        offset: fake_store.daily_salt(today.fromordinal(today.toordinal() - offset).isoformat())
        for offset in (3, 2, 1, 0)
    }
    assert len(set(salts.values())) == 4  # a fresh random salt each day
    assert fake_store.daily_salt(today.isoformat()) == salts[0]  # stable within the day
    left = sorted(k.decode() for k in fake_store.redis.keys("hc:salt:*"))
    yesterday = today.fromordinal(today.toordinal() - 1)
    assert left == [f"hc:salt:{yesterday}", f"hc:salt:{today}"]


def minute_of(moment: datetime) -> int:
    return int(moment.timestamp()) // 60


def test_visitor_id_changes_with_the_salt(app: Flask) -> None:
    with app.app_context():
        hasher = get_services().recorder.visitors
        day1 = hasher.visitor_id("blog", "192.0.2.1", BROWSER_UA, minute_of(NOW))
        again = hasher.visitor_id("blog", "192.0.2.1", BROWSER_UA, minute_of(NOW) + 5)
        other_site = hasher.visitor_id("news", "192.0.2.1", BROWSER_UA, minute_of(NOW))
        next_day = datetime(2026, 3, 11, tzinfo=UTC)
        day2 = hasher.visitor_id("blog", "192.0.2.1", BROWSER_UA, minute_of(next_day))
    assert day1 == again
    assert len({day1, other_site, day2}) == 3
    assert len(day1) == 16


def test_visitor_id_is_an_hmac_of_the_day_salt(app: Flask) -> None:
    """The id stays HMAC-SHA256(salt, site NUL ip NUL user agent), cut to 8 bytes: a
    faster way of computing it must not change the ids of visitors mid-day."""
    now = datetime.now(UTC)  # a past day's salt would expire at once
    with app.app_context():
        services = get_services()
        visitor = services.recorder.visitors.visitor_id(
            "blog", "192.0.2.1", BROWSER_UA, minute_of(now)
        )
        salt = services.store.daily_salt(now.date().isoformat())
    message = "\x00".join(("blog", "192.0.2.1", BROWSER_UA)).encode()
    assert visitor == hmac.digest(salt, message, "sha256")[:8].hex()


@given(st.binary(min_size=1, max_size=200), st.binary(max_size=300))
def test_keyed_sha256_is_hmac_sha256(key: bytes, message: bytes) -> None:
    assert KeyedSha256(key).digest(message) == hmac.digest(key, message, "sha256")


# Zones with DST, half- and quarter-hour offsets, and Lord Howe's half-hour DST shift.
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu",
         "Australia/Lord_Howe", "America/St_Johns", "Pacific/Chatham"]  # fmt: skip


@given(
    st.sampled_from(ZONES),
    st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)),
)
def test_local_day_and_hour_per_minute_match_the_zone(zone: str, now: datetime) -> None:
    """The per-minute day and hour agree with converting the moment itself."""
    local = now.astimezone(ZoneInfo(zone))
    minute = int(now.timestamp()) // 60
    assert local_day_and_hour(zone, minute) == (local.date().isoformat(), local.hour)
