"""Waiting for the redis-server processes the tests spawn."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import redis


def wait_for_ping(
    client: Any, port: int, process: subprocess.Popen[bytes] | None = None, seconds: float = 10
) -> None:
    """Wait until a spawned redis-server answers PING; give up early if it exited."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if client().ping():
                return
        except redis.ConnectionError:
            if process is not None and process.poll() is not None:
                break
            time.sleep(0.05)
    raise RuntimeError(f"redis-server on port {port} did not start")
