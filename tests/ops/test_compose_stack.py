"""The compose deployment, run outside containers: redis-server with the redis service's
options, gunicorn with the image's command and the app service's environment.

Hits are counted end to end; /metrics sums the workers; /readyz follows Redis down and
back; SIGTERM under load answers and counts every hit it accepted.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from hitcounter.store import Keys
from tests.conftest import BROWSER_UA, need
from tests.ops.compose import (
    ADMIN_TOKEN,
    ComposeApp,
    ComposeRedis,
    get,
    operator_env,
    post_json,
    start_app,
)

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
KEYS = Keys("hc")  # .env.example keeps the default KEY_PREFIX


@pytest.fixture(scope="module")
def stack_redis() -> Iterator[ComposeRedis]:
    if shutil.which("redis-server") is None:
        need("redis-server", "HITCOUNTER_REQUIRE_REDIS")
    with tempfile.TemporaryDirectory(prefix="hitcounter-compose-redis-") as directory:
        server = ComposeRedis(Path(directory), operator_env())
        server.start()
        yield server
        server.stop()


@dataclass
class Stack:
    redis: ComposeRedis
    directory: Path
    apps: list[ComposeApp] = field(default_factory=list)

    def start_app(self) -> ComposeApp:
        # An operator who turned access lines on: the log test below reads them.
        env = operator_env() | {"HITCOUNTER_ACCESS_LOG": "1"}
        app = start_app(env, self.redis.port, self.directory, workers=2)
        self.apps.append(app)
        return app


@pytest.fixture
def stack(stack_redis: ComposeRedis, tmp_path: Path) -> Iterator[Stack]:
    """The module's Redis, emptied, and gunicorns that are killed if a test leaves one."""
    stack_redis.client().flushall()
    stack = Stack(stack_redis, tmp_path)
    yield stack
    for app in stack.apps:
        if app.process.poll() is None:
            app.process.kill()
            app.process.wait(10)


def visitor(n: int) -> str:
    """The User-Agent of visitor n: an ordinary browser, a distinct visitor each."""
    return BROWSER_UA.replace("131.0.0.0", f"131.0.{n}.0")


def pixel(port: int, site: str, path: str, n: int) -> int:
    """One hit over a fresh connection; its status."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(
            "GET", f"/hit/{site}.gif?path={path}", headers={"User-Agent": visitor(n)}
        )
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def add_site(app: ComposeApp, name: str) -> None:
    status, body = post_json(app.url + "/api/v1/sites", {"name": name, "dedupe_seconds": 0}, ADMIN)
    assert status == 201, body


def scrape(app: ComposeApp) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, body = get(app.url + "/metrics")
    assert status == 200, body
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def counted_hits_by_worker(metrics_dir: Path) -> dict[str, float]:
    """Counted hits in each worker's own file, read with prometheus-client's reader."""
    by_worker = {}
    for path in metrics_dir.glob("counter_*.db"):
        for metric in MultiProcessCollector.merge([str(path)], accumulate=False):
            for sample in metric.samples:
                if sample.name == "hitcounter_hits_total" and sample.labels == {
                    "outcome": "counted"
                }:
                    by_worker[path.stem.removeprefix("counter_")] = sample.value
    return by_worker


def site_totals(server: ComposeRedis, site: str) -> dict[str, int]:
    """The site's all-time counts: hits, raw hits and pages kept."""
    fields = ("hits", "raw", "pages")
    raw = server.client().hmget(KEYS.totals(site), fields)
    return {field: int(value) for field, value in zip(fields, raw, strict=True) if value}


def test_hits_are_counted_end_to_end_and_metrics_sum_the_workers(stack: Stack) -> None:
    server, directory = stack.redis, stack.directory
    (directory / "metrics").mkdir()
    (directory / "metrics" / "counter_4242.db").write_bytes(b"left by an earlier run")
    assert server.healthcheck() == 0
    app = stack.start_app()
    assert app.healthcheck() == 0
    assert not (directory / "metrics" / "counter_4242.db").exists()
    add_site(app, "docs")

    with socket.create_connection(("127.0.0.1", app.port), timeout=5) as raw:
        raw.sendall(b"NOT HTTP\r\n\r\n")  # gunicorn logs a warning about it
        assert raw.recv(100).startswith(b"HTTP/1.1 400")

    hits, pages = 200, 4
    with ThreadPoolExecutor(8) as pool:
        statuses = Counter(
            pool.map(lambda n: pixel(app.port, "docs", f"/p{n % pages}", n), range(hits))
        )
        dropped = Counter(pool.map(lambda n: pixel(app.port, "nosuch", "/", n), range(5)))
    assert statuses == {200: hits}
    assert dropped == {404: 5}

    for page in range(pages):
        status, body = get(f"{app.url}/api/v1/sites/docs/count?path=/p{page}")
        counts = json.loads(body)
        assert status == 200 and counts["hits"] == hits // pages
        assert counts["site_hits"] == hits
    assert site_totals(server, "docs") == {"hits": hits, "raw": hits, "pages": pages}

    # Each worker publishes its hit metrics within half a second (metrics._Tally).
    latency = "hitcounter_request_duration_seconds_count"
    pixel_endpoint = ("endpoint", "embed.pixel")
    expected = {
        ("hitcounter_hits_total", frozenset({("outcome", "counted")})): hits,
        ("hitcounter_hits_dropped_total", frozenset({("reason", "unknown_site")})): 5,
        (latency, frozenset({pixel_endpoint, ("status", "200")})): hits,
        (latency, frozenset({pixel_endpoint, ("status", "404")})): 5,
    }
    deadline = time.monotonic() + 10
    while True:
        metrics = scrape(app)
        if all(metrics.get(sample) == count for sample, count in expected.items()):
            break
        assert time.monotonic() < deadline, "the workers' hit metrics did not add up"
        time.sleep(0.2)

    def value(name: str, **labels: str) -> float:
        return metrics.get((name, frozenset(labels.items())), 0.0)

    assert value("hitcounter_hits_total", outcome="counted") == hits
    assert value("hitcounter_hits_dropped_total", reason="unknown_site") == 5
    assert value(latency, endpoint="embed.pixel", status="200") == hits
    assert value(latency, endpoint="embed.pixel", status="404") == 5
    # One record_hit per batch of hits that shared a round trip (group commit).
    batches = value("hitcounter_redis_duration_seconds_count", operation="record_hit")
    assert 1 <= batches <= hits
    assert any(name == "hitcounter_build_info" for name, _ in metrics)
    by_worker = counted_hits_by_worker(app.metrics_dir)
    assert sum(by_worker.values()) == hits
    assert len([n for n in by_worker.values() if n > 0]) == 2, by_worker
    assert app.terminate() == 0

    lines = app.log_lines()
    events = [json.loads(line) for line in lines]  # every line is one JSON object
    access = [e for e in events if e["logger"] == "gunicorn.access"]
    assert len([e for e in access if e["path"] == "/hit/docs.gif"]) == hits
    assert all("127.0.0.1" not in json.dumps(e) for e in access)
    assert not [line for line in lines if "Chrome/131.0." in line or "path=" in line]
    assert [e for e in events if "Invalid request from ip=-" in e["message"]]
    assert not [line for line in lines if "ip=127.0.0.1" in line]


def test_readyz_follows_redis_down_and_back(stack: Stack) -> None:
    server = stack.redis
    app = stack.start_app()
    add_site(app, "docs")
    assert [pixel(app.port, "docs", "/", n) for n in range(10)] == [200] * 10

    server.stop()
    assert [get(app.url + "/readyz")[0] for _ in range(6)] == [503] * 6
    # A worker that knows the site keeps the hit in its spool (200, applied once Redis
    # is back; tests/reliability covers the spool); one that does not refuses it (503).
    during_outage = pixel(app.port, "docs", "/", 99)
    assert during_outage in (200, 503)
    kept = 10 + (during_outage == 200)
    assert server.healthcheck() != 0
    errors = sum(v for (n, _), v in scrape(app).items() if n == "hitcounter_redis_errors_total")
    assert errors >= 7

    server.start()
    answers: list[int] = []
    deadline = time.monotonic() + 10
    while answers[-6:] != [200] * 6 and time.monotonic() < deadline:
        answers.append(get(app.url + "/readyz")[0])
    assert answers[-6:] == [200] * 6, answers
    # The append-only file brought the hits back with Redis.
    assert (server.directory / "appendonlydir").is_dir()
    deadline = time.monotonic() + 10
    while site_totals(server, "docs")["hits"] < kept and time.monotonic() < deadline:
        time.sleep(0.1)  # a spooled hit is replayed within a second or so
    assert site_totals(server, "docs") == {"hits": kept, "raw": kept, "pages": 1}
    status, body = get(app.url + "/api/v1/sites/docs/count?path=/")
    assert status == 200 and json.loads(body)["hits"] == kept
    assert app.terminate() == 0


@dataclass
class LoadClient:
    """Sends hits one after another on one keep-alive connection, as a browser would."""

    port: int
    number: int
    stop: threading.Event
    sigterm_at: list[float]
    answered: Counter[int] = field(default_factory=Counter)
    answered_after_sigterm: int = 0
    failures: list[tuple[float, str]] = field(default_factory=list)

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        sent = 0
        while not self.stop.is_set():
            sent += 1
            headers = {"User-Agent": visitor(self.number * 100_000 + sent)}
            started = time.monotonic()
            try:
                connection.request("GET", f"/hit/load.gif?path=/c{self.number}", headers=headers)
                response = connection.getresponse()
                response.read()
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                # Refused, reset or closed before an answer: the hit was not accepted.
                self.failures.append((time.monotonic(), type(exc).__name__))
                connection.close()
                if isinstance(exc, ConnectionRefusedError):
                    return  # the server is gone
                continue
            self.answered[response.status] += 1
            if self.sigterm_at and started >= self.sigterm_at[0]:
                self.answered_after_sigterm += 1
            if response.getheader("Connection", "").lower() == "close":
                connection.close()


@pytest.mark.slow
def test_sigterm_under_load_answers_and_counts_every_accepted_hit(stack: Stack) -> None:
    app = stack.start_app()
    add_site(app, "load")
    stop, sigterm_at = threading.Event(), list[float]()
    clients = [LoadClient(app.port, n, stop, sigterm_at) for n in range(6)]
    threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        sigterm_at.append(time.monotonic())
        exit_code = app.terminate(timeout=40)
        # The clients find the server gone by themselves; stop any that has not.
        for thread in threads:
            thread.join(5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)

    answered = sum((c.answered for c in clients), Counter())
    assert exit_code == 0
    assert set(answered) == {200}, answered  # no 5xx, no 4xx while stopping
    assert answered[200] > 0
    for client in clients:
        assert client.failures, "every client keeps sending until the server is gone"
        assert all(when >= sigterm_at[0] for when, _ in client.failures), client.failures
    # Every hit that was answered was counted, and nothing else was.
    after = sum(c.answered_after_sigterm for c in clients)
    totals = site_totals(stack.redis, "load")
    assert totals == {"hits": answered[200], "raw": answered[200], "pages": len(clients)}, (
        f"{answered[200]} answered, {after} of them sent after SIGTERM"
    )
