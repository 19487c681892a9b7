"""Preparing the quick ranges (warming.py): after a site's day turns, one worker sums the
past days of its last 7, 30 and 90 days, so each range's first read of the day finds
the sum made."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hitcounter.services import get_services
from hitcounter.sites import SiteRegistry
from hitcounter.store import DayRestore, Keys, Store
from hitcounter.warming import KEEP_MARGIN_SECONDS, RangeWarmer, start_in_worker
from tests.conftest import ADMIN, ADMIN_TOKEN, add_site, make_app
from tests.servers import gunicorn
from tests.stats.conftest import get_json

NOW = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)


def seed_days(store: Store, site: str, days: int = 5) -> list[str]:
    """A few past days of pages and referrers, the last of them today (UTC)."""
    written = []
    for offset in range(days):
        day = (NOW.date() - timedelta(days=offset)).isoformat()
        store.restore_day(
            site,
            day,
            DayRestore(
                fields={"hits": 10 + offset},
                pages={"/": 5, f"/post/{offset}": 5 + offset},
                referrers={f"ref{offset}.example": 3},
                visitors=1,
                hll=None,
                expire_at=int(time.time()) + 86400 * 40,
            ),
        )
        written.append(day)
    return written


def union_names(store: Store, site: str) -> list[str]:
    """The site's kept unions, each once (a pages union is a key per day bucket)."""
    keys = store.redis.keys(f"hc:{{{site}}}:union:*:*")
    return sorted({re.sub(r":\d+$", "", k.decode()) for k in keys})


def pages_union(first: str, last: str, path: str = "/") -> str:
    """The key of the blog's pages union for that range that holds `path`."""
    return Keys().union("blog", "pages", first, last)[Keys.day_bucket(path)]


def past_range(days: int = 30) -> tuple[str, str]:
    """The first and last past day of the `days` up to today (30: the default range)."""
    return (NOW.date() - timedelta(days=days - 1)).isoformat(), (
        NOW.date() - timedelta(days=1)
    ).isoformat()


def test_one_of_many_workers_prepares_each_site_once_a_day(
    fake_store: Store, tmp_path: Path
) -> None:
    app = make_app(fake_store, tmp_path)
    client = app.test_client()
    add_site(client, "blog")
    add_site(client, "docs", timezone="Pacific/Auckland")
    seed_days(fake_store, "blog")
    sites = SiteRegistry(fake_store)
    workers = [RangeWarmer(fake_store, sites) for _ in range(3)]

    prepared = [worker.run_once(NOW) for worker in workers]
    assert sorted(prepared[0]) == ["blog", "docs"]  # the first to look claims both
    assert prepared[1:] == [[], []]
    first, last = past_range()
    # The dashboard's quick ranges: the last 7, 30 and 90 days.
    assert union_names(fake_store, "blog") == sorted(
        f"hc:{{blog}}:union:{kind}:{start}:{end}"
        for kind in ("pages", "referrers")
        for start, end in (past_range(7), past_range(30), past_range(90))
    )
    # Kept until the site's next midnight, and a little more.
    midnight = datetime.combine(NOW.date() + timedelta(days=1), datetime.min.time(), UTC)
    ttl = fake_store.redis.ttl(pages_union(first, last))
    expected = (midnight - NOW).total_seconds() + KEEP_MARGIN_SECONDS
    assert expected - 5 <= ttl <= expected

    # Later the same day: nobody looks again, nothing is rebuilt.
    fake_store.redis.delete(*Keys().union("blog", "pages", first, last))
    assert [worker.run_once(NOW + timedelta(hours=3)) for worker in workers] == [[], [], []]
    assert len(union_names(fake_store, "blog")) == 5

    # Half an hour past midnight UTC: blog's day turned; in Auckland (UTC+13 in summer)
    # it is 13:30 on the day it was at NOW already.
    next_day = datetime.combine(NOW.date() + timedelta(days=1), datetime.min.time(), UTC)
    next_day += timedelta(minutes=30)
    assert workers[2].run_once(next_day) == ["blog"]
    assert workers[0].run_once(next_day) == []


def test_a_prepared_range_is_read_without_summing_again(fake_store: Store, tmp_path: Path) -> None:
    app = make_app(fake_store, tmp_path)
    client = app.test_client()
    add_site(client, "blog")
    seed_days(fake_store, "blog")
    cold = get_json(client, "/api/v1/sites/blog/pages?limit=10", headers=ADMIN)
    for key in fake_store.redis.keys("hc:{blog}:union:*:*"):
        fake_store.redis.delete(key)  # as on a new day: nothing summed yet

    assert RangeWarmer(fake_store, SiteRegistry(fake_store)).run_once(NOW) == ["blog"]
    made = union_names(fake_store, "blog")
    first, last = past_range()
    union = pages_union(first, last)
    kept = fake_store.redis.ttl(union)
    assert kept > 3600  # until the next midnight, longer than a read keeps its own sums
    # Its overlaps with today's zsets are counted too: the read counts none of them again.
    counted = {f.decode().split(" ")[0] for f in fake_store.redis.hkeys("hc:{blog}:overlaps")}
    assert {union, f"hc:{{blog}}:union:referrers:{first}:{last}"} <= counted
    warm = get_json(client, "/api/v1/sites/blog/pages?limit=10", headers=ADMIN)
    assert warm == cold
    # The read merged the kept sum with today: one it made would be kept for an hour.
    assert fake_store.redis.ttl(union) > 3600
    assert union_names(fake_store, "blog") == made


def test_a_failed_preparation_gives_its_claim_back(fake_store: Store, tmp_path: Path) -> None:
    app = make_app(fake_store, tmp_path)
    add_site(app.test_client(), "blog")
    warmer = RangeWarmer(fake_store, SiteRegistry(fake_store))

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("redis went away mid-way")

    fake_store.prepare_range = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        warmer.run_once(NOW)
    del fake_store.prepare_range
    assert warmer.run_once(NOW) == ["blog"]


def test_it_starts_only_for_hitcounter_with_the_cache_on(fake_store: Store, tmp_path: Path) -> None:
    assert start_in_worker(lambda environ, start_response: []) is None  # a reference app
    assert start_in_worker(make_app(fake_store, tmp_path, PREPARE_INTERVAL=0)) is None
    assert start_in_worker(make_app(fake_store, tmp_path, STATS_CACHE_SECONDS=0)) is None
    app = make_app(fake_store, tmp_path, PREPARE_INTERVAL=3600)
    with app.app_context():
        assert get_services().store is fake_store
    thread = start_in_worker(app)
    assert thread is not None and thread.daemon and thread.is_alive()


@pytest.mark.integration
def test_gunicorn_workers_prepare_the_default_range(redis_server: object, tmp_path: Path) -> None:
    """Under the project's gunicorn configuration, a worker prepares a site with past days
    on its own, right after it starts."""
    client = redis_server.client()  # type: ignore[attr-defined]
    client.flushall()
    store = Store(client)
    SiteRegistry(store).create({"name": "blog"})
    seed_days(store, "blog")
    env = {"HITCOUNTER_REDIS_URL": redis_server.url, "HITCOUNTER_ADMIN_TOKEN": ADMIN_TOKEN}  # type: ignore[attr-defined]
    with gunicorn(env, workers=2):
        first, last = past_range()
        key = pages_union(first, last)
        deadline = time.monotonic() + 20
        while not client.exists(key) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.exists(key)
        assert client.exists(f"hc:{{blog}}:prepared:{NOW.date().isoformat()}")
        # The sum is the past days' pages: "/" on each of 4 past days, one post each.
        assert client.zscore(key, "/") == 20
        assert sum(client.zcard(k) for k in Keys().union("blog", "pages", first, last)) == 5


def test_a_sum_a_reader_made_is_kept_until_midnight(fake_store: Store, tmp_path: Path) -> None:
    app = make_app(fake_store, tmp_path)
    client = app.test_client()
    add_site(client, "blog")
    seed_days(fake_store, "blog")
    get_json(client, "/api/v1/sites/blog/pages?limit=10", headers=ADMIN)  # kept an hour
    first, last = past_range()
    union = pages_union(first, last)
    assert 0 < fake_store.redis.ttl(union) <= 3600

    assert RangeWarmer(fake_store, SiteRegistry(fake_store)).run_once(NOW) == ["blog"]
    assert fake_store.redis.ttl(union) > 3600
