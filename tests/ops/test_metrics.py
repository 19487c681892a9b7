"""GET /metrics in one process: hits, drops, request latency, Redis calls, build info.

The registry is the process's own, shared by every app a test session builds, so these
tests compare values before and after. Summing across gunicorn workers is shown in
test_compose_stack.py.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import fakeredis
import pytest
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.parser import text_string_to_metric_families

from hitcounter.metrics import REQUEST_BUCKETS, _Tally, version
from hitcounter.store import Store
from tests.conftest import BROWSER_UA, add_site, make_app

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: FlaskClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    samples: Samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def browser(n: int) -> dict[str, str]:
    """A distinct ordinary browser: its own visitor, never a bot."""
    return {"User-Agent": BROWSER_UA.replace("131.0.0.0", f"131.0.{n}.0")}


# (request, its outcome label, the metric it moves, the status it answers)
HIT_TABLE = [
    ("/hit/blog.gif?path=/a", "counted", "hitcounter_hits_total", 200),
    ("/hit/blog.gif?path=/a", "duplicate", "hitcounter_hits_total", 200),
    ("/hit/nosuch.gif?path=/a", "unknown_site", "hitcounter_hits_dropped_total", 404),
    ("/hit/Bad!Name.gif?path=/a", "invalid", "hitcounter_hits_dropped_total", 400),
]


@pytest.mark.parametrize(("url", "outcome", "metric", "status"), HIT_TABLE)
def test_each_hit_moves_its_counter_and_the_endpoint_latency(
    client: FlaskClient, url: str, outcome: str, metric: str, status: int
) -> None:
    add_site(client, "blog")
    if outcome == "duplicate":
        client.get(url, headers=browser(1))
    label = "outcome" if metric == "hitcounter_hits_total" else "reason"
    before = scrape(client)
    response = client.get(url, headers=browser(1))
    after = scrape(client)
    assert response.status_code == status
    assert value(after, metric, **{label: outcome}) == value(before, metric, **{label: outcome}) + 1
    latency = "hitcounter_request_duration_seconds_count"
    labels = {"endpoint": "embed.pixel", "status": str(status)}
    assert value(after, latency, **labels) == value(before, latency, **labels) + 1


def test_bots_are_counted_as_dropped(client: FlaskClient) -> None:
    add_site(client, "blog")
    before = scrape(client)
    client.get("/hit/blog.gif?path=/", headers={"User-Agent": "curl/8.5.0"})
    after = scrape(client)
    name = "hitcounter_hits_dropped_total"
    assert value(after, name, reason="bot") == value(before, name, reason="bot") + 1


def test_labels_never_hold_what_a_client_sent(client: FlaskClient) -> None:
    junk = uuid.uuid4().hex
    client.get(f"/hit/{junk}.gif?path=/{junk}", headers=browser(2))
    client.get(f"/{junk}/nothing-here")
    body = client.get("/metrics").get_data(as_text=True)
    assert junk not in body
    assert value(scrape(client), "hitcounter_request_duration_seconds_count",
                 endpoint="unmatched", status="404") >= 1  # fmt: skip


def test_redis_calls_are_timed_and_their_failures_counted(tmp_path: Path) -> None:
    server = fakeredis.FakeServer()
    client = make_app(Store(fakeredis.FakeRedis(server=server)), tmp_path).test_client()
    before = scrape(client)
    assert client.get("/readyz").status_code == 200
    server.connected = False
    assert client.get("/readyz").status_code == 503
    after = scrape(client)
    count = "hitcounter_redis_duration_seconds_count"
    errors = "hitcounter_redis_errors_total"
    assert value(after, count, operation="ping") == value(before, count, operation="ping") + 2
    assert value(after, errors, operation="ping") == value(before, errors, operation="ping") + 1


def test_build_info_names_the_version(client: FlaskClient) -> None:
    samples = scrape(client)
    builds = [labels for (name, labels) in samples if name == "hitcounter_build_info"]
    assert len(builds) == 1
    assert ("version", version()) in builds[0]
    assert version() != "unknown"


def test_published_tallies_equal_observing_one_by_one() -> None:
    """The hit path's changes wait in a tally; published, they read exactly as if each
    had gone to prometheus-client directly (also guarding the Histogram internals the
    tally adds to)."""
    registry = CollectorRegistry()
    buckets = REQUEST_BUCKETS
    direct = Histogram("direct_seconds", "", ["status"], buckets=buckets, registry=registry)
    tallied = Histogram("tallied_seconds", "", ["status"], buckets=buckets, registry=registry)
    direct_count = Counter("direct", "", ["outcome"], registry=registry)
    tallied_count = Counter("tallied", "", ["outcome"], registry=registry)
    # Values on bucket bounds, between them, past the last one, and zero.
    values = [0.0, 0.001, 0.0011, 0.004, 0.25, 0.2500001, 2.5, 3.0, 60.0] * 3
    tally = _Tally()
    for n, value in enumerate(values):
        status = ("200", "404")[n % 2]
        direct.labels(status).observe(value)
        tally.observe(tallied.labels(status), value)
        direct_count.labels(status).inc()
        tally.count(tallied_count.labels(status))
    tally.publish()

    def samples(prefix: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return {
            (s.name.removeprefix(prefix), frozenset(s.labels.items())): s.value
            for family in registry.collect()
            for s in family.samples
            if s.name.startswith(prefix) and not s.name.endswith("_created")
        }

    assert samples("tallied") == samples("direct")
    assert samples("tallied")[("_seconds_count", frozenset({("status", "200")}))] == 14


def test_a_quiet_process_still_publishes_its_tally() -> None:
    registry = CollectorRegistry()
    counter = Counter("quiet", "", registry=registry)
    tally = _Tally()
    tally.publish()  # starts the background publisher, as the first change would
    tally._due = float("inf")  # no later change publishes by itself
    tally.count(counter)
    deadline = time.monotonic() + 5
    while registry.get_sample_value("quiet_total") != 1.0:
        assert time.monotonic() < deadline, "the background publisher did not publish"
        time.sleep(0.05)
