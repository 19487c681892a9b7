"""Run the real service under gunicorn for integration tests, and talk to it."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psutil

from tests.conftest import ADMIN_TOKEN, BROWSER_UA, free_port


@dataclass
class Gunicorn:
    process: subprocess.Popen[bytes]
    url: str
    port: int
    log_path: str

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()


def wait_until_up(url: str, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("gunicorn exited while starting")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def gunicorn(env: dict[str, str], *, workers: int = 2) -> Iterator[Gunicorn]:
    """gunicorn with the project's configuration, on a free loopback port (settings such
    as HITCOUNTER_WORKER_CLASS come in `env`)."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "-c", "python:hitcounter.gunicorn_conf"]
    command += ["--bind", f"127.0.0.1:{port}", "--workers", str(workers)]
    command += ["hitcounter:create_app()"]
    # A data directory of its own: the hit spool lives there, and one server's spool
    # must never be replayed by another test's server (into another Redis).
    data_dir = tempfile.mkdtemp(prefix="hitcounter-data-")
    base = {"HITCOUNTER_ADMIN_TOKEN": ADMIN_TOKEN, "HITCOUNTER_DATA_DIR": data_dir}
    full_env = os.environ | base | env
    with tempfile.NamedTemporaryFile(prefix="gunicorn-", suffix=".log", delete=False) as log:
        process = subprocess.Popen(command, env=full_env, stdout=log, stderr=log)
    server = Gunicorn(process, f"http://127.0.0.1:{port}", port, log.name)
    try:
        wait_until_up(server.url, process)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(30)
        os.unlink(log.name)
        shutil.rmtree(data_dir, ignore_errors=True)


def connections_per_worker(master_pid: int, port: int) -> list[int]:
    """The client connections each worker of a gunicorn holds on `port`, most first.

    gunicorn's workers take connections from one listening socket as each gets to it; the
    project's gevent workers spread them (hitcounter/worker.py)."""
    counts = []
    for worker in psutil.Process(master_pid).children():
        try:
            held = worker.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        counts.append(sum(1 for c in held if c.status == "ESTABLISHED" and c.laddr.port == port))
    return sorted(counts, reverse=True)


def request(
    url: str,
    method: str = "GET",
    body: Any = None,
    headers: dict[str, str] | None = None,
    admin: bool = False,
) -> tuple[int, Any]:
    """One HTTP request; returns (status, parsed JSON or raw bytes)."""
    data = None if body is None else json.dumps(body).encode()
    all_headers = {"User-Agent": BROWSER_UA} | (headers or {})
    if admin:
        all_headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
    if data is not None:
        all_headers.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


class KeepAliveClient:
    """A client on one keep-alive connection, as a browser holds one."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def pixel(self, site: str, path: str) -> int:
        self.connection.request(
            "GET", f"/hit/{site}.gif?path={path}", headers={"User-Agent": BROWSER_UA}
        )
        response = self.connection.getresponse()
        response.read()
        return response.status

    def beacon(self, site: str, path: str) -> int:
        body = json.dumps({"site": site, "path": path})
        headers = {"User-Agent": BROWSER_UA, "Content-Type": "text/plain"}
        self.connection.request("POST", "/api/v1/hit", body=body, headers=headers)
        response = self.connection.getresponse()
        response.read()
        return response.status

    def close(self) -> None:
        self.connection.close()
