"""hits.lua applies a batch of hits exactly as it applies the same hits one at a time.

The script adds up a batch's site and day counters and writes them once, so this checks,
on a real Redis and a real cluster, that any batching of any sequence of hits leaves the
same answers and the same data as sending them one by one: counts, dedupe, rate limit,
page cap, referrers, visitors, hours, and which keys expire.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hitcounter.store import HitWrite, Store
from tests.conftest import redis_client_for

PREFIXES = itertools.count()

hit_writes = st.builds(
    HitWrite,
    site=st.sampled_from(["blog", "docs"]),
    path=st.sampled_from(["/", "/a", "/b", "/c", "/d"]),
    referrer_host=st.sampled_from(["", "", "news.example", "search.example"]),
    visitor=st.sampled_from(["v1", "v2", "v3"]),
    day=st.sampled_from(["2026-11-27", "2026-11-28"]),
    hour=st.integers(0, 23),
    minute=st.sampled_from([29_000_000, 29_000_001]),
    dedupe_seconds=st.sampled_from([0, 1800]),  # 0: an image proxy, counted every time
    rate_limit=st.sampled_from([0, 2, 60]),
    max_pages=st.sampled_from([2, 3, 10_000]),
    retention_seconds=st.just(400 * 86400),
)


def dump(client: Any, prefix: str) -> dict[str, Any]:
    """Every key under `prefix` (prefix removed) with its value and whether it expires."""
    out: dict[str, Any] = {}
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        name = key.decode()
        kind = client.type(key).decode()
        if kind == "hash":
            value: Any = {k.decode(): v.decode() for k, v in client.hgetall(key).items()}
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif name.split(":")[2].startswith("uv"):
            value = client.pfcount(key)
        else:
            value = client.get(key)
        out[name[len(prefix) :]] = (kind, value, client.ttl(key) > 0)
    return out


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(writes=st.lists(hit_writes, min_size=1, max_size=40), cuts=st.lists(st.integers(1, 40)))
def test_a_batch_does_what_the_same_hits_do_one_by_one(
    redis_url: str, writes: list[HitWrite], cuts: list[int]
) -> None:
    client = redis_client_for(redis_url)
    one_prefix, batch_prefix = f"one{next(PREFIXES)}", f"batch{next(PREFIXES)}"
    one_by_one = Store(client, prefix=one_prefix)
    batched = Store(client, prefix=batch_prefix)

    expected = [one_by_one.record_hits([write])[0] for write in writes]
    got = []
    rest = list(writes)
    for size in [*cuts, len(writes)]:
        batch, rest = rest[:size], rest[size:]
        if batch:
            got += batched.record_hits(batch)

    assert got == expected
    assert dump(client, batch_prefix) == dump(client, one_prefix)
