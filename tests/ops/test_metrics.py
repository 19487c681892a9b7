"""GET /metrics in one process: hits, drops, request latency, Redis calls, build info.

The registry is the process's own, shared by every app a test session builds, so these
tests compare values before and after. Summing across gunicorn workers is shown in
test_compose_stack.py.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import fakeredis
import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from hitcounter.metrics import version
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
