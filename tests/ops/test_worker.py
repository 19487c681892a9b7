"""The gevent worker takes only its share of connections (hitcounter/worker.py)."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import gevent.event
import psutil
import pytest

from hitcounter.worker import (
    AWAY,
    MAX_WAIT_SECONDS,
    RETRY_SECONDS,
    SHED_EVERY_SECONDS,
    AcceptPolicy,
    ConnectionBoard,
    _CountingPool,
)
from tests.conftest import BROWSER_UA, RedisServer
from tests.servers import Gunicorn, connections_per_worker, gunicorn, request


def test_the_board_hands_out_free_slots_and_takes_them_back() -> None:
    board = ConnectionBoard(slots=3)
    first, second = board.claim(), board.claim()
    assert (first, second) == (0, 1)
    assert first is not None and second is not None
    # A worker forked but not yet accepting is away: nobody leaves connections to it.
    assert board.fewest_elsewhere(first) is None
    board.publish(second, 0)
    assert board.fewest_elsewhere(first) == 0
    board.publish(second, 7)
    assert board.fewest_elsewhere(first) == 7
    board.publish(second, AWAY)  # leaving: it accepts no more
    assert board.fewest_elsewhere(first) is None
    board.release(second)
    assert board.fewest_elsewhere(first) is None
    assert board.claim() == 1  # the freed slot is reused
    assert board.claim() == 2
    assert board.claim() is None  # full: that worker runs unspread


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def policy_for(mine: int, theirs: int) -> tuple[AcceptPolicy, FakeClock, ConnectionBoard]:
    board = ConnectionBoard(slots=2)
    slot, other = board.claim(), board.claim()
    assert slot is not None and other is not None
    board.publish(other, theirs)
    clock = FakeClock()
    return AcceptPolicy(board, slot, lambda: mine, clock), clock, board


def test_a_worker_ahead_of_the_others_leaves_new_connections_to_them() -> None:
    assert not policy_for(mine=5, theirs=5)[0].should_wait()
    assert not policy_for(mine=6, theirs=5)[0].should_wait()  # one ahead is even enough
    assert policy_for(mine=7, theirs=5)[0].should_wait()


def test_it_takes_the_connection_itself_once_it_has_waited_long_enough() -> None:
    policy, clock, _ = policy_for(mine=20, theirs=0)
    waits = 0
    while policy.should_wait():
        waits += 1
        clock.now += RETRY_SECONDS  # the retry timer
    assert waits == round(MAX_WAIT_SECONDS / RETRY_SECONDS)
    # The next connection, a while later, is waited for again from the start.
    clock.now += 1.0
    assert policy.should_wait()


def test_each_wait_is_counted_from_its_own_start() -> None:
    policy, clock, _ = policy_for(mine=20, theirs=0)
    for _ in range(3):
        assert policy.should_wait()
        clock.now += 3 * RETRY_SECONDS  # the other worker took that one
    assert policy.should_wait()


def test_a_worker_well_ahead_closes_a_connection_a_few_times_a_second() -> None:
    policy, clock, board = policy_for(mine=16, theirs=0)
    assert policy.should_shed()
    assert not policy.should_shed()  # the board is looked at again only a while later
    clock.now += SHED_EVERY_SECONDS / 2
    assert not policy.should_shed()
    clock.now += 1.0
    assert policy.should_shed()
    assert not policy_for(mine=7, theirs=5)[0].should_shed()  # two ahead: even enough
    assert policy_for(mine=8, theirs=5)[0].should_shed()
    board.publish(1, AWAY)  # the other is leaving: nobody to hand connections to
    clock.now += 1.0
    assert not policy.should_shed()


def test_the_pool_publishes_its_count_when_a_connection_ends() -> None:
    """A connection's greenlet leaves gevent's pool through a link, not `discard`."""
    counts: list[int] = []
    pool = _CountingPool(10, lambda: counts.append(len(pool)))
    done = gevent.event.Event()
    pool.spawn(done.wait)
    pool.spawn(done.wait)
    done.set()
    assert pool.join(timeout=5)
    assert counts == [1, 2, 1, 0]


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        yield redis.url
    finally:
        redis.stop()


def serve_hits(redis_url: str, workers: int) -> Iterator[Gunicorn]:
    # One client sends every hit: no rate limit.
    env = {"HITCOUNTER_REDIS_URL": redis_url, "HITCOUNTER_RATE_LIMIT_PER_MINUTE": "0"}
    with gunicorn(env, workers=workers) as server:
        site = {"name": "spread", "dedupe_seconds": 0}  # every hit counts: the test sums them
        status, _ = request(server.url + "/api/v1/sites", "POST", site, admin=True)
        assert status == 201
        yield server


@pytest.fixture
def hit_server(redis_url: str) -> Iterator[Gunicorn]:
    yield from serve_hits(redis_url, workers=2)


@pytest.fixture
def one_worker_server(redis_url: str) -> Iterator[Gunicorn]:
    yield from serve_hits(redis_url, workers=1)


def burst(port: int, connections: int) -> list[socket.socket]:
    """Open connections all at once (as wrk or a proxy's pool does), then send a pixel
    hit on each and read its answer, keeping them open."""
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
    for n, sock in enumerate(sockets):
        sock.sendall(
            f"GET /hit/spread.gif?path=/p{n} HTTP/1.1\r\nHost: t\r\n"
            f"User-Agent: {BROWSER_UA}\r\n\r\n".encode()
        )
    kept = []
    for sock in sockets:
        sock.settimeout(10)
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200")
        # A worker well ahead of the other may close one (see the test at the end).
        if b"\r\nConnection: close\r\n" in answer:
            sock.close()
        else:
            kept.append(sock)
    return kept


@pytest.mark.integration
def test_a_burst_of_kept_alive_connections_is_spread_over_the_workers(
    hit_server: Gunicorn,
) -> None:
    # Both workers are up and idle, waiting in their event loops.
    for _ in range(10):
        assert request(hit_server.url + "/healthz")[0] == 200
    time.sleep(0.5)
    for _ in range(3):
        sockets = burst(hit_server.port, 32)
        try:
            more, fewer = connections_per_worker(hit_server.process.pid, hit_server.port)
            # Unspread, the first worker awake took nearly all: 31/1 was common.
            assert fewer >= 10, (fewer, more)
            assert fewer + more == len(sockets) >= 30
        finally:
            for sock in sockets:
                sock.close()
        time.sleep(0.5)  # the workers see the connections close


@pytest.mark.integration
def test_a_worker_added_later_gets_its_share_of_kept_alive_connections(
    one_worker_server: Gunicorn,
) -> None:
    """A proxy's pool, opened while one worker ran, spreads once a second one starts: the
    first answers some requests with "Connection: close" and the clients reconnect."""
    server = one_worker_server
    pool = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=10) for _ in range(16)]

    def hit_each() -> int:
        """A pixel hit on each connection (reopened if the last answer closed it); how
        many answers said "Connection: close"."""
        closed = 0
        for n, connection in enumerate(pool):
            connection.request(
                "GET", f"/hit/spread.gif?path=/p{n}", headers={"User-Agent": BROWSER_UA}
            )
            answer = connection.getresponse()
            assert answer.status == 200 and answer.read()
            closed += answer.getheader("Connection") == "close"
        return closed

    sent = closed = 0
    try:
        hit_each()
        sent += len(pool)
        assert connections_per_worker(server.process.pid, server.port) == [16]
        os.kill(server.process.pid, signal.SIGTTIN)  # gunicorn: one worker more
        deadline = time.monotonic() + 30
        while len(psutil.Process(server.process.pid).children()) < 2:
            assert time.monotonic() < deadline, "no second worker"
            time.sleep(0.1)
        split = [16]
        while time.monotonic() < deadline and (len(split) < 2 or split[1] < 6):
            closed += hit_each()
            sent += len(pool)
            split = connections_per_worker(server.process.pid, server.port)
        assert len(split) == 2 and split[1] >= 6, split
        assert 0 < closed < sent
        # Every hit was answered and counted once, closed connections or not.
        status, stats = request(server.url + "/api/v1/sites/spread/stats", admin=True)
        assert status == 200 and stats["hits"] == sent
    finally:
        for connection in pool:
            connection.close()
