"""The store's range reads: the ranked sum of zsets and distinct counts, against brute force."""

from __future__ import annotations

import random

import fakeredis
import pytest

from hitcounter.store import KEPT_UNIONS, Part, Store
from tests.conftest import RedisServer


def brute_force(store: Store, keys: list[str]) -> list[tuple[str, int]]:
    sums: dict[bytes, float] = {}
    for key in keys:
        for member, score in store.redis.zrange(key, 0, -1, withscores=True):
            sums[member] = sums.get(member, 0) + score
    ranked = sorted(sums, key=lambda m: (sums[m], m), reverse=True)
    return [(m.decode(), int(sums[m])) for m in ranked]


def random_parts(store: Store, rng: random.Random) -> list[Part]:
    """Two to four parts, all one zset or all the buckets of one day, written at random."""
    members = [f"/p{n}" for n in range(rng.choice([5, 150, 700]))]
    parts: list[Part] = []
    # One layout for all parts, as a range's sum has: one zset each, or a day's buckets.
    bucketed = rng.random() < 0.5
    for n in range(rng.randint(2, 4)):
        chosen = rng.sample(members, rng.randint(0, len(members)))
        # Few distinct scores: many ties, and a flat spread that makes the algorithm dig.
        scores = {m: rng.choice([1, 2, 3, rng.randint(1, 500)]) for m in chosen}
        if bucketed:
            part = Part(tuple(store.keys.page_days("s", f"2026-01-0{n + 1}")), bucketed=True)
        else:
            part = Part((f"z{n}",))
        for member, score in scores.items():
            store.redis.zadd(part.key_of(member), {member: score})
        parts.append(part)
    return parts


@pytest.mark.parametrize("seed", range(24))
def test_ranked_sum_matches_a_full_union(seed: int) -> None:
    rng = random.Random(seed)
    store = Store(fakeredis.FakeRedis())
    parts = random_parts(store, rng)
    keys = [key for part in parts for key in part.keys]
    expected = brute_force(store, keys)
    # ZUNIONSTORE orders ties as the brute force does: the reference is Redis's own order.
    store.redis.zunionstore("all", keys)
    assert expected == [
        (m.decode(), int(s)) for m, s in store.redis.zrevrange("all", 0, -1, withscores=True)
    ]
    slices = [(0, 10), (0, 1), (3, 7), (95, 20), (0, 1000), (len(expected), 5)]
    for offset, limit in slices:
        assert store._top_of_sum(parts, offset, limit) == expected[offset : offset + limit]
    assert store._distinct("s", parts) == len(expected)
    # One part alone (one zset, or one day's buckets: merged, not summed).
    for part in parts:
        alone = brute_force(store, list(part.keys))
        assert store._distinct("s", [part]) == len(alone)
        for offset, limit in slices:
            want = (len(alone), alone[offset : offset + limit])
            assert store._top("s", [part], offset, limit) == want


def test_range_reads_keep_only_a_few_unions() -> None:
    store = Store(fakeredis.FakeRedis())
    days = [f"2026-01-{n:02d}" for n in range(1, 21)]
    for day in days:
        for path, hits in {"/a": 1, f"/{day}": 2}.items():
            store.redis.zadd(store.keys.page_day_of("s", day, path), {path: hits})
    for start in range(10):
        total, rows = store.top(
            "s", "pages", days[start:], 0, 3, today="2026-01-20", cache_seconds=60
        )
        assert total == len(days) - start + 1
        assert rows[0] == ("/a", len(days) - start)
    kept = [k for k in store.redis.keys("*union:pages:*:*") if store.redis.ttl(k) > 2]
    assert len({key.rsplit(b":", 1)[0] for key in kept}) == KEPT_UNIONS  # one key a bucket
    store.forget_unions("s")
    # What is left are unions pushed out moments ago, about to go.
    assert all(0 < store.redis.ttl(k) <= 2 for k in store.redis.keys("*union*"))


def a_union_and_today(
    store: Store, rng: random.Random, kind: str = "pages"
) -> tuple[list[Part], list[str]]:
    """A kept union of past days and today's zsets, as a range read has them: for pages
    a key per day bucket of each, for referrers one key of each."""
    paths = [f"/p{n}" for n in range(400)]
    union_keys = store.keys.union("s", kind, "2026-01-01", "2026-01-29")
    if kind == "pages":
        union = Part(tuple(union_keys), bucketed=True)
        today = Part(tuple(store.keys.page_days("s", "2026-01-30")), bucketed=True)
    else:
        union, today = Part(tuple(union_keys)), Part((store.keys.referrers("s", "2026-01-30"),))
    for path in rng.sample(paths, 300):
        store.redis.zadd(union.key_of(path), {path: rng.randint(1, 50)})
    for path in rng.sample(paths, 60):
        store.redis.zadd(today.key_of(path), {path: 1})
    return [union, today], paths


def distinct(store: Store, parts: list[Part]) -> int:
    return len(brute_force(store, [key for part in parts for key in part.keys]))


@pytest.mark.parametrize("kind", ["pages", "referrers"])
@pytest.mark.parametrize("seed", range(4))
def test_distinct_count_stays_exact_as_today_grows(seed: int, kind: str) -> None:
    """The overlaps kept between reads never stand in for ones that changed."""
    rng = random.Random(seed)
    store = Store(fakeredis.FakeRedis())
    parts, paths = a_union_and_today(store, rng, kind)
    for _ in range(40):
        assert store._distinct("s", parts) == distinct(store, parts)
        # New pages today (some in the union, some not), or more hits on known ones.
        for path in rng.sample(paths, rng.choice([0, 1, 5])):
            store.redis.zincrby(parts[1].key_of(path), 1, path)
    assert store.redis.hlen(store.keys.overlaps("s")) > 0


def test_forgetting_unions_forgets_their_overlaps() -> None:
    """An import may swap a past day's pages for as many others: the sizes stay, the
    overlap does not, so the import's forget_unions drops what was counted."""
    store = Store(fakeredis.FakeRedis())
    parts, _ = a_union_and_today(store, random.Random(1), "referrers")
    union = parts[0].keys[0]
    before = store._distinct("s", parts)
    today_members = {m for key in parts[1].keys for m in store.redis.zrange(key, 0, -1)}
    shared = [m for m in store.redis.zrange(union, 0, -1) if m in today_members]
    assert shared
    store.redis.zrem(union, *shared)
    store.redis.zadd(union, {f"/new{n}": 1 for n in range(len(shared))})
    store.forget_unions("s")  # as an import does after writing
    assert store._distinct("s", parts) == distinct(store, parts) == before + len(shared)


def zintercards(server: RedisServer) -> int:
    stats = server.client().info("commandstats").get("cmdstat_zintercard", {})
    return int(stats.get("calls", 0))


def test_a_read_counts_again_only_the_buckets_that_changed(redis_server: RedisServer) -> None:
    client = redis_server.client()
    client.flushall()
    store = Store(client)
    parts, _ = a_union_and_today(store, random.Random(2))
    pairs = zip(*(part.keys for part in parts), strict=True)
    filled = sum(1 for a, b in pairs if client.zcard(a) and client.zcard(b))
    client.config_resetstat()
    assert store._distinct("s", parts) == distinct(store, parts)
    assert zintercards(redis_server) == filled
    assert store._distinct("s", parts) == distinct(store, parts)
    assert zintercards(redis_server) == filled  # nothing changed, nothing counted again
    store.redis.zincrby(parts[1].key_of("/new"), 1, "/new")  # a new page today
    assert store._distinct("s", parts) == distinct(store, parts)
    assert zintercards(redis_server) == filled + 1


@pytest.mark.parametrize("seed", range(3))
def test_ranked_sum_read_again_stays_exact_as_today_changes(seed: int) -> None:
    """A ranking read again starts with the rows it last needed (Store._sum_rows); the
    answer stays exact when today's hits make those depths too shallow or too deep."""
    rng = random.Random(seed)
    store = Store(fakeredis.FakeRedis())
    union = Part(tuple(store.keys.union("s", "pages", "2026-01-01", "2026-01-29")), bucketed=True)
    today = Part(tuple(store.keys.page_days("s", "2026-01-30")), bucketed=True)
    paths = [f"/p{n}" for n in range(3000)]
    # Flat scores, past and today alike: the threshold has to read deep.
    for path in rng.sample(paths, 2500):
        store.redis.zadd(union.key_of(path), {path: rng.randint(1, 300)})
    for path in rng.sample(paths, 800):
        store.redis.zadd(today.key_of(path), {path: rng.randint(1, 300)})
    parts = [union, today]
    keys = [*union.keys, *today.keys]
    for _ in range(6):
        for offset, limit in [(0, 10), (100, 100), (0, 300)]:
            expected = brute_force(store, keys)[offset : offset + limit]
            assert store._top_of_sum(parts, offset, limit) == expected
            assert store._top_of_sum(parts, offset, limit) == expected  # from known depths
        # Today changes: a few pages jump far ahead, others gain a little.
        for path in rng.sample(paths, 30):
            store.redis.zincrby(today.key_of(path), rng.choice([1, 5, 400]), path)
    assert store._sum_rows, "deep rankings keep the rows they needed"


def test_known_rows_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hitcounter.store.SUM_ROWS_KEPT", 3)
    store = Store(fakeredis.FakeRedis())
    rng = random.Random(5)
    for n in range(6):
        parts = [Part((f"a{n}",)), Part((f"b{n}",))]
        for key in (f"a{n}", f"b{n}"):
            store.redis.zadd(key, {f"/p{i}": rng.randint(1, 300) for i in range(2000)})
        expected = brute_force(store, [f"a{n}", f"b{n}"])[150:200]
        assert store._top_of_sum(parts, 150, 50) == expected
    assert 0 < len(store._sum_rows) <= 3
