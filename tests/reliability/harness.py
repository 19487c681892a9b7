"""Tools for fault tests: steady hit load with every answer recorded, a delaying TCP proxy."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hitcounter.store import Keys
from tests.conftest import BROWSER_UA, free_port


@dataclass
class Tally:
    """What the clients saw. A: acknowledged (200); U: ambiguous (the request may have
    reached the server, but no answer came); refused: a clear "not kept" (503, or the
    connection refused before anything was sent)."""

    acknowledged: int = 0
    ambiguous: int = 0
    refused: int = 0
    spooled: int = 0  # acknowledged with X-Hitcounter: spooled
    statuses: Counter[int] = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)  # time to each answer

    def latency(self) -> dict[str, float]:
        """Median, 99th percentile and slowest answer, in milliseconds."""
        if not self.seconds:
            return {}
        ordered = sorted(self.seconds)
        pick = lambda q: round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)  # noqa: E731
        return {"p50_ms": pick(0.5), "p99_ms": pick(0.99), "max_ms": pick(1.0)}

    def add(self, other: Tally) -> None:
        self.acknowledged += other.acknowledged
        self.ambiguous += other.ambiguous
        self.refused += other.refused
        self.spooled += other.spooled
        self.statuses.update(other.statuses)
        self.seconds.extend(other.seconds)


class HitLoad:
    """Threads sending pixel hits at a steady rate, each on a keep-alive connection."""

    def __init__(self, port: int, site: str, *, threads: int = 4, interval: float = 0.01) -> None:
        self.port = port
        self.site = site
        self.threads = threads
        self.interval = interval
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._tallies: list[Tally] = []

    def __enter__(self) -> HitLoad:
        for number in range(self.threads):
            tally = Tally()
            self._tallies.append(tally)
            worker = threading.Thread(target=self._send, args=(number, tally), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> Tally:
        self._stop.set()
        for worker in self._workers:
            worker.join(30)
        total = Tally()
        for tally in self._tallies:
            total.add(tally)
        return total

    def _send(self, number: int, tally: Tally) -> None:
        connection: http.client.HTTPConnection | None = None
        sent = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            next_at += self.interval
            if connection is None:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                try:
                    connection.connect()
                except OSError:
                    # Nothing was sent: no server listening (it is restarting).
                    tally.refused += 1
                    connection = None
                    time.sleep(self.interval)
                    continue
            path = f"/p/{number}/{sent % 20}"
            sent += 1
            started = time.monotonic()
            try:
                connection.request(
                    "GET", f"/hit/{self.site}.gif?path={path}", headers={"User-Agent": BROWSER_UA}
                )
                response = connection.getresponse()
                response.read()
                tally.seconds.append(time.monotonic() - started)
            except (OSError, http.client.HTTPException):
                # Sent, but no answer: the server may or may not have kept the hit.
                tally.ambiguous += 1
                connection.close()
                connection = None
                continue
            tally.statuses[response.status] += 1
            if response.status == 200:
                tally.acknowledged += 1
                if response.getheader("X-Hitcounter") == "spooled":
                    tally.spooled += 1
            else:
                tally.refused += 1
            if response.getheader("Connection", "").lower() == "close":
                connection.close()
                connection = None
            time.sleep(max(0.0, next_at - time.monotonic()))


def counted_hits(client: Any, site: str) -> int:
    """The site's all-time counted hits, R, read from Redis."""
    return int(client.hget(Keys().totals(site), "hits") or 0)


def wait_for_drain(spool_dir: Path, client: Any, site: str, seconds: float = 30) -> int:
    """Wait until no spool file is left and the count stands still; return the count."""
    deadline = time.monotonic() + seconds
    last = -1
    while time.monotonic() < deadline:
        now = counted_hits(client, site)
        if not list(spool_dir.glob("*.spool")) and now == last:
            return now
        last = now
        time.sleep(0.5)
    raise AssertionError(f"the spool did not drain: {sorted(spool_dir.iterdir())}")


def report(name: str, tally: Tally, counted: int, **more: Any) -> None:
    """Print one fault's figures; also append them to $HITCOUNTER_RELIABILITY_REPORT."""
    figures = {
        "fault": name,
        "acknowledged": tally.acknowledged,
        "ambiguous": tally.ambiguous,
        "refused": tally.refused,
        "spooled": tally.spooled,
        "counted": counted,
        "lost": max(0, tally.acknowledged - counted),
        "statuses": dict(tally.statuses),
        **tally.latency(),
        **more,
    }
    print(json.dumps(figures))
    target = os.environ.get("HITCOUNTER_RELIABILITY_REPORT")
    if target:
        with open(target, "a", encoding="utf-8") as f:
            f.write(json.dumps(figures) + "\n")


class DelayProxy:
    """A TCP proxy on loopback that can hold each client-to-server chunk for `delay` s.

    Delayed commands still reach Redis after the client has given up on them: exactly
    the ambiguous timeout a retry must not count twice.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.delay = 0.0
        # Delay only chunks holding these bytes (say b"EVALSHA"), letting connection
        # handshakes through, so every batch sent becomes a late one.
        self.only: bytes | None = None
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", free_port()))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def close(self) -> None:
        self._closed = True
        self.listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), 5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, delayed: bool) -> None:
        try:
            while True:
                chunk = source.recv(65536)
                if not chunk:
                    break
                if delayed and self.delay and (self.only is None or self.only in chunk):
                    time.sleep(self.delay)
                target.sendall(chunk)
            if delayed:
                # The client hung up: pass the end on after its last (late) bytes and let
                # Redis run them and close; the other pump then closes both sides.
                target.shutdown(socket.SHUT_WR)
                return
        except OSError:
            pass
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def replay_metrics(url: str) -> dict[str, float]:
    """The server's spool replay counters by result, summed over its workers."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith('hitcounter_spool_replayed_total{result="'):
            labels, value = line.rsplit(" ", 1)
            out[labels.split('"')[1]] = float(value)
    return out
