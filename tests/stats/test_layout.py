"""The compact key layout (see `Keys` in hitcounter/store.py): pages and page-days live in
buckets small enough for Redis's listpacks, the page cap counts exactly with the count kept
in the totals hash, and every read means what it meant with one big zset per kind.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from flask.testing import FlaskClient

from hitcounter.store import OTHER_PAGE, DayRestore, HitWrite, Keys, Store, connect
from tests.conftest import ADMIN, add_site, make_app
from tests.stats.conftest import get_json

DAY = "2026-03-10"
FAR = 2**31  # an expiry far away (unix time)


def write(path: str, *, site: str = "blog", day: str = DAY, max_pages: int = 10_000) -> HitWrite:
    return HitWrite(
        site=site, path=path, referrer_host="", visitor="v1", day=day, hour=9, minute=1,
        dedupe_seconds=0, rate_limit=0, max_pages=max_pages, retention_seconds=400 * 86400,
    )  # fmt: skip


def kept_in_buckets(store: Store, site: str) -> int:
    return sum(int(store.redis.hlen(key)) for key in store.keys.all_raw(site))


def kept_count(store: Store, site: str) -> int:
    return int(store.redis.hget(store.keys.totals(site), "pages") or 0)


# -- buckets stay listpacks ------------------------------------------------------------------


def test_bucket_sizes_of_a_site_of_the_default_page_cap() -> None:
    # 10,000 pages (the default MAX_PAGES) fill no page bucket past Redis's 128 entries,
    # and 1,000 pages a day no day bucket.
    paths = [f"/blog/2026/{n:05d}-a-post-title" for n in range(10_000)]
    assert max(Counter(Keys.page_bucket(p) for p in paths).values()) <= 128
    for start in range(0, 9000, 500):
        day = paths[start : start + 1000]
        assert max(Counter(Keys.day_bucket(p) for p in day).values()) <= 128
    # Bytes and str give the same bucket (readers get bytes back from Redis).
    assert Keys.page_bucket("/é") == Keys.page_bucket("/é".encode())


@pytest.mark.integration
def test_a_site_of_thousands_of_pages_is_kept_in_listpacks(redis_url: str) -> None:
    store = Store(connect(redis_url, timeout=5))
    db = store.redis
    paths = [f"/docs/{n:04d}/a-page-about-something" for n in range(3000)]
    days = ["2026-03-08", "2026-03-09", DAY]
    for n, path in enumerate(paths):  # through the hit script: 1,000 pages a day
        store.record_hit(write(path, day=days[n % 3]))
    k = store.keys
    buckets = [*k.all_pages("blog"), *k.all_raw("blog")]
    buckets += [key for day in days for key in k.page_days("blog", day)]
    encodings = {db.object("encoding", key) for key in buckets}
    assert encodings == {b"listpack"}
    assert kept_count(store, "blog") == kept_in_buckets(store, "blog") == 3000
    assert all(db.ttl(key) > 399 * 86400 for day in days for key in k.page_days("blog", day))
    assert all(db.ttl(key) == -1 for key in k.all_pages("blog"))
    # Up to the default cap, written as an import writes: still listpacks.
    more = [f"/blog/2026/{n:05d}-a-post-title" for n in range(7000)]
    for start in range(0, len(more), 1000):
        store.set_pages("blog", [(p, 5, 6) for p in more[start : start + 1000]])
    assert kept_count(store, "blog") == 10_000
    assert {db.object("encoding", key) for key in k.all_raw("blog")} == {b"listpack"}
    assert {db.object("encoding", key) for key in k.all_pages("blog")} == {b"listpack"}


# -- the page cap ------------------------------------------------------------------------------


def test_the_page_cap_counts_exactly(fake_store: Store) -> None:
    store = fake_store
    paths = [f"/p{n}" for n in range(120)]
    outcomes = [store.record_hit(write(p, max_pages=50)) for p in paths]
    assert [o.path for o in outcomes] == paths[:50] + [OTHER_PAGE] * 70
    # Known pages count as themselves; (other) is a page too (kept past the cap, once).
    assert store.record_hit(write("/p0", max_pages=50)).page_hits == 2
    assert store.record_hit(write("/p99", max_pages=50)).path == OTHER_PAGE
    assert kept_count(store, "blog") == kept_in_buckets(store, "blog") == 51
    assert store.page_count("blog", OTHER_PAGE)[:2] == (71, 71)
    assert store.page_count("blog", "/p99") == (0, 0, 122)
    # A raise of the cap takes new pages again, counted from where it was.
    assert store.record_hit(write("/p99", max_pages=52)).path == "/p99"
    assert store.record_hit(write("/p98", max_pages=52)).path == OTHER_PAGE
    assert kept_count(store, "blog") == kept_in_buckets(store, "blog") == 52


def test_imports_keep_the_page_count(fake_store: Store, tmp_path: Path) -> None:
    app = make_app(fake_store, tmp_path, MAX_PAGES=10)
    client = app.test_client()
    add_site(client, "blog", public=True)
    starting = {"pages": {f"/s{n}": n + 1 for n in range(8)}}
    assert client.post("/api/v1/sites/blog/import", json=starting, headers=ADMIN).status_code == 200
    assert kept_count(fake_store, "blog") == 8
    # Past the cap, new starting counts fold into (other), as hits do.
    more = {"pages": {f"/t{n}": 1 for n in range(5)}}
    answer = client.post("/api/v1/sites/blog/import", json=more, headers=ADMIN).get_json()
    assert answer["other"] == 3
    assert kept_count(fake_store, "blog") == kept_in_buckets(fake_store, "blog") == 11
    assert fake_store.page_count("blog", OTHER_PAGE)[0] == 3
    # A restored page with no raw hits is still a kept page: its first hit adds no page.
    fake_store.set_pages("blog", [("/s0", 4, 0)])
    assert kept_count(fake_store, "blog") == 11
    fake_store.record_hit(write("/s0", max_pages=11))
    assert kept_count(fake_store, "blog") == kept_in_buckets(fake_store, "blog") == 11
    assert fake_store.page_count("blog", "/s0")[:2] == (5, 1)


def test_a_restored_page_without_raw_hits_is_not_new_below_the_cap(fake_store: Store) -> None:
    """Below the cap the script counts a raw hit first and asks after: raw 1 is a new
    page only when the page has no counted-hits field either."""
    fake_store.set_pages("blog", [("/old", 4, 0), ("/other", 2, 2)])
    assert kept_count(fake_store, "blog") == 2
    fake_store.record_hit(write("/old"))
    assert kept_count(fake_store, "blog") == kept_in_buckets(fake_store, "blog") == 2
    fake_store.record_hit(write("/new"))
    fake_store.record_hit(write("/new"))
    assert kept_count(fake_store, "blog") == kept_in_buckets(fake_store, "blog") == 3
    assert fake_store.page_count("blog", "/old")[:2] == (5, 1)
    assert fake_store.page_count("blog", "/new")[:2] == (2, 2)


def test_an_export_round_trip_puts_every_path_in_its_buckets(
    client: FlaskClient, fake_store: Store, tmp_path: Path
) -> None:
    add_site(client, "blog", public=True)
    rng = random.Random(3)
    paths = [f"/post/{n}" for n in range(400)]
    today = datetime.now(UTC).date()
    days = [(today - timedelta(days=n)).isoformat() for n in (2, 1)]
    for day in days:
        for path in rng.sample(paths, 250):
            fake_store.record_hit(write(path, day=day))
    dumped = client.get("/api/v1/sites/blog/export?format=json", headers=ADMIN).get_json()

    other = Store(fakeredis.FakeRedis(server=fakeredis.FakeServer()))
    other_client = make_app(other, tmp_path).test_client()
    add_site(other_client, "blog", public=True)
    response = other_client.post("/api/v1/sites/blog/import", json=dumped, headers=ADMIN)
    assert response.status_code == 200, response.get_json()
    k = other.keys
    for n, key in enumerate(k.all_raw("blog")):
        assert all(Keys.page_bucket(p) == n for p in other.redis.hkeys(key))
    for n, key in enumerate(k.all_pages("blog")):
        assert all(Keys.page_bucket(p) == n for p in other.redis.hkeys(key))
    assert [day["date"] for day in dumped["days"]] == days
    for day in days:
        for n, key in enumerate(k.page_days("blog", day)):
            assert all(Keys.day_bucket(p) == n for p in other.redis.zrange(key, 0, -1))
    assert kept_count(other, "blog") == len(dumped["pages"]) == kept_count(fake_store, "blog")
    again = other_client.get("/api/v1/sites/blog/export?format=json", headers=ADMIN).get_json()
    for body in (dumped, again):
        body["pages"].sort(key=lambda page: page["path"])
    for part in ("totals", "pages", "days"):
        assert again[part] == dumped[part]


# -- reads mean what they meant ---------------------------------------------------------------


def check_reads_against_a_tally(store: Store, rng: random.Random) -> None:
    """Random hits over five days; every range read checked against a Python tally."""
    days = [f"2026-03-{n:02d}" for n in range(6, 11)]
    paths = [f"/p{n:03d}" for n in range(300)]
    tally: dict[str, Counter[str]] = {day: Counter() for day in days}
    for day in days:
        for _ in range(rng.randint(0, 600)):
            path = paths[min(int(rng.paretovariate(1.2)) - 1, len(paths) - 1)]
            if rng.random() < 0.5:
                path = rng.choice(paths)
            store.record_hit(write(path, day=day))
            tally[day][path] += 1

    def expected(span: list[str]) -> list[tuple[str, int]]:
        total: Counter[str] = Counter()
        for day in span:
            total.update(tally[day])
        return sorted(total.items(), key=lambda item: (item[1], item[0].encode()), reverse=True)

    everything = expected(days)
    for today in ["2026-03-10", "2026-03-08", "2026-03-12"]:
        for first in range(len(days)):
            for last in range(first, len(days)):
                span = days[first : last + 1]
                want = expected(span)
                for offset, limit in [(0, 10), (5, 50), (0, 1000)]:
                    got = store.top(
                        "blog", "pages", span, offset, limit, today=today, cache_seconds=60
                    )
                    assert got == (len(want), want[offset : offset + limit]), (today, span)
                summary = store.range_summary("blog", span, today=today, cache_seconds=60)
                assert summary.pages == len(want)
                assert summary.all_time_pages == len(everything)
    for path in rng.sample(paths, 20):
        assert store.daily_page_hits("blog", path, days) == [tally[d][path] for d in days]
        hits = sum(tally[d][path] for d in days)
        assert store.page_count("blog", path)[:2] == (hits, hits)
    exported: dict[str, Any] = {day: dict(store.iter_day_pages("blog", day)) for day in days}
    assert exported == {day: dict(tally[day]) for day in days}
    rows = [row for batch in store.iter_pages("blog", 64) for row in batch]
    assert sorted(rows) == sorted((path, hits, hits) for path, hits in everything)


@pytest.mark.parametrize("seed", range(3))
def test_reads_match_a_tally(fake_store: Store, seed: int) -> None:
    check_reads_against_a_tally(fake_store, random.Random(seed))


@pytest.mark.integration
def test_reads_match_a_tally_on_redis(redis_url: str) -> None:
    check_reads_against_a_tally(Store(connect(redis_url, timeout=5)), random.Random(9))


def test_stats_answers_count_pages_as_before(client: FlaskClient, fake_store: Store) -> None:
    add_site(client, "blog", public=True)
    for path in ["/a", "/b", "/a", "/c"]:
        fake_store.record_hit(write(path))
    restore = DayRestore({"hits": 1, "raw": 1}, {"/old": 1}, {}, 0, None, FAR)
    fake_store.restore_day("blog", "2026-03-09", restore)
    stats = get_json(client, f"/api/v1/sites/blog/stats?from=2026-03-09&to={DAY}")
    assert (stats["pages"], stats["all_time"]["pages"]) == (4, 3)
    pages = get_json(client, f"/api/v1/sites/blog/pages?from=2026-03-09&to={DAY}")
    assert [(p["path"], p["hits"]) for p in pages["pages"]] == [
        ("/a", 2), ("/old", 1), ("/c", 1), ("/b", 1)
    ]  # fmt: skip
