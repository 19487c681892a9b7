"""Hostile input: keys stay bounded and apart, a path flood stays capped, a hammering
client stays within the rate limit."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from hitcounter.errors import InvalidInput
from hitcounter.hits import HitRecorder, HitRequest, HitRules
from hitcounter.inputs import SITE_NAME, normalise_path
from hitcounter.sites import SiteRegistry
from hitcounter.store import Keys, Store, connect
from tests.conftest import BROWSER_UA, RedisServer

# Longest key with the default prefix, whatever a client sends: a path (up to 512 bytes)
# is a member or a digest, never part of a key.
MAX_KEY_BYTES = 128

sites = st.from_regex(SITE_NAME, fullmatch=True)
days = st.dates().map(lambda d: d.isoformat())
visitors = st.binary(min_size=8, max_size=8).map(bytes.hex)


def pages(raw: str) -> str | None:
    try:
        return normalise_path(raw)
    except InvalidInput:
        return None


def every_key(site: str, path: str, visitor: str, day: str, minute: int) -> list[str]:
    k = Keys()
    return [
        k.site_settings(site), k.pages_of(site, path), k.raw_of(site, path), k.totals(site),
        k.day(site, day), k.page_day_of(site, day, path), k.visitors(site, day),
        k.referrers(site, day),
        k.seen(site, visitor, path), k.rate(site, minute), k.applied(site, day),
        *k.union(site, "pages", day, day), *k.union(site, "referrers", day, day),
        k.union_pointer(site, "pages"), k.overlaps(site), k.prepared(site, day),
    ]  # fmt: skip


def hash_tag(key: str) -> str:
    """The part of a key Redis Cluster hashes: between the first '{' and the next '}'."""
    start = key.index("{")
    return key[start + 1 : key.index("}", start)]


@given(sites, st.text(max_size=600), visitors, days, st.integers(0, 2**40))
def test_every_key_of_a_site_is_under_its_hash_tag_and_bounded(
    site: str, raw: str, visitor: str, day: str, minute: int
) -> None:
    path = pages(raw) or "/"
    for key in every_key(site, path, visitor, day, minute):
        assert hash_tag(key) == site
        assert key_slot(key.encode()) == key_slot(site.encode())
        assert len(key.encode()) <= MAX_KEY_BYTES


@given(sites, sites, st.text(max_size=300), st.text(max_size=300), visitors, days)
def test_no_two_sites_or_pages_share_a_key(
    site_a: str, site_b: str, raw_a: str, raw_b: str, visitor: str, day: str
) -> None:
    path_a, path_b = pages(raw_a) or "/a", pages(raw_b) or "/b"
    keys_a = set(every_key(site_a, path_a, visitor, day, 1))
    keys_b = set(every_key(site_b, path_b, visitor, day, 1))
    if site_a != site_b:
        assert not keys_a & keys_b
    elif path_a != path_b:
        assert Keys().seen(site_a, visitor, path_a) != Keys().seen(site_b, visitor, path_b)


@given(st.text(max_size=600))
def test_a_page_is_its_own_normal_form(raw: str) -> None:
    """Two spellings of one page are one member; a page never becomes another page."""
    path = pages(raw)
    if path is not None:
        assert normalise_path(path) == path
        assert len(path.encode()) <= 512


def recorder_on(server: RedisServer, rules: HitRules) -> HitRecorder:
    server.client().flushall()
    store = Store(connect(server.url, timeout=5))
    registry = SiteRegistry(store, cache_seconds=60)
    registry.create({"name": "flood", "dedupe_seconds": 1800})
    return HitRecorder(store, registry, rules)


def hit(path: str, ip: str) -> HitRequest:
    return HitRequest("flood", path, None, None, ip, BROWSER_UA)


# Measured: about 38 MiB after 100,000 paths of 8 to 500 bytes from 100,000 addresses.
FLOOD_MEMORY_BOUND = 64 * 1024 * 1024


@pytest.mark.integration
@pytest.mark.slow
def test_a_flood_of_random_paths_stays_at_the_page_cap(redis_server: RedisServer) -> None:
    recorder = recorder_on(redis_server, HitRules(max_pages=10_000))
    db = redis_server.client()
    before = int(db.info("memory")["used_memory"])
    rng = random.Random(8)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_/"

    def send(n: int) -> bool:
        path = "/" + "".join(rng.choices(alphabet, k=rng.randint(8, 500)))
        # A different address each time (a botnet): no rate limit or dedupe helps.
        ip = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
        return recorder.record(hit(path, ip)).counted

    with ThreadPoolExecutor(16) as pool:
        counted = sum(pool.map(send, range(100_000), chunksize=500))
    k = Keys()
    day = datetime.now(UTC).date().isoformat()
    assert counted == 100_000
    all_time, raws, page_days = k.all_pages("flood"), k.all_raw("flood"), k.page_days("flood", day)
    assert sum(db.hlen(key) for key in all_time) == 10_001  # the cap, plus "(other)"
    assert sum(db.hlen(key) for key in raws) == 10_001
    assert int(db.hget(k.totals("flood"), "pages")) == 10_001
    assert sum(db.zcard(key) for key in page_days) == 10_001
    assert int(db.hget(k.pages_of("flood", "(other)"), "(other)")) == 90_000
    used = int(db.info("memory")["used_memory"]) - before
    capped = sum(int(db.memory_usage(key) or 0) for key in [*all_time, *raws, *page_days])
    # The rest is mostly dedupe markers and rate counters, which expire (30 min, 60 s).
    print(f"flood: {used / 2**20:.1f} MiB in all, {capped / 2**20:.1f} MiB kept for good")
    assert used < FLOOD_MEMORY_BOUND


@pytest.mark.integration
def test_one_client_hammering_one_page_stays_within_the_rate_limit(
    redis_server: RedisServer,
) -> None:
    recorder = recorder_on(redis_server, HitRules(rate_limit=60))
    recorder.sites.update("flood", {"dedupe_seconds": 0})  # count every view
    now = datetime.now(UTC)  # one minute for all of them, however long they take

    def send(_: int) -> str:
        return recorder.record(hit("/same", "192.0.2.7"), now=now).reason

    with ThreadPoolExecutor(8) as pool:
        reasons = list(pool.map(send, range(1000)))
    assert reasons.count("") == 60
    assert reasons.count("rate_limited") == 940
    db = redis_server.client()
    k = Keys()
    assert int(db.hget(k.pages_of("flood", "/same"), "/same")) == 60
    day = db.hgetall(k.day("flood", now.date().isoformat()))
    assert (int(day[b"hits"]), int(day[b"drop:rate_limited"])) == (60, 940)
