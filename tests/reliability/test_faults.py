"""Faults under steady load, on loopback: Redis stopped, killed or slowed; gunicorn
stopped, reloaded, recycled or a worker killed. Every test checks A <= R <= A + U (A
acknowledged, U ambiguous, R counted in Redis once the spools drained); the goal, met
here, is R = A.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from tests.conftest import RedisServer, spawn_redis
from tests.reliability.harness import (
    DelayProxy,
    HitLoad,
    Tally,
    replay_metrics,
    report,
    wait_for_drain,
)
from tests.servers import Gunicorn, gunicorn, request

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SITE = "rel"


def aof_redis(directory: Path, fsync: str = "always") -> RedisServer:
    directory.mkdir(exist_ok=True)
    return spawn_redis(directory, "--appendonly", "yes", "--appendfsync", fsync)


@contextmanager
def service(
    tmp_path: Path, redis_url: str, *, workers: int = 2, **env: str
) -> Iterator[tuple[Gunicorn, Path]]:
    """gunicorn on `redis_url` with a spool directory, and the test's site registered."""
    spool = tmp_path / "spool"
    full_env = {
        "HITCOUNTER_REDIS_URL": redis_url,
        "HITCOUNTER_RATE_LIMIT_PER_MINUTE": "0",  # one address sends everything
        "HITCOUNTER_DATA_DIR": str(tmp_path / "data"),
        "HITCOUNTER_SPOOL_DIR": str(spool),
        "HITCOUNTER_LOG_LEVEL": "WARNING",
        **env,
    }
    with gunicorn(full_env, workers=workers) as server:
        # Its settings come with it: a worker that read the site a moment before a later
        # change would keep the old settings for up to 5 s (the site cache), and count
        # this load's repeated views as duplicates. (409: an earlier service of the test
        # made it, the same way.)
        body = {"name": SITE, "dedupe_seconds": 0}
        status, _ = request(server.url + "/api/v1/sites", "POST", body, admin=True)
        assert status in (201, 409)
        yield server, spool


def check(
    name: str, tally: Tally, counted: int, replays: dict[str, float], *, loss_allowed: int = 0
) -> None:
    report(name, tally, counted, replayed=replays)
    assert tally.acknowledged > 0
    assert tally.acknowledged - loss_allowed <= counted <= tally.acknowledged + tally.ambiguous


@pytest.mark.parametrize("recycle", [False, True], ids=["steady", "max_requests"])
def test_redis_stopped_for_five_seconds(tmp_path: Path, recycle: bool) -> None:
    redis = aof_redis(tmp_path / "redis")
    # Recycling every ~600 requests (about 3 s per worker here): workers exit during the
    # outage with hits in their spools, and their successors adopt the files.
    env = {"GUNICORN_CMD_ARGS": "--max-requests 600 --max-requests-jitter 100"} if recycle else {}
    try:
        with (
            service(tmp_path, redis.url, **env) as (server, spool),
            HitLoad(server.port, SITE) as load,
        ):
            time.sleep(1)
            redis.stop()
            time.sleep(5)
            redis.start()
            time.sleep(1)
            tally = load.stop()
            counted = wait_for_drain(spool, redis.client(), SITE)
            replays = replay_metrics(server.url)
        check(f"redis stopped 5 s{' (max_requests)' if recycle else ''}", tally, counted, replays)
        assert counted == tally.acknowledged
        assert tally.spooled > 0
    finally:
        redis.stop()


@pytest.mark.parametrize("fsync", ["always", "everysec"])
def test_redis_killed(tmp_path: Path, fsync: str) -> None:
    redis = aof_redis(tmp_path / "redis", fsync)
    try:
        with service(tmp_path, redis.url) as (server, spool), HitLoad(server.port, SITE) as load:
            started = time.monotonic()
            time.sleep(1.5)
            assert redis.process is not None
            redis.process.kill()
            redis.process.wait(10)
            time.sleep(1)
            redis.start()
            time.sleep(1)
            tally = load.stop()
            counted = wait_for_drain(spool, redis.client(), SITE)
            replays = replay_metrics(server.url)
        # everysec loses at most the last second of writes on a crash of the machine; a
        # killed process loses nothing the kernel already has. Allow one second of load.
        one_second = int(tally.acknowledged / (time.monotonic() - started)) + 1
        check(
            f"redis SIGKILL, appendfsync {fsync}",
            tally,
            counted,
            replays,
            loss_allowed=0 if fsync == "always" else one_second,
        )
        if fsync == "always":
            assert counted == tally.acknowledged
    finally:
        redis.stop()


def test_redis_slower_than_the_timeout(tmp_path: Path) -> None:
    redis = aof_redis(tmp_path / "redis")
    proxy = DelayProxy(redis.port)
    try:
        with service(tmp_path, proxy.url) as (server, spool), HitLoad(server.port, SITE) as load:
            time.sleep(1)
            proxy.delay = 0.8  # past REDIS_TIMEOUT (0.5 s): every answer comes too late
            time.sleep(1.5)
            # Then only scripts are slow: connections open, and every batch sent (the
            # replays included) reaches Redis after its sender gave up on it.
            proxy.only = b"EVALSHA"
            time.sleep(2)
            proxy.delay = 0.0
            time.sleep(1)
            tally = load.stop()
            counted = wait_for_drain(spool, redis.client(), SITE)
            replays = replay_metrics(server.url)
        check("redis slower than the timeout (0.8 s per chunk)", tally, counted, replays)
        assert counted == tally.acknowledged  # no double counts, nothing lost
        # Late batches did reach Redis: their replays were recognised and skipped.
        assert replays.get("already_applied", 0) > 0
        assert tally.spooled > 0
    finally:
        proxy.close()
        redis.stop()


def workers_of(server: Gunicorn) -> list[int]:
    return [child.pid for child in psutil.Process(server.process.pid).children()]


@pytest.mark.parametrize("fault", ["SIGHUP", "worker SIGKILL"])
def test_gunicorn_signals_under_load(tmp_path: Path, fault: str) -> None:
    redis = aof_redis(tmp_path / "redis")
    try:
        with service(tmp_path, redis.url) as (server, spool), HitLoad(server.port, SITE) as load:
            time.sleep(1)
            if fault == "SIGHUP":
                server.process.send_signal(signal.SIGHUP)
            else:
                os.kill(workers_of(server)[0], signal.SIGKILL)
            time.sleep(2)
            tally = load.stop()
            counted = wait_for_drain(spool, redis.client(), SITE)
            replays = replay_metrics(server.url)
        check(f"gunicorn {fault}", tally, counted, replays)
    finally:
        redis.stop()


def test_gunicorn_stopped_during_an_outage_loses_nothing(tmp_path: Path) -> None:
    """SIGTERM while hits wait in the spools: the next server adopts and replays them."""
    redis = aof_redis(tmp_path / "redis")
    tally = Tally()
    try:
        with service(tmp_path, redis.url) as (server, spool), HitLoad(server.port, SITE) as load:
            time.sleep(1)
            redis.stop()
            time.sleep(2)
            server.process.send_signal(signal.SIGTERM)
            server.process.wait(30)
            tally.add(load.stop())
        left = list(spool.glob("*.spool"))
        assert left, "the stopped workers left their spooled hits on disk"
        redis.start()
        with service(tmp_path, redis.url) as (server, _):
            counted = wait_for_drain(spool, redis.client(), SITE)
            replays = replay_metrics(server.url)
            replays = replay_metrics(server.url)
        check("gunicorn SIGTERM during a Redis outage", tally, counted, replays)
        assert counted == tally.acknowledged
    finally:
        redis.stop()
