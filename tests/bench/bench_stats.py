"""Stats latency for a site of 1,000 and of 100,000 pages, on a spawned redis-server.

Not a test: run it by hand and read the figures.

    .venv/bin/python -m tests.bench.bench_stats [--repeat 40] [--pages 1000 100000]

Each site gets 30 days of data, written by the store's own writers (an import's), so in
the keys the hit script keeps: the all-time pages and raw hits (page buckets) and
totals; and per day the day hash (hits, raw, 24 hour fields, drops), the page-day
buckets holding a tenth of the site's pages (so 30 days touch ~96% of them; scores flat
random, or Zipf-like with --shape zipf), a HyperLogLog of visitors and a referrer zset.
Every request goes through the Flask app (routing, auth, JSON), so the figures are what a
client sees minus the network.

Four tables: "cold", with the sum of the range's past days never kept (every request
runs ZUNIONSTORE over them), as the first read of a range each day sees it; "warm", with
that sum kept (STATS_CACHE_SECONDS, an hour by default), as every read after the first of
the day sees it: then only today's zset is combined with it, by the threshold algorithm in
Store._top_of_sum; "prepared": the first read of the default range on a new day, after
a worker's RangeWarmer summed the past days of the dashboard's quick ranges (7, 30 and
90 days; here all 30 days hold data) in the background (warming.py), with the time that
preparation took; and "warm, new pages": warm reads, each after one new
page (or one in each of today's 16 buckets) had its first hit today, so that the count of
the range's distinct pages must recount the overlap of the changed buckets with the kept
sum (distinct.lua keeps the others'); with no new pages between reads, as in "warm",
nothing is recounted.
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hitcounter import create_app
from hitcounter.store import DayRestore, Keys, Store
from hitcounter.warming import RangeWarmer
from tests.conftest import ADMIN, ADMIN_TOKEN, add_site, spawn_redis
from tests.stats.test_layout import write

DAYS = 30
DAY_SHARE = 0.10
ENDPOINTS = [
    "stats",
    "pages?limit=10",
    "pages?limit=100&offset=100",
    "referrers?limit=10",
    "timeseries",
    "timeseries?interval=hour&from={week}",
    "stats?from={today}&to={today}",
    "pages?from={today}&to={today}",
]


def day_score(rank: int, shape: str, rng: random.Random) -> int:
    """A page's hits on one day: flat random, or falling with its popularity rank."""
    if shape == "uniform":
        return rng.randint(1, 300)
    return max(1, int(20_000 / (rank + 1) * rng.uniform(0.5, 1.5)))


def seed(client: object, site: str, pages: int, rng: random.Random, shape: str) -> None:
    """Write a site's keys as 30 days of hits would have left them, with the store's writers."""
    store = Store(client)
    paths = [f"/post/{n:06d}/" for n in range(pages)]
    today = datetime.now(UTC).date()
    for start in range(0, pages, 5000):
        chunk = paths[start : start + 5000]
        hits = [rng.randint(1, 5000) for _ in chunk]
        raws = [rng.randint(1, 6000) for _ in chunk]
        store.set_pages(site, list(zip(chunk, hits, raws, strict=True)))
    store.set_totals(site, 10**7, 12 * 10**6)
    per_day = max(1, int(pages * DAY_SHARE))
    expire_at = int(time.time()) + 400 * 86400
    for offset in reversed(range(DAYS)):  # oldest first, as an import restores days
        day = (today - timedelta(days=offset)).isoformat()
        hours = {f"h:{h:02d}": rng.randint(0, 500) for h in range(24)}
        fields = {"hits": sum(hours.values()), "raw": sum(hours.values()) + 99, "drop:bot": 7}
        sample = rng.sample(range(pages), per_day)
        restore = DayRestore(
            fields=fields | hours,
            pages={paths[rank]: day_score(rank, shape, rng) for rank in sample},
            referrers={f"ref{n}.example": n for n in range(50)},
            visitors=2000,
            hll=None,
            expire_at=expire_at,
        )
        store.restore_day(site, day, restore)


def measure(
    client: object, url: str, repeat: int, before: Callable[[], object] = lambda: None
) -> tuple[float, float]:
    """Median and 95th percentile latency of one URL, in milliseconds (`before` runs
    before each request, untimed)."""
    timings = []
    for _ in range(repeat):
        before()
        started = time.perf_counter()
        response = client.get(url, headers=ADMIN)  # type: ignore[attr-defined]
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.get_data(as_text=True)
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.95) - 1]


SLOWLOG_LEN = 4096
# The endpoints whose default range (the last 30 days) a RangeWarmer prepares.
PREPARED_ENDPOINTS = ["stats", "pages?limit=10", "pages?limit=100&offset=100", "referrers?limit=10"]


def first_reads_prepared(
    app: object, client: object, site: str, repeat: int
) -> dict[str, tuple[float, float]]:
    """Each default-range endpoint's first read on a new day after the day's preparation;
    and ("preparation") the preparation's own time, which no reader waits for, and the
    longest any one Redis command of it took (Redis serves nobody else meanwhile)."""
    services = app.extensions["hitcounter"]  # type: ignore[attr-defined]
    redis_client = services.store.redis
    reads: dict[str, list[float]] = {endpoint: [] for endpoint in PREPARED_ENDPOINTS}
    preparations: list[float] = []
    longest: list[float] = []  # the longest one Redis command took: hits wait that long
    redis_client.config_set("slowlog-log-slower-than", 0)
    redis_client.config_set("slowlog-max-len", SLOWLOG_LEN)
    for _ in range(repeat):
        for endpoint in PREPARED_ENDPOINTS:
            # A new day: no sums kept, no claim taken; then the worker's look.
            patterns = ["union:*", "prepared:*", "overlaps"]
            for pattern in patterns:
                for key in list(redis_client.scan_iter(match=f"hc:{{{site}}}:{pattern}")):
                    redis_client.delete(key)
            # A new day's sums have new keys: no rows known from reading them before.
            services.store._sum_rows.clear()
            redis_client.slowlog_reset()
            started = time.perf_counter()
            assert RangeWarmer(services.store, services.sites).run_once() != []
            preparations.append((time.perf_counter() - started) * 1000)
            longest.append(max(e["duration"] for e in redis_client.slowlog_get(SLOWLOG_LEN)) / 1000)
            started = time.perf_counter()
            response = client.get(f"/api/v1/sites/{site}/{endpoint}", headers=ADMIN)  # type: ignore[attr-defined]
            reads[endpoint].append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.get_data(as_text=True)
    out = {e: (statistics.median(t), max(t)) for e, t in reads.items()}
    out["preparation (background)"] = (statistics.median(preparations), max(preparations))
    out["its longest Redis command"] = (statistics.median(longest), max(longest))
    return out


# The endpoints that count the range's distinct pages, read after new pages arrived.
NEW_PAGE_ENDPOINTS = ["stats", "pages?limit=10"]
NEW_PATHS = (f"/new/{n}/" for n in itertools.count())


def new_pages_today(client: object, site: str, buckets: int) -> Callable[[], object]:
    """A function that gives `buckets` new paths (one in each of as many day buckets)
    their first hit today, through the hit script."""
    store = Store(client)
    today = datetime.now(UTC).date().isoformat()

    def add() -> None:
        wanted = set(range(buckets))
        writes = []
        while wanted:
            path = next(NEW_PATHS)
            bucket = Keys.day_bucket(path)
            if bucket in wanted:
                wanted.discard(bucket)
                writes.append(write(path, site=site, day=today, max_pages=10**6))
        store.record_hits(writes)

    return add


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--pages", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument(
        "--shape",
        choices=["uniform", "zipf"],
        default="uniform",
        help="Day scores: flat random (the threshold algorithm's worst case) or Zipf-like.",
    )
    args = parser.parse_args()
    rng = random.Random(7)
    today = datetime.now(UTC).date()
    week = (today - timedelta(days=6)).isoformat()
    results: dict[tuple[str, int], dict[str, tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="hitcounter-bench-") as directory:
        server = spawn_redis(Path(directory))
        try:
            config = {
                "ADMIN_TOKEN": ADMIN_TOKEN,
                "REDIS_URL": server.url,
                "REDIS_TIMEOUT": 30,
                "DATA_DIR": str(Path(directory) / "data"),
                "MAX_PAGES": max(args.pages),
            }
            apps = {
                "cold": create_app(config | {"STATS_CACHE_SECONDS": 0}),
                "warm": create_app(config),
            }
            for pages in args.pages:
                site = f"site{pages}"
                add_site(apps["warm"].test_client(), site)
                started = time.perf_counter()
                seed(server.client(), site, pages, rng, args.shape)
                print(f"seeded {site}: {pages:,} pages in {time.perf_counter() - started:.1f} s")
                for mode, app in apps.items():
                    client = app.test_client()
                    results[mode, pages] = {}
                    for endpoint in ENDPOINTS:
                        url = f"/api/v1/sites/{site}/" + endpoint.format(today=today, week=week)
                        measure(client, url, 3)  # warm up the app (and, when warm, the cache)
                        results[mode, pages][endpoint] = measure(client, url, args.repeat)
                    if mode == "warm":
                        results["new pages", pages] = {
                            f"{endpoint}, {n} new": measure(
                                client,
                                f"/api/v1/sites/{site}/{endpoint}",
                                args.repeat,
                                new_pages_today(server.client(), site, n),
                            )
                            for n in (1, Keys.DAY_BUCKETS)
                            for endpoint in NEW_PAGE_ENDPOINTS
                        }
                        results["prepared", pages] = first_reads_prepared(
                            app, client, site, max(3, args.repeat // 8)
                        )
        finally:
            server.stop()
    small, large = min(args.pages), max(args.pages)
    print(
        f"\nlatency in ms (median / p95 of {args.repeat}), default range = last {DAYS} days, "
        f"{args.shape} day scores"
    )
    for mode in ("cold", "warm", "new pages", "prepared"):
        print(f"\n{mode:40} {small:>9,} pages {large:>11,} pages   ratio")
        if mode == "prepared":
            print("(median / max of the first reads on new days)")
        if mode == "new pages":
            print("(warm reads, each after new pages today in 1 or in all 16 day buckets)")
        for endpoint in results[mode, small]:
            s_med, s_p95 = results[mode, small][endpoint]
            l_med, l_p95 = results[mode, large][endpoint]
            print(
                f"{endpoint:40} {s_med:7.2f} / {s_p95:6.2f} {l_med:9.2f} / {l_p95:7.2f}"
                f"   {l_med / s_med:5.1f}x"
            )


if __name__ == "__main__":
    main()
