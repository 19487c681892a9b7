"""The gevent worker takes only its share of connections (hitcounter/worker.py)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hitcounter.worker import (
    AWAY,
    MAX_WAIT_SECONDS,
    RETRY_SECONDS,
    AcceptPolicy,
    ConnectionBoard,
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


@pytest.fixture
def hit_server(tmp_path: Path) -> Iterator[Gunicorn]:
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        # One client sends every hit: no rate limit.
        env = {"HITCOUNTER_REDIS_URL": redis.url, "HITCOUNTER_RATE_LIMIT_PER_MINUTE": "0"}
        with gunicorn(env, workers=2) as server:
            status, _ = request(
                server.url + "/api/v1/sites", "POST", {"name": "spread"}, admin=True
            )
            assert status == 201
            yield server
    finally:
        redis.stop()


def burst(port: int, connections: int) -> list[socket.socket]:
    """Open connections all at once (as wrk or a proxy's pool does), then send a pixel
    hit on each and read its answer, keeping them open."""
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
    for n, sock in enumerate(sockets):
        sock.sendall(
            f"GET /hit/spread.gif?path=/p{n} HTTP/1.1\r\nHost: t\r\n"
            f"User-Agent: {BROWSER_UA}\r\n\r\n".encode()
        )
    for sock in sockets:
        sock.settimeout(10)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    return sockets


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
            assert fewer + more == 32
        finally:
            for sock in sockets:
                sock.close()
        time.sleep(0.5)  # the workers see the connections close
