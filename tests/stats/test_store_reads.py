"""The store's range reads: the ranked sum of zsets and distinct counts, against brute force."""

from __future__ import annotations

import random

import fakeredis
import pytest

from hitcounter.store import KEPT_UNIONS, Store


def brute_force(store: Store, keys: list[str]) -> list[tuple[str, int]]:
    sums: dict[bytes, float] = {}
    for key in keys:
        for member, score in store.redis.zrange(key, 0, -1, withscores=True):
            sums[member] = sums.get(member, 0) + score
    ranked = sorted(sums, key=lambda m: (sums[m], m), reverse=True)
    return [(m.decode(), int(sums[m])) for m in ranked]


@pytest.mark.parametrize("seed", range(12))
def test_ranked_sum_matches_a_full_union(seed: int) -> None:
    rng = random.Random(seed)
    store = Store(fakeredis.FakeRedis())
    keys = [f"z{n}" for n in range(rng.randint(2, 4))]
    members = [f"/p{n}" for n in range(rng.choice([5, 150, 700]))]
    for key in keys:
        chosen = rng.sample(members, rng.randint(0, len(members)))
        # Few distinct scores: many ties, and a flat spread that makes the algorithm dig.
        if chosen:
            store.redis.zadd(key, {m: rng.choice([1, 2, 3, rng.randint(1, 500)]) for m in chosen})
    expected = brute_force(store, keys)
    # ZUNIONSTORE orders ties as the brute force does: the reference is Redis's own order.
    store.redis.zunionstore("all", keys)
    assert expected == [
        (m.decode(), int(s)) for m, s in store.redis.zrevrange("all", 0, -1, withscores=True)
    ]
    for offset, limit in [(0, 10), (0, 1), (3, 7), (95, 20), (0, 1000), (len(expected), 5)]:
        assert store._top_of_sum(keys, offset, limit) == expected[offset : offset + limit]
    assert store._distinct(keys) == len(expected)


def test_range_reads_keep_only_a_few_unions() -> None:
    store = Store(fakeredis.FakeRedis())
    days = [f"2026-01-{n:02d}" for n in range(1, 21)]
    for day in days:
        store.redis.zadd(store.keys.page_day("s", day), {"/a": 1, f"/{day}": 2})
    for start in range(10):
        total, rows = store.top_pages("s", days[start:], 0, 3, today="2026-01-20", cache_seconds=60)
        assert total == len(days) - start + 1
        assert rows[0] == ("/a", len(days) - start)
    unions = [k for k in store.redis.keys("*union:pages:*") if store.redis.ttl(k) > 2]
    assert len(unions) == KEPT_UNIONS
    store.forget_unions("s")
    # What is left are unions pushed out moments ago, about to go.
    assert all(0 < store.redis.ttl(k) <= 2 for k in store.redis.keys("*union*"))
