"""The hitcounter benchmark: one command, its baselines in the same run, ratios reported.

    .venv/bin/python -m tests.bench.run [--seconds 10] [--rounds 5] [--out FILE.json]
    .venv/bin/python -m tests.bench.run --memory-only   # Redis memory per page, in seconds

It spawns its own redis-server and gunicorn servers on loopback (the project's gunicorn
configuration for all three apps), drives them with wrk for a bounded time, and reads
server CPU time (app processes plus Redis) from /proc around each run. Figures:

- throughput, p50/p99 latency and CPU per hit of the pixel and the beacon, all features on
  (visitor hashing, dedupe, bot check, day buckets, referrers; every hit counted), and of
  two reference apps: Flask + one Redis INCR, and a no-op WSGI app (the server's ceiling);
- p99 latency at half the pixel's maximum throughput (an open-loop paced load);
- Redis round trips and commands per hit (INFO stats / INFO commandstats);
- Redis memory per distinct page and per page-day (a site of 10,000 pages, 365 days);
- stats API latency for sites of 1,000 and 100,000 pages;
- the snippet's gzipped size.

The apps take turns for --rounds rounds and each figure is the median of its rounds:
throughput swings on a shared machine; CPU per hit is the steadier figure.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import http.client
import itertools
import json
import os
import re
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import psutil
import redis

from tests.conftest import ADMIN_TOKEN, BROWSER_UA, RedisServer, free_port
from tests.servers import connections_per_worker, request

HERE = Path(__file__).parent
WRK_SCRIPT = HERE / "hits.lua"
APPS = {
    "pixel": "hitcounter:create_app()",
    "beacon": "hitcounter:create_app()",
    "flask_incr": "tests.bench.reference_apps:flask_incr()",
    "noop": "tests.bench.reference_apps:noop()",
}


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    port: int

    def processes(self) -> list[psutil.Process]:
        master = psutil.Process(self.process.pid)
        return [master, *master.children(recursive=True)]


@contextmanager
def gunicorn_app(target: str, env: dict[str, str], workers: int) -> Iterator[Server]:
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "-c", "python:hitcounter.gunicorn_conf"]
    command += ["--bind", f"127.0.0.1:{port}", "--workers", str(workers)]
    command.append(target)
    process = subprocess.Popen(
        command, env=os.environ | env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up_any(url, process)
        yield Server(process, url, port)
    finally:
        process.terminate()
        process.wait(30)


def wait_until_up_any(url: str, process: subprocess.Popen[bytes]) -> None:
    """Wait for any HTTP answer (the reference apps have no /healthz)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server for {url} exited")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]))
            connection.request("GET", "/hit/warmup.gif")
            connection.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


_wrk_runs = itertools.count(1)


def run_wrk(url: str, seconds: int, connections: int, mode: str) -> dict[str, float]:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    command += ["-s", str(WRK_SCRIPT), url]
    # A run number of its own: its visitors are new (see hits.lua), so its hits count.
    env = os.environ | {"BENCH_MODE": mode, "BENCH_RUN": str(next(_wrk_runs) % 125)}
    out = subprocess.run(
        command, env=env, capture_output=True, text=True,
        timeout=seconds + 30, check=True,
    ).stdout  # fmt: skip
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests": requests,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": wrk_latency(out, "50%"),
        "p99_ms": wrk_latency(out, "99%"),
        "errors": int(non_2xx.group(1)) if non_2xx else 0,
    }


def wrk_latency(out: str, label: str) -> float:
    match = re.search(rf"{re.escape(label)}\s+([\d.]+)(us|ms|s)", out)
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def paced_p99(port: int, path: str, rate: float, seconds: float, connections: int = 16) -> float:
    """p99 latency (ms) of an open-loop load at a fixed rate, timed from each send's slot.

    One thread drives all connections with non-blocking sockets and ready-made requests,
    so the client itself costs little CPU: on a 2-core machine a heavier client competes
    with the server it measures. A request whose slot comes while every connection is
    busy waits for one, and that wait counts in its latency.
    """
    selector = selectors.DefaultSelector()

    def connect() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        return sock

    idle = [connect() for _ in range(connections)]
    in_flight: dict[socket.socket, tuple[float, bytearray]] = {}
    latencies: list[float] = []
    start = time.monotonic() + 0.2
    total = int(rate * seconds)
    sent = 0
    deadline = start + seconds + 10
    while (sent < total or in_flight) and time.monotonic() < deadline:
        now = time.monotonic()
        while sent < total and idle and start + sent / rate <= now:
            sock = idle.pop()
            visitor = f"10.{sent % 250}.{sent // 250 % 250}.{sent // 62500 % 250}"
            sock.sendall(
                f"GET {path}?path=/paced/{sent % 300} HTTP/1.1\r\nHost: bench\r\n"
                f"User-Agent: {BROWSER_UA}\r\nX-Forwarded-For: {visitor}\r\n\r\n".encode()
            )
            in_flight[sock] = (start + sent / rate, bytearray())
            selector.register(sock, selectors.EVENT_READ)
            sent += 1
        wait = max(0.0, start + sent / rate - time.monotonic()) if idle and sent < total else 0.05
        for key, _ in selector.select(timeout=wait):
            sock = key.fileobj  # type: ignore[assignment]
            slot, buffer = in_flight[sock]
            buffer += sock.recv(65536)
            head_end = buffer.find(b"\r\n\r\n")
            if head_end < 0:
                continue
            length = re.search(rb"(?i)content-length: *(\d+)", buffer[:head_end])
            if len(buffer) >= head_end + 4 + (int(length.group(1)) if length else 0):
                latencies.append((time.monotonic() - slot) * 1000)
                selector.unregister(sock)
                del in_flight[sock]
                if re.search(rb"(?i)\r\nconnection: *close", buffer[:head_end]):
                    # The server asked for a new connection (its workers spread them).
                    sock.close()
                    sock = connect()
                idle.append(sock)
    for sock in idle + list(in_flight):
        sock.close()
    return statistics.quantiles(latencies, n=100)[98]


def redis_stats(client: redis.Redis) -> dict[str, int]:
    stats = client.info("stats")
    commands = client.info("commandstats")
    return {
        "reads": int(stats["total_reads_processed"]),
        "top_level": int(stats["total_commands_processed"]),
        "all_commands": sum(int(v["calls"]) for v in commands.values()),
    }


def connection_split(server: Server) -> list[int]:
    """The client connections each worker holds, most first: wrk's 32, opened at once,
    fall 16/16 or 17/15 on the project's gevent workers (gunicorn's own worker often
    left 31/1). The split moves the hit path's figures: a worker's batches can hold no
    more hits than it has requests in flight. The reference apps do not batch, and
    hardly notice.
    """
    return connections_per_worker(server.process.pid, server.port)


def prepare_site(url: str) -> None:
    status, body = request(
        url + "/api/v1/sites", "POST", {"name": "bench", "domains": []}, admin=True
    )
    assert status == 201, body


def measure_load(
    name: str, redis_server: RedisServer, seconds: int, workers: int
) -> dict[str, Any]:
    client = redis_server.client()
    client.flushall()
    env = {
        "HITCOUNTER_REDIS_URL": redis_server.url,
        "HITCOUNTER_ADMIN_TOKEN": ADMIN_TOKEN,
        "HITCOUNTER_TRUSTED_PROXIES": "127.0.0.1",
    }
    with gunicorn_app(APPS[name], env, workers) as server:
        if name in ("pixel", "beacon"):
            prepare_site(server.url)
        # Warm up: imports, connections, caches, the script cache.
        run_wrk(server.url, 2, 16, name)
        client.flushall() if name in ("flask_incr", "noop") else None
        processes = server.processes()
        redis_process = psutil.Process(redis_server.process.pid)  # type: ignore[union-attr]
        before_cpu = cpu_seconds(processes), cpu_seconds([redis_process])
        before_redis = redis_stats(client)
        # Two seconds in, how wrk's connections fell on the workers: a worker holding few
        # of them batches few hits per round trip (see connection_split).
        split: list[int] = []
        sampler = threading.Timer(2.0, lambda: split.extend(connection_split(server)))
        sampler.start()
        result: dict[str, Any] = run_wrk(server.url, seconds, 32, name)
        sampler.join()
        after_cpu = cpu_seconds(processes), cpu_seconds([redis_process])
        after_redis = redis_stats(client)
        hits = result["requests"]
        result["connections_per_worker"] = "/".join(map(str, split))
        app_cpu = after_cpu[0] - before_cpu[0]
        redis_cpu = after_cpu[1] - before_cpu[1]
        result |= {
            "cpu_us_per_hit": (app_cpu + redis_cpu) / hits * 1e6,
            "app_cpu_us_per_hit": app_cpu / hits * 1e6,
            "redis_cpu_us_per_hit": redis_cpu / hits * 1e6,
            "redis_round_trips_per_hit": (after_redis["reads"] - before_redis["reads"]) / hits,
            "redis_commands_per_hit": (after_redis["all_commands"] - before_redis["all_commands"])
            / hits,
        }
        if name == "pixel":
            counted = int(client.hget("hc:{bench}:totals", "hits") or 0)
            raw = int(client.hget("hc:{bench}:totals", "raw") or 1)
            result["counted_share"] = counted / max(1, raw)
            result["p99_ms_at_half_max"] = paced_p99(
                server.port, "/hit/bench.gif", result["rps"] / 2, min(seconds, 8)
            )
        return result


def measure_memory(redis_server: RedisServer) -> dict[str, float]:
    """Memory per distinct page (all time) and per page-day of a realistic site.

    10,000 pages with blog-like paths, and 365 days of 1,000 pages each, written by the
    store's own writers (those of an import: `Store.set_pages`, `Store.restore_day`),
    which put every path in the keys the hit script puts it in: the figure follows the
    layout the app keeps.
    """
    from hitcounter.store import DayRestore, Store

    client = redis_server.client()
    client.flushall()
    store = Store(client)
    # Load the store's scripts first: Redis's script cache is memory too, but not per page.
    store.set_pages("warmup", [("/", 1, 1)])
    pages = [f"/blog/2026/{n:05d}-a-post-title" for n in range(10_000)]
    base = client.info("memory")["used_memory"]
    rows = [(page, n + 1, n + 1) for n, page in enumerate(pages)]
    for start in range(0, len(rows), 1000):
        store.set_pages("mem", rows[start : start + 1000])
    after_pages = client.info("memory")["used_memory"]
    page_days = 0
    expire_at = int(time.time()) + 400 * 86400
    first_day = datetime.date(2026, 1, 1)
    for day in range(365):
        date = (first_day + datetime.timedelta(days=day)).isoformat()
        chosen = pages[(day * 37) % 9000 : (day * 37) % 9000 + 1000]
        restore = DayRestore(
            fields={}, pages=dict.fromkeys(chosen, 3), referrers={}, visitors=0, hll=None,
            expire_at=expire_at,
        )  # fmt: skip
        store.restore_day("mem", date, restore)
        page_days += len(chosen)
    after_days = client.info("memory")["used_memory"]
    # Each page's latest day (the returns index's last-day buckets) is written with its
    # days, but kept per page, for all time: it counts with the page, not its days.
    last_days = sum(int(client.memory_usage(key) or 0) for key in store.keys.all_last_days("mem"))
    return {
        "bytes_per_page": (after_pages - base + last_days) / len(pages),
        "bytes_per_page_day": (after_days - after_pages - last_days) / page_days,
        "page_days": page_days,
    }


def snippet_gzip_bytes() -> int:
    body = resources.files("hitcounter").joinpath("static", "counter.js").read_bytes()
    return len(gzip.compress(body, 9))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--out", default=str(HERE / "results" / "latest.json"))
    parser.add_argument("--only", nargs="*", default=list(APPS))
    parser.add_argument(
        "--memory-only",
        action="store_true",
        help="Measure only Redis memory per page and page-day (no wrk, nothing written).",
    )
    args = parser.parse_args()
    if args.memory_only:
        print(json.dumps(memory_only(), indent=2))
        return
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count()}, "seconds": args.seconds}
    with tempfile.TemporaryDirectory(prefix="hitcounter-bench-") as directory:
        redis_server = RedisServer(Path(directory))
        redis_server.start()
        try:
            rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in args.only}
            # The apps take turns, round after round, so a slow spell of the machine
            # falls on all of them; each figure is the median of its rounds.
            for round_number in range(1, args.rounds + 1):
                for name in args.only:
                    print(f"round {round_number}: measuring {name} ...", file=sys.stderr)
                    rounds[name].append(
                        measure_load(name, redis_server, args.seconds, args.workers)
                    )
            for name, measured in rounds.items():
                results[name] = {
                    key: statistics.median(m[key] for m in measured)
                    for key, value in measured[0].items()
                    if isinstance(value, int | float)
                }
                results[name]["rounds"] = measured
            results["memory"] = measure_memory(redis_server)
        finally:
            redis_server.stop()
    results["snippet_gzip_bytes"] = snippet_gzip_bytes()
    add_ratios(results)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(table(results))


def memory_only() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="hitcounter-bench-") as directory:
        redis_server = RedisServer(Path(directory))
        redis_server.start()
        try:
            return measure_memory(redis_server)
        finally:
            redis_server.stop()


def add_ratios(results: dict[str, Any]) -> None:
    ratios: dict[str, float] = {}
    for name in ("pixel", "beacon"):
        if name in results and "flask_incr" in results:
            ratios[f"{name}_cpu_vs_flask_incr"] = (
                results["flask_incr"]["cpu_us_per_hit"] / results[name]["cpu_us_per_hit"]
            )
        if name in results and "noop" in results:
            ratios[f"{name}_rps_vs_noop"] = results[name]["rps"] / results["noop"]["rps"]
            ratios[f"{name}_cpu_vs_noop"] = (
                results["noop"]["cpu_us_per_hit"] / results[name]["cpu_us_per_hit"]
            )
    results["ratios"] = ratios


def table(results: dict[str, Any]) -> str:
    lines = [
        "| app | req/s | p50 ms | p99 ms | CPU µs/hit (app + Redis) "
        "| Redis round trips/hit | Redis commands/hit |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in APPS:
        r = results.get(name)
        if not r:
            continue
        lines.append(
            f"| {name} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['cpu_us_per_hit']:.0f} "
            f"({r['app_cpu_us_per_hit']:.0f} + {r['redis_cpu_us_per_hit']:.0f}) | "
            f"{r['redis_round_trips_per_hit']:.2f} | {r['redis_commands_per_hit']:.1f} |"
        )
    lines.append("")
    for name in APPS:
        rounds = results.get(name, {}).get("rounds", [])
        if rounds:
            each = ", ".join(
                f"{r['cpu_us_per_hit']:.0f} µs ({r['connections_per_worker']})" for r in rounds
            )
            lines.append(f"- {name} rounds, CPU a hit (wrk's connections per worker): {each}")
    for key, value in results.get("ratios", {}).items():
        lines.append(f"- {key}: {value:.2f}x")
    if "pixel" in results:
        p99 = results["pixel"]["p99_ms_at_half_max"]
        lines.append(f"- pixel p99 at half its max throughput: {p99:.2f} ms")
    memory = results.get("memory", {})
    if memory:
        lines.append(f"- Redis memory per distinct page: {memory['bytes_per_page']:.0f} bytes")
        lines.append(f"- Redis memory per page-day: {memory['bytes_per_page_day']:.0f} bytes")
    lines.append(f"- snippet: {results['snippet_gzip_bytes']} bytes gzipped")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
