"""The returns index (hits.lua, restore_returns.lua, Store._distinct_pages): any range's
count of distinct pages from a few counters per day, equal to the brute-force count of
the range's page-day members; and, where the index cannot be trusted (a site older than
it, a late day, an import out of order), no count from it, so that the reads count
another way.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from hitcounter import store as store_module
from hitcounter.store import DayRestore, Store, connect
from tests.conftest import ADMIN, add_site, make_app
from tests.stats.test_layout import FAR, write
from tests.stats.test_store_reads import brute_force as sum_of_zsets

START = date(2026, 2, 20)
DAYS = [(START + timedelta(days=n)).isoformat() for n in range(12)]


def brute_force(store: Store, site: str, days: list[str]) -> int:
    return len(
        sum_of_zsets(store, [key for day in days for key in store.keys.page_days(site, day)])
    )


def ranges(days: list[str]) -> list[list[str]]:
    return [days[i : j + 1] for i in range(len(days)) for j in range(i, len(days))]


def new_site(store: Store, name: str = "blog") -> str:
    assert store.create_site(name, {"public": "1"})
    return name


def hits_in_order(store: Store, site: str, rng: random.Random, **write_args: Any) -> None:
    """Each day in turn, a random share of 40 paths (and repeats), in a few batches."""
    paths = [f"/p/{n}" for n in range(40)]
    for day in DAYS:
        views = rng.sample(paths, rng.randint(0, 30)) * rng.randint(1, 2)
        for start in range(0, len(views), 7):
            chunk = views[start : start + 7]
            store.record_hits([write(p, site=site, day=day, **write_args) for p in chunk])


@pytest.fixture
def store(fake_store: Store) -> Store:
    return fake_store


@pytest.mark.parametrize("seed", range(6))
def test_every_range_of_a_new_site_is_counted_from_the_index(store: Store, seed: int) -> None:
    site = new_site(store)
    hits_in_order(store, site, random.Random(seed))
    for days in ranges(DAYS):
        assert store._distinct_pages(site, days) == brute_force(store, site, days), days


def test_the_overflow_page_is_one_page_in_the_count(store: Store) -> None:
    site = new_site(store)
    hits_in_order(store, site, random.Random(3), max_pages=12)
    assert store.redis.zscore(store.keys.page_day_of(site, DAYS[-1], "(other)"), "(other)")
    for days in ranges(DAYS):
        assert store._distinct_pages(site, days) == brute_force(store, site, days), days


def test_a_late_day_leaves_the_ranges_holding_it_to_the_union(store: Store) -> None:
    """A hit replayed from the spool after later days: ranges holding that day get no
    count from the index; those before it or after it still do, exactly."""
    site = new_site(store)
    hits_in_order(store, site, random.Random(4))
    late = DAYS[5]
    # A path seen on a later day, now counted on a day before (the replay's day).
    later_path = next(
        m.decode()
        for key in store.keys.page_days(site, DAYS[8])
        for m in store.redis.zrange(key, 0, -1)
        if not store.redis.zscore(store.keys.page_day_of(site, late, m), m)
    )
    store.record_hits([write(later_path, site=site, day=late)])
    for days in ranges(DAYS):
        count = store._distinct_pages(site, days)
        if days[0] <= late <= days[-1]:
            assert count is None, days
        else:
            assert count == brute_force(store, site, days), days
        # The reads count either way, and agree with brute force.
        summary = store.range_summary(site, days, today=DAYS[-1])
        assert summary.pages == brute_force(store, site, days)


def test_a_site_older_than_the_index_is_counted_from_the_day_after_its_first_hit(
    store: Store,
) -> None:
    site = new_site(store)
    hits_in_order(store, site, random.Random(5))
    # As a site made before the index: no returns_since, nor the index's keys.
    store.redis.hdel(store.keys.totals(site), "returns_since")
    for key in store.redis.keys("*:ret:*") + store.redis.keys("*:last:*"):
        store.redis.delete(key)
    assert store._distinct_pages(site, DAYS[:2]) is None
    upgrade = (START + timedelta(days=len(DAYS))).isoformat()
    after = [upgrade, *((START + timedelta(days=len(DAYS) + n)).isoformat() for n in (1, 2))]
    for day in after:
        store.record_hits([write(p, site=site, day=day) for p in ("/p/1", "/p/2", f"/{day}")])
    assert store._distinct_pages(site, [*DAYS[-3:], *after]) is None
    assert store._distinct_pages(site, after) is None  # the upgrade day was only partly seen
    assert store._distinct_pages(site, after[1:]) == brute_force(store, site, after[1:]) == 4


def restore(store: Store, site: str, day: str, paths: list[str]) -> None:
    store.restore_day(
        site,
        day,
        DayRestore(fields={"hits": len(paths)}, pages=dict.fromkeys(paths, 1),
                   referrers={}, visitors=0, hll=None, expire_at=FAR),
    )  # fmt: skip


def test_an_import_restoring_days_oldest_first_keeps_the_index(store: Store) -> None:
    site = new_site(store)
    rng = random.Random(6)
    paths = [f"/p/{n}" for n in range(30)]
    for day in DAYS[:6]:
        restore(store, site, day, rng.sample(paths, rng.randint(0, 20)))
    # Then live hits carry on.
    for day in DAYS[6:]:
        store.record_hits([write(p, site=site, day=day) for p in rng.sample(paths, 10)])
    for days in ranges(DAYS):
        assert store._distinct_pages(site, days) == brute_force(store, site, days), days


def test_a_day_restored_out_of_order_or_over_data_is_not_counted_from(store: Store) -> None:
    site = new_site(store)
    for day in DAYS[4:8]:
        restore(store, site, day, ["/a", "/b"])
    restore(store, site, DAYS[2], ["/a"])  # before days that hold /a already
    assert store._distinct_pages(site, DAYS[2:8]) is None
    assert store._distinct_pages(site, DAYS[:3]) is None
    assert store._distinct_pages(site, DAYS[3:8]) == brute_force(store, site, DAYS[3:8]) == 2
    assert store._distinct_pages(site, DAYS[:2]) == 0
    restore(store, site, DAYS[6], ["/c"])  # over a day that held /a and /b
    assert store._distinct_pages(site, DAYS[5:8]) is None
    assert store._distinct_pages(site, DAYS[6:7]) is None
    assert store._distinct_pages(site, DAYS[3:6]) == brute_force(store, site, DAYS[3:6]) == 2
    assert store._distinct_pages(site, DAYS[7:8]) == 2


def test_an_export_imported_into_a_new_site_is_counted_from_the_index(
    store: Store, tmp_path: Path
) -> None:
    app = make_app(store, tmp_path)
    client = app.test_client()
    site = new_site(store)
    hits_in_order(store, site, random.Random(8))
    dumped = client.get(f"/api/v1/sites/{site}/export?format=json", headers=ADMIN).get_json()
    dumped["days"].reverse()  # an export edited by hand: any order
    assert client.delete(f"/api/v1/sites/{site}", headers=ADMIN).status_code == 204
    add_site(client, site)
    assert (
        client.post(f"/api/v1/sites/{site}/import", json=dumped, headers=ADMIN).status_code == 200
    )
    for days in ranges(DAYS):
        assert store._distinct_pages(site, days) == brute_force(store, site, days), days


@pytest.mark.integration
def test_the_index_counts_on_a_real_redis(redis_url: str) -> None:
    store = Store(connect(redis_url, timeout=5))
    site = new_site(store)
    hits_in_order(store, site, random.Random(7))
    for days in ranges(DAYS):
        assert store._distinct_pages(site, days) == brute_force(store, site, days), days
    # And the stats read answers from it, for a range no read has summed before.
    summary = store.range_summary(site, DAYS[3:9], today=DAYS[-1])
    assert summary.pages == brute_force(store, site, DAYS[3:9])


def test_gaps_longer_than_the_counts_tell_apart_count_as_new_pages(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page back after more than MAX_GAP_DAYS counts as new; ranges up to that many
    days are still exact, longer ones are counted another way."""
    monkeypatch.setattr(store_module, "MAX_GAP_DAYS", 3)
    site = new_site(store)
    for n, day in enumerate(DAYS):
        # /every-k: a hit every k days, so gaps of 1 to 5 days, around the limit of 3.
        paths = [f"/every-{k}" for k in range(1, 6) if n % k == 0]
        store.record_hits([write(p, site=site, day=day) for p in paths])
    for days in ranges(DAYS):
        count = store._distinct_pages(site, days)
        assert count == (brute_force(store, site, days) if len(days) <= 3 else None), days
