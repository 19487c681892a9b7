"""Exact counts under concurrency: gunicorn (2 workers) on a real Redis or Cluster, with the
default gevent workers and with gthread ones."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from hitcounter.store import Keys
from tests.conftest import redis_client_for
from tests.privacy import assert_nothing_about_visitors
from tests.servers import KeepAliveClient, gunicorn, request

pytestmark = pytest.mark.integration

CLIENTS = 16
HITS = 5000
PAGES = 50


@pytest.mark.parametrize("worker_class", ["gevent", "gthread"])
def test_5000_concurrent_hits_are_counted_exactly(redis_url: str, worker_class: str) -> None:
    env = {
        "HITCOUNTER_REDIS_URL": redis_url,
        "HITCOUNTER_RATE_LIMIT_PER_MINUTE": "0",  # one address sends everything here
        "HITCOUNTER_WORKER_CLASS": worker_class,
    }
    with gunicorn(env, workers=2) as server:
        status, body = request(
            server.url + "/api/v1/sites",
            "POST",
            {"name": "load", "dedupe_seconds": 0, "timezone": "Pacific/Auckland"},
            admin=True,
        )
        assert status == 201, body

        def send(client_number: int) -> Counter[str]:
            client = KeepAliveClient(server.port)
            sent: Counter[str] = Counter()
            try:
                for i in range(client_number, HITS, CLIENTS):
                    path = f"/page/{i % PAGES}"
                    send_one = client.beacon if i % 2 else client.pixel
                    assert send_one("load", path) == 200
                    sent[path] += 1
            finally:
                client.close()
            return sent

        with ThreadPoolExecutor(CLIENTS) as pool:
            totals = sum(pool.map(send, range(CLIENTS)), Counter())
        assert sum(totals.values()) == HITS

        db = redis_client_for(redis_url)
        keys = Keys()
        pages = {
            m.decode(): int(s) for key in keys.all_pages("load") for m, s in db.hgetall(key).items()
        }
        assert pages == dict(totals)
        assert int(db.hget(keys.totals("load"), "hits")) == HITS
        assert int(db.hget(keys.totals("load"), "raw")) == HITS
        day = datetime.now(UTC).astimezone(__import__("zoneinfo").ZoneInfo("Pacific/Auckland"))
        day_keys = list(db.scan_iter(match=keys.day("load", "*")))  # every primary
        day_hits = sum(int(db.hget(k, "hits")) for k in day_keys)
        assert day_hits == HITS  # one day, or two if the run crossed Auckland's midnight
        assert keys.day("load", day.date().isoformat()).encode() in day_keys
        status, count = request(server.url + "/api/v1/sites/load/count?path=/page/7")
        assert (status, count["hits"], count["site_hits"]) == (200, totals["/page/7"], HITS)
        assert_nothing_about_visitors(db, ["127.0.0.1", "Chrome/131.0.0.0"])
