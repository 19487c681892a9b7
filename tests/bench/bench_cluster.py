"""Pixel throughput on a Redis Cluster with one and with two app server processes.

    .venv/bin/python -m tests.bench.bench_cluster [--seconds 10] [--connections 16]

Not a test: it spawns a Redis Cluster (three primaries, a replica each) on loopback and
runs the app under gunicorn with the project's configuration, one worker per process:

1. one process, driven by one wrk;
2. two separate processes on two ports, each driven by its own wrk at the same time
   (the connections split between them), as two app servers behind a load balancer.

Every hit is counted: dedupe and the rate limit are off, the load is spread over several
sites (so over every shard) and pages. It prints requests/s for each and the ratio, and
checks that the cluster counted at least every hit wrk saw answered 200.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psutil

from hitcounter.store import Keys
from tests.cluster.nodes import RedisClusterNodes, spawn_redis_cluster
from tests.conftest import ADMIN_TOKEN, BROWSER_UA, free_port
from tests.servers import request, wait_until_up

SITES = 12
WRK_SCRIPT = """
-- Pixel hits round-robin over the bench sites and 50 pages each.
local counter = 0
request = function()
  counter = counter + 1
  local site = "bench" .. (counter % SITES)
  local headers = {["User-Agent"] = "BROWSER_UA"}
  return wrk.format("GET", "/hit/" .. site .. ".gif?path=/p" .. (counter % 50), headers)
end
"""


@contextmanager
def app_server(redis_url: str) -> Iterator[tuple[str, psutil.Process]]:
    """One gunicorn process with one worker (the configured worker class)."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "-c", "python:hitcounter.gunicorn_conf"]
    command += ["--bind", f"127.0.0.1:{port}", "--workers", "1", "hitcounter:create_app()"]
    with tempfile.TemporaryDirectory(prefix="hitcounter-bench-data-") as data:
        env = os.environ | {
            "HITCOUNTER_REDIS_URL": redis_url,
            "HITCOUNTER_ADMIN_TOKEN": ADMIN_TOKEN,
            "HITCOUNTER_RATE_LIMIT_PER_MINUTE": "0",
            "HITCOUNTER_LOG_LEVEL": "WARNING",  # no access lines
            "HITCOUNTER_DATA_DIR": data,  # the process's spool, apart from other runs'
        }
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(url, process)
            yield url, psutil.Process(process.pid)
        finally:
            process.terminate()
            process.wait(30)


def start_wrk(url: str, seconds: int, connections: int, script: Path) -> subprocess.Popen[str]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def wrk_result(process: subprocess.Popen[str]) -> tuple[int, int, float]:
    """(responses, non-2xx responses, seconds) from wrk's report."""
    out, _ = process.communicate(timeout=120)
    found = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if not found:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    seconds = float(found.group(2)) / (1000 if found.group(3) == "ms" else 1)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return int(found.group(1)), int(errors.group(1)) if errors else 0, seconds


def counted(cluster: RedisClusterNodes) -> int:
    db = cluster.client()
    keys = Keys()
    return sum(int(db.hget(keys.totals(f"bench{i}"), "hits") or 0) for i in range(SITES))


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        times = process.cpu_times()
        total += times.user + times.system
    return total


def measure(cluster: RedisClusterNodes, servers: int, seconds: int, connections: int,
            script: Path) -> float:  # fmt: skip
    """Requests/s of `servers` app processes sharing `connections` wrk connections."""
    before = counted(cluster)
    primaries = [psutil.Process(node.process.pid) for node in cluster.primaries() if node.process]
    with ExitStack() as stack:
        started = [stack.enter_context(app_server(cluster.url)) for _ in range(servers)]
        apps = [p for _, master in started for p in [master, *master.children(recursive=True)]]
        app_cpu, redis_cpu = cpu_seconds(apps), cpu_seconds(primaries)
        share = connections // servers
        loads = [start_wrk(url, seconds, share, script) for url, _ in started]
        results = [wrk_result(load) for load in loads]
        app_cpu, redis_cpu = cpu_seconds(apps) - app_cpu, cpu_seconds(primaries) - redis_cpu
    answered = sum(r[0] for r in results)
    refused = sum(r[1] for r in results)
    rate = sum(r[0] / r[2] for r in results)
    stored = counted(cluster) - before
    print(
        f"{servers} app server process(es), 1 worker each: {rate:,.0f} requests/s "
        f"({answered:,} answered, {refused} not 200; {stored:,} hits counted); "
        f"CPU per 1,000 hits: app {1000 * app_cpu / answered:.2f} s, "
        f"Redis primaries {1000 * redis_cpu / answered:.2f} s"
    )
    if refused or stored < answered:
        raise SystemExit("hits were refused or lost: the figure is not valid")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    options = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="hitcounter-bench-cluster-") as directory,
        spawn_redis_cluster(Path(directory)) as cluster,
    ):
        script = Path(directory) / "pixel.lua"
        script.write_text(WRK_SCRIPT.replace("SITES", str(SITES)).replace("BROWSER_UA", BROWSER_UA))
        with app_server(cluster.url) as (url, _process):
            for i in range(SITES):
                body = {"name": f"bench{i}", "dedupe_seconds": 0}
                status, answer = request(url + "/api/v1/sites", "POST", body, admin=True)
                assert status == 201, answer
        print(f"Redis Cluster: 3 primaries + 3 replicas; {os.cpu_count()} CPUs on this machine")
        one = measure(cluster, 1, options.seconds, options.connections, script)
        two = measure(cluster, 2, options.seconds, options.connections, script)
        print(f"two processes / one: {two / one:.2f}x")


if __name__ == "__main__":
    main()
