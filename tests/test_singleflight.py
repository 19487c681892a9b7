"""Single flight: a burst of callers that miss the same cache entry fetch it once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from hitcounter.errors import StoreUnavailable
from hitcounter.singleflight import SingleFlight
from hitcounter.sites import SiteRegistry
from hitcounter.store import Store
from hitcounter.visitors import VisitorHasher
from tests.conftest import BROWSER_UA


class SlowCount:
    """A fetch that takes a while and counts its calls; it may fail instead."""

    def __init__(self, value: Any, error: Exception | None = None) -> None:
        self.value, self.error = value, error
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, *args: Any) -> Any:
        with self.lock:
            self.calls += 1
        time.sleep(0.05)
        if self.error is not None:
            raise self.error
        return self.value


def burst(n: int, call: Any) -> list[Any]:
    """Call `call` from n threads at once; its results, or the exceptions raised."""
    start = threading.Barrier(n)

    def one(_: int) -> Any:
        start.wait()
        try:
            return call()
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_concurrent_callers_share_one_fetch() -> None:
    fetch, flights = SlowCount("settings"), SingleFlight[str]()
    assert burst(12, lambda: flights.do("blog", fetch)) == ["settings"] * 12
    assert fetch.calls == 1
    assert flights.do("blog", fetch) == "settings" and fetch.calls == 2  # later: fetched anew


def test_a_failed_fetch_fails_every_waiting_caller_at_once() -> None:
    away = StoreUnavailable("the store cannot be reached")
    fetch, flights = SlowCount(None, away), SingleFlight[None]()
    started = time.monotonic()
    assert burst(12, lambda: flights.do("blog", fetch)) == [away] * 12
    assert fetch.calls == 1
    assert time.monotonic() - started < 0.5  # one timeout for all, not one after another


def test_different_keys_fetch_on_their_own() -> None:
    fetch, flights = SlowCount("x"), SingleFlight[str]()
    results = burst(6, lambda: flights.do(threading.get_ident() % 2, fetch))
    assert results == ["x"] * 6 and 1 <= fetch.calls <= 2


def test_a_cold_registry_reads_a_site_once_for_a_burst(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    sites = SiteRegistry(fake_store)
    sites.create({"name": "blog"})
    sites.forget("blog")
    read = SlowCount(fake_store.site_fields("blog"))
    monkeypatch.setattr(fake_store, "site_fields", read)
    found = burst(12, lambda: sites.get("blog"))
    assert {site.name for site in found} == {"blog"}
    assert read.calls == 1


def test_a_new_day_fetches_its_salt_once_for_a_burst(
    fake_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    salt = SlowCount(b"s" * 32)
    monkeypatch.setattr(fake_store, "daily_salt", salt)
    hasher = VisitorHasher(fake_store)
    minute = int(datetime(2026, 3, 10, 12, 0, tzinfo=UTC).timestamp()) // 60
    ids = burst(12, lambda: hasher.visitor_id("blog", "192.0.2.1", BROWSER_UA, minute))
    assert len(set(ids)) == 1 and salt.calls == 1
