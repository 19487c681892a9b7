"""Prometheus metrics: hits, drops, request latency, Redis calls, build info; `GET /metrics`.

Under gunicorn each worker is a process of its own. When PROMETHEUS_MULTIPROC_DIR is set
(`hitcounter.gunicorn_conf` sets it before the workers fork), prometheus-client keeps
every value in a file there and `/metrics` sums the files of all workers, so any worker
answers for the whole server.

No label ever holds something a client chose (a site name, a path, a method): junk
requests must not be able to grow the number of series without bound.
"""

from __future__ import annotations

import bisect
import functools
import os
import platform
import threading
import time
from importlib import metadata
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client import values as prometheus_values

if TYPE_CHECKING:
    from hitcounter.hits import HitOutcome

bp = Blueprint("metrics", __name__)

# In multiprocess mode prometheus-client asks the kernel for the pid on every change of
# a value, to notice a fork: several system calls per hit. A pid kept here and renewed
# in each forked child tells it the same for free. (Set before any metric is made.)
_pid = os.getpid()


def _renew_pid() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_renew_pid)
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    prometheus_values.ValueClass = prometheus_values.MultiProcessValue(lambda: _pid)

# A hit is a Redis round trip plus a little Python: most answers take a few
# milliseconds, and anything near the Redis timeout (0.5 s) is trouble worth seeing.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
REDIS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
# Every reason HitRecorder can give; anything else would be a bug, counted as "other".
DROP_REASONS = frozenset(
    {"invalid", "unknown_site", "bot", "origin", "rate_limited", "prefetch", "other"}
    # Answered 503: Redis unreachable and no spool, or the spool full.
    | {"unavailable", "spool_full"}
)

HITS = Counter(
    "hitcounter_hits",
    "Hits kept: counted, raw hits inside the dedupe window (duplicate), or spooled while "
    "Redis could not take them (spooled).",
    ["outcome"],
)
SPOOL_REPLAYED = Counter(
    "hitcounter_spool_replayed",
    "Spooled hits sent to Redis again: applied, already_applied (the first try had reached "
    "Redis), failed (an error reply; skipped) or damaged (a torn line; skipped).",
    ["result"],
)
SPOOL_ADOPTED = Counter(
    "hitcounter_spool_adopted_files", "Spool files of dead workers taken over for replay."
)
SPOOL_BYTES = Gauge(
    "hitcounter_spool_pending_bytes",
    "Bytes of spooled hits waiting for Redis, over all workers.",
    multiprocess_mode="livesum",
)
DROPS = Counter("hitcounter_hits_dropped", "Hit requests not counted, by reason.", ["reason"])
REQUEST_SECONDS = Histogram(
    "hitcounter_request_duration_seconds",
    "Time to answer an HTTP request, by Flask endpoint and status code.",
    ["endpoint", "status"],
    buckets=REQUEST_BUCKETS,
)
REDIS_SECONDS = Histogram(
    "hitcounter_redis_duration_seconds",
    "Time of one store operation (one or a few Redis round trips), by operation; "
    "record_hit is one batch of hits sharing a round trip.",
    ["operation"],
    buckets=REDIS_BUCKETS,
)
REDIS_ERRORS = Counter(
    "hitcounter_redis_errors",
    "Store operations that failed: Redis unreachable, timed out, or an error reply.",
    ["operation"],
)
BUILD_INFO = Gauge(
    "hitcounter_build_info",
    "Always 1; the labels say which version runs.",
    ["version", "python"],
    # One series whatever the number of workers (they all run the same build).
    multiprocess_mode="max",
)


def version() -> str:
    """The installed hitcounter version."""
    try:
        return metadata.version("hitcounter")
    except metadata.PackageNotFoundError:
        return "unknown"


class _Tally:
    """Metric changes of this process, waiting to reach prometheus-client's values.

    In multiprocess mode each change of a value there takes a lock and writes a shared
    file; a hit makes three (its outcome, and its request's time in a histogram's sum
    and bucket), about 6% of a hit's server CPU in the load benchmark. Here a change is
    a dict update, and the totals are published at most PUBLISH_SECONDS later (by the
    next change, or a background thread when changes stop), before this process
    answers /metrics, and when a gunicorn worker exits.
    """

    PUBLISH_SECONDS = 0.5

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[Any, float] = {}  # counter child -> amount to add
        self._observed: dict[Any, list[float]] = {}  # histogram child -> sum, per bucket
        self._due = 0.0  # monotonic time of the next publication
        self._publisher: threading.Thread | None = None

    def count(self, counter: Any, amount: float = 1.0) -> None:
        with self._lock:
            self._counts[counter] = self._counts.get(counter, 0.0) + amount
        self._publish_if_due()

    def observe(self, histogram: Any, value: float) -> None:
        # The first bucket whose upper bound is >= value (the last bound is +Inf), as
        # Histogram.observe picks it.
        bucket = bisect.bisect_left(histogram._upper_bounds, value)
        with self._lock:
            totals = self._observed.get(histogram)
            if totals is None:
                totals = self._observed[histogram] = [0.0] * (len(histogram._buckets) + 1)
            totals[0] += value
            totals[bucket + 1] += 1
        self._publish_if_due()

    def _publish_if_due(self) -> None:
        if time.monotonic() >= self._due:
            self.publish()

    def publish(self) -> None:
        """Add everything waiting to prometheus-client's values."""
        with self._lock:
            counts, self._counts = self._counts, {}
            observed, self._observed = self._observed, {}
            self._due = time.monotonic() + self.PUBLISH_SECONDS
            if self._publisher is None:
                # Publishes what a process that went quiet still holds.
                self._publisher = threading.Thread(
                    target=self._publish_forever, name="hitcounter-metrics", daemon=True
                )
                self._publisher.start()
        for counter, amount in counts.items():
            counter.inc(amount)
        for histogram, totals in observed.items():
            # A histogram's sum and buckets, each added to once (what observe() would
            # have added one observation at a time).
            histogram._sum.inc(totals[0])
            for value, count in zip(histogram._buckets, totals[1:], strict=True):
                if count:
                    value.inc(count)

    def _publish_forever(self) -> None:
        while True:
            time.sleep(self.PUBLISH_SECONDS)
            if self._counts or self._observed:
                self.publish()

    def forget(self) -> None:
        """In a forked child: the parent's changes and publisher are the parent's."""
        self._lock = threading.Lock()
        self._counts, self._observed, self._due, self._publisher = {}, {}, 0.0, None


_tally = _Tally()
os.register_at_fork(after_in_child=_tally.forget)


def publish() -> None:
    """Publish this process's waiting metric changes now (a worker about to exit)."""
    _tally.publish()


# Labelled children, looked up once per label value: `labels()` costs a lock and a dict
# lookup on every call, on the hit path several times per hit. Label values are few and
# all chosen by this code (see above), so the caches stay small.
_hit_counter = functools.cache(HITS.labels)
_drop_counter = functools.cache(DROPS.labels)
_request_timer = functools.cache(REQUEST_SECONDS.labels)
_redis_timer = functools.cache(REDIS_SECONDS.labels)
_redis_error_counter = functools.cache(REDIS_ERRORS.labels)


def observe_hit(outcome: HitOutcome) -> None:
    """Count one hit request by what became of it."""
    if outcome.accepted:
        _tally.count(_hit_counter(outcome.reason or "counted"))
    else:
        _tally.count(_drop_counter(outcome.reason if outcome.reason in DROP_REASONS else "other"))


def observe_unkept(reason: str) -> None:
    """Count one hit refused with 503 because the store could not keep it."""
    _drop_counter(reason).inc()


def spool_size(pending_bytes: int) -> None:
    """Publish how many bytes of this worker's spooled hits wait for Redis."""
    SPOOL_BYTES.set(pending_bytes)


def observe_redis(operation: str, seconds: float) -> None:
    """Record the time of one store operation."""
    _tally.observe(_redis_timer(operation), seconds)


def observe_redis_error(operation: str) -> None:
    """Count one store operation that raised."""
    _redis_error_counter(operation).inc()


def init_app(app: Flask) -> None:
    """Time every request of the app and publish the build info."""
    BUILD_INFO.labels(version(), platform.python_version()).set(1)
    app.before_request(_start_timer)
    app.after_request(_observe_request)


def _start_timer() -> None:
    g.hitcounter_request_started = time.perf_counter()


def _observe_request(response: Response) -> Response:
    started = g.get("hitcounter_request_started")
    if started is not None:
        # The endpoint name ("embed.pixel"), never the raw path: bounded cardinality.
        endpoint = request.endpoint or "unmatched"
        observe_request(endpoint, response.status_code, time.perf_counter() - started)
    return response


def observe_request(endpoint: str, status: int, seconds: float) -> None:
    """Record one answered request (also called by the WSGI hit fast path)."""
    _tally.observe(_request_timer(endpoint, str(status)), seconds)


def exposition() -> bytes:
    """The metrics in Prometheus text format, summed over all workers if there are several
    (another worker's latest changes show within _Tally.PUBLISH_SECONDS)."""
    _tally.publish()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


@bp.get("/metrics")
def prometheus() -> Response:
    """Serve the metrics to Prometheus."""
    response = Response(exposition(), mimetype=None, content_type=CONTENT_TYPE_LATEST)
    response.headers["Cache-Control"] = "no-store"
    return response
