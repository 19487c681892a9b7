"""The hit path's own Python: CPU per pixel and beacon hit with Redis's answers canned.

Not a test: run it by hand and read the figures.

    .venv/bin/python -m tests.bench.bench_python [--hits 20000] [--repeat 5]

The load benchmark (run.py) measures a hit as the server pays for it, but there the
hit path's own code is a third of the cost and moves with everything else the machine
does. This one calls the app's WSGI callable in a loop, in one process, with the batch
sender answering as Redis would, so what is left is the Python a hit runs: the fast path,
the hit rules, visitor hashing, the group commit, building and packing the script call,
metrics (in multiprocess mode, as under gunicorn). Each figure is the best of --repeat
runs of process CPU time; the no-op WSGI app of the load benchmark, called the same way,
is the baseline in the same run.
"""

from __future__ import annotations

import os
import tempfile

# Metrics as under gunicorn (multiprocess mode), decided when prometheus-client loads.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="hc-bench-"))

import argparse
import io
import json
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from hitcounter import create_app
from tests.bench.reference_apps import noop
from tests.conftest import BROWSER_UA, spawn_redis

WSGI = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def canned_replies(
    calls: Sequence[Any], connection: Any = None, *, load: bool = False
) -> list[Any]:
    """What Redis answers a batch of counted hits: five values per hit of each call."""
    return [[1, b"", 5, 100, b"/post/1"] * count for _, _, count in calls]


def environs(mode: str, hits: int) -> list[dict[str, Any]]:
    """Distinct page views: 500 pages, 20 referrers, a new visitor every hit."""
    out = []
    for i in range(hits):
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/hit/bench.gif",
            "QUERY_STRING": f"path=/post/{i % 500}&ref=https://ref{i % 20}.example/",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_X_FORWARDED_FOR": f"10.{i % 250}.{i // 250 % 250}.{i // 62500 % 250}",
            "HTTP_USER_AGENT": BROWSER_UA,
        }
        if mode == "beacon":
            body = json.dumps(
                {"site": "bench", "path": f"/post/{i % 500}", "referrer": f"https://r{i % 20}.x/"}
            ).encode()
            environ |= {
                "REQUEST_METHOD": "POST",
                "PATH_INFO": "/api/v1/hit",
                "QUERY_STRING": "",
                "CONTENT_TYPE": "text/plain",
                "CONTENT_LENGTH": str(len(body)),
                "body": body,
            }
        out.append(environ)
    return out


def cpu_us_per_call(app: WSGI, calls: list[dict[str, Any]], repeat: int) -> float:
    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        assert status.startswith("200"), status

    best = float("inf")
    for _ in range(repeat):
        for environ in calls:  # a fresh body stream per call, made outside the timing
            environ["wsgi.input"] = io.BytesIO(environ.get("body", b""))
        started = time.process_time()
        for environ in calls:
            app(environ, start_response)
        best = min(best, time.process_time() - started)
    return best / len(calls) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hits", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    redis_server = spawn_redis(Path(tempfile.mkdtemp(prefix="hc-bench-")))
    try:
        # Redis is real for everything but the hit batches: site settings, the salt.
        app = create_app(
            {
                "REDIS_URL": redis_server.url,
                "TRUSTED_PROXIES": "127.0.0.1",
                "DATA_DIR": str(redis_server.directory),  # the spool, on as by default
            }
        )
        services = app.extensions["hitcounter"]
        services.sites.create({"name": "bench", "domains": []})
        services.store._evalsha_calls = canned_replies
        results = {"noop": cpu_us_per_call(noop(), environs("pixel", options.hits), options.repeat)}
        for mode in ("pixel", "beacon"):
            calls = environs(mode, options.hits)
            cpu_us_per_call(app.wsgi_app, calls[:2000], 1)  # warm caches and the salt
            results[mode] = cpu_us_per_call(app.wsgi_app, calls, options.repeat)
    finally:
        redis_server.stop()
    print("| app | Python CPU µs/hit | over the no-op |")
    print("|---|---|---|")
    for name, value in results.items():
        print(f"| {name} | {value:.1f} | {value - results['noop']:.1f} |")


if __name__ == "__main__":
    main()
