"""Shared fixtures: apps on fakeredis, a spawned Redis and Redis Cluster, a live server, Chromium.

Tests that need a real Redis or a real browser skip when there is none, unless
HITCOUNTER_REQUIRE_REDIS=1 or HITCOUNTER_REQUIRE_BROWSER=1 makes them fail instead (CI).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import BaseWSGIServer, make_server

from hitcounter import create_app
from hitcounter.store import RESP_PROTOCOL, Store, connect
from tests.cluster.nodes import RedisClusterNodes, redis_cluster_available, spawn_redis_cluster
from tests.spawn import wait_for_ping

ADMIN_TOKEN = "test-admin-token-0123456789abcdef0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# An ordinary desktop browser: headless Chromium's own User-Agent is (rightly) a bot.
BROWSER_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
BROWSER = {"User-Agent": BROWSER_UA}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def need(what: str, env: str) -> None:
    """Skip for lack of `what`, or fail when the environment variable demands it."""
    if os.environ.get(env) == "1":
        pytest.fail(f"{what} is required ({env}=1) but not available")
    pytest.skip(f"{what} is not available")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- fakeredis apps --------------------------------------------------------------------


@pytest.fixture
def fake_store() -> Store:
    return Store(fakeredis.FakeRedis(server=fakeredis.FakeServer(), protocol=RESP_PROTOCOL))


def make_app(store: Store, tmp_path: Path, **config: Any) -> Flask:
    base = {
        "TESTING": True,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "DATA_DIR": str(tmp_path / "data"),
        "SITE_CACHE_SECONDS": 0,
    }
    return create_app(base | config, store=store)


@pytest.fixture
def app(fake_store: Store, tmp_path: Path) -> Flask:
    return make_app(fake_store, tmp_path)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> Any:
    return app.test_cli_runner()


def add_site(client: FlaskClient, name: str = "blog", **settings: Any) -> str:
    """Register a site through the admin API; return its read token."""
    response = client.post("/api/v1/sites", json={"name": name, **settings}, headers=ADMIN)
    assert response.status_code == 201, response.get_json()
    return str(response.get_json()["token"])


# -- a real redis-server ---------------------------------------------------------------


@dataclass
class RedisServer:
    """A redis-server the tests spawned on a free port, with its own directory."""

    directory: Path
    port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def start(self) -> None:
        args = [
            shutil.which("redis-server") or "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
            *self.extra_args,
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_ping(self.client, self.port, self.process)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def spawn_redis(directory: Path, *extra_args: str) -> RedisServer:
    if shutil.which("redis-server") is None:
        need("redis-server", "HITCOUNTER_REQUIRE_REDIS")
    server = RedisServer(Path(directory), extra_args=list(extra_args))
    server.start()
    return server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="hitcounter-redis-") as directory:
        server = spawn_redis(Path(directory))
        yield server
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterNodes]:
    """Three primaries with a replica each, spawned once for the session."""
    if not redis_cluster_available():
        need("redis-server and redis-cli", "HITCOUNTER_REQUIRE_REDIS")
    with (
        tempfile.TemporaryDirectory(prefix="hitcounter-cluster-") as directory,
        spawn_redis_cluster(Path(directory)) as cluster,
    ):
        yield cluster


# Every test that takes `redis_url` (or `redis_app`) runs once per backend; `-m "not
# cluster"` leaves the cluster out.
REDIS_BACKENDS = ["single", pytest.param("cluster", marks=pytest.mark.cluster)]


@pytest.fixture(params=REDIS_BACKENDS)
def redis_url(request: pytest.FixtureRequest) -> str:
    """A HITCOUNTER_REDIS_URL for a spawned Redis or Redis Cluster, emptied for this test."""
    if request.param == "cluster":
        cluster: RedisClusterNodes = request.getfixturevalue("redis_cluster")
        cluster.flushall()
        return cluster.url
    server: RedisServer = request.getfixturevalue("redis_server")
    server.client().flushall()
    return server.url


def redis_client_for(url: str) -> Any:
    """A client for looking into the store at `url` (a single Redis or a cluster)."""
    return connect(url, timeout=5)


@pytest.fixture
def redis_app(redis_url: str, tmp_path: Path) -> Flask:
    return create_app(
        {
            "TESTING": True,
            "ADMIN_TOKEN": ADMIN_TOKEN,
            "REDIS_URL": redis_url,
            "SITE_CACHE_SECONDS": 0,
            "DATA_DIR": str(tmp_path / "data"),
        }
    )


# -- a live HTTP server ------------------------------------------------------------------


@dataclass
class LiveServer:
    server: BaseWSGIServer
    url: str

    def stop(self) -> None:
        self.server.shutdown()


def serve_in_thread(wsgi_app: Any) -> LiveServer:
    """Serve a WSGI app on a free loopback port from a background thread."""
    port = free_port()
    server = make_server("127.0.0.1", port, wsgi_app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return LiveServer(server, f"http://127.0.0.1:{port}")


@pytest.fixture
def live_server(app: Flask) -> Iterator[LiveServer]:
    """The `app` fixture served over real HTTP on loopback."""
    live = serve_in_thread(app)
    yield live
    live.stop()


# -- Chromium ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (its own browser download is not used)."""
    if not Path(CHROMIUM).exists():
        need("Chromium", "HITCOUNTER_REQUIRE_BROWSER")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need("Playwright", "HITCOUNTER_REQUIRE_BROWSER")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def browser_context(browser: Any) -> Iterator[Any]:
    """A fresh browser profile with an ordinary User-Agent."""
    context = browser.new_context(user_agent=BROWSER_UA)
    yield context
    context.close()
