"""The store's multi-command writes (imports) on every backend, a cluster included.

On a cluster, redis-py's pipelines route each command by its key: every key here shares
the site's hash tag, so each batch goes to one primary, and a transaction is allowed.
"""

from __future__ import annotations

import time

import pytest

from hitcounter.store import DayRestore, Store, connect

pytestmark = pytest.mark.integration


def test_import_writes_land_whole(redis_url: str) -> None:
    store = Store(connect(redis_url, timeout=5))
    pages = [(f"/p{n}", n + 1, n + 2) for n in range(1500)]
    store.add_pages("blog", pages)
    store.add_pages("blog", [("/p1", 5, 5)])
    hits = sum(h for _, h, _ in pages) + 5
    raw = sum(r for _, _, r in pages) + 5
    assert store.all_time_totals("blog") == (hits, raw)
    assert store.page_count("blog", "/p1") == (2 + 5, 3 + 5, hits)

    store.set_pages("blog", [("/p1", 40, 41)])
    store.set_totals("blog", 100, 110)
    assert store.page_count("blog", "/p1") == (40, 41, 100)

    restore = DayRestore(
        fields={"hits": 3, "raw": 4, "h:09": 3},
        pages={"/": 2, "/about": 1},
        referrers={"news.example": 1},
        visitors=2,
        hll=None,
        expire_at=int(time.time()) + 3600,
    )
    store.restore_day("blog", "2026-11-01", restore)
    snapshot = store.day_snapshot("blog", "2026-11-01")
    assert (snapshot.fields, snapshot.visitors) == ({"hits": 3, "raw": 4, "h:09": 3}, 2)
    assert dict(store.iter_day_pages("blog", "2026-11-01")) == {"/": 2, "/about": 1}
    assert dict(store.iter_day_referrers("blog", "2026-11-01")) == {"news.example": 1}
    assert store.days_with_data("blog", ["2026-10-31", "2026-11-01"]) == ["2026-11-01"]
