"""The embedded store: fakeredis in one process, served on loopback, saved to disk.

`hitcounter serve` without a Redis URL runs it in a process of its own
(`python -m hitcounter.embedded`), and its gunicorn workers and the CLI reach it over a
loopback socket. An app created with no Redis URL and no running store (for example
under `flask run`) hosts it in-process instead. Either way one process owns the data
directory, guarded by a lock file, and snapshots it periodically and on shutdown.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import fcntl
import json
import logging
import os
import pickle
import signal
import threading
import time
from pathlib import Path
from typing import IO, Any

import fakeredis
import redis

log = logging.getLogger("hitcounter.embedded")

SNAPSHOT_FILE = "store.snapshot"
ADDRESS_FILE = "store.json"
LOCK_FILE = "store.lock"
SNAPSHOT_VERSION = 1


class AlreadyRunning(Exception):
    """Another process owns this data directory."""


class EmbeddedStore:
    """A fakeredis server owning a data directory: loaded at start, saved as it runs."""

    def __init__(self, data_dir: str | os.PathLike[str], *, save_interval: float = 30) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file: IO[str] = open(self.data_dir / LOCK_FILE, "a+")  # noqa: SIM115
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self._lock_file.close()
            raise AlreadyRunning(str(self.data_dir)) from exc
        self.server = fakeredis.FakeServer()
        self._save_lock = threading.Lock()
        self._stop = threading.Event()
        self.load()
        self.tcp = fakeredis.TcpFakeServer(("127.0.0.1", 0))
        self.tcp.fake_server = self.server
        self.tcp.daemon_threads = True
        self.port = int(self.tcp.server_address[1])
        threading.Thread(target=self.tcp.serve_forever, name="embedded-store", daemon=True).start()
        self._write_address()
        self._saver = threading.Thread(
            target=self._save_periodically, args=(save_interval,), name="store-saver", daemon=True
        )
        self._saver.start()
        self.closed = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> fakeredis.FakeRedis:
        """An in-process client of this store (no socket in between)."""
        return fakeredis.FakeRedis(server=self.server)

    def load(self) -> int:
        path = self.data_dir / SNAPSHOT_FILE
        if not path.exists():
            return 0
        with path.open("rb") as f:
            # The snapshot is our own file in our own data directory.
            snapshot = pickle.load(f)
        client = self.client()
        now_ms = int(time.time() * 1000)
        loaded = 0
        for key, expire_at_ms, dumped in snapshot["keys"]:
            ttl = 0 if expire_at_ms is None else expire_at_ms - now_ms
            if ttl < 0:
                continue
            client.restore(key, ttl, dumped, replace=True)
            loaded += 1
        return loaded

    def save(self) -> int:
        """Write a snapshot atomically: to a temporary file, fsync'd, then renamed."""
        with self._save_lock:
            client = self.client()
            now_ms = int(time.time() * 1000)
            keys = []
            for key in client.scan_iter(count=1000):
                dumped = client.dump(key)
                pttl = client.pttl(key)
                if dumped is None or pttl == -2:
                    continue
                keys.append((key, None if pttl < 0 else now_ms + pttl, dumped))
            path = self.data_dir / SNAPSHOT_FILE
            tmp = path.with_suffix(".tmp")
            with tmp.open("wb") as f:
                pickle.dump({"version": SNAPSHOT_VERSION, "keys": keys}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            return len(keys)

    def _save_periodically(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.save()
            except Exception:
                log.exception("saving the embedded store failed")

    def _write_address(self) -> None:
        address = {"host": "127.0.0.1", "port": self.port, "pid": os.getpid()}
        tmp = self.data_dir / (ADDRESS_FILE + ".tmp")
        tmp.write_text(json.dumps(address))
        os.replace(tmp, self.data_dir / ADDRESS_FILE)

    def close(self) -> None:
        """Save, stop serving, and release the data directory."""
        if self.closed:
            return
        self.closed = True
        self._stop.set()
        self.save()
        self.tcp.shutdown()
        self.tcp.server_close()
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / ADDRESS_FILE).unlink()
        fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        self._lock_file.close()
        _open_stores.pop(self.data_dir, None)


# The embedded stores this process owns, by data directory (at most one each).
_open_stores: dict[Path, EmbeddedStore] = {}


def running_url(data_dir: str | os.PathLike[str]) -> str | None:
    """The URL of a store another process serves for this data directory, if it answers."""
    try:
        address = json.loads((Path(data_dir) / ADDRESS_FILE).read_text())
        client = redis.Redis(host=address["host"], port=address["port"], socket_timeout=1)
        client.ping()
        client.close()
    except (OSError, ValueError, KeyError, redis.RedisError):
        return None
    return f"redis://{address['host']}:{address['port']}/0"


def open_embedded(data_dir: str | os.PathLike[str], *, save_interval: float = 30) -> Any:
    """Return a client of the embedded store for data_dir, starting it here if needed."""
    path = Path(data_dir).resolve()
    if path in _open_stores:
        return _open_stores[path].client()
    url = running_url(path)
    if url is None:
        try:
            store = EmbeddedStore(path, save_interval=save_interval)
        except AlreadyRunning:
            url = wait_for_url(path)
        else:
            _open_stores[path] = store
            atexit.register(store.close)
            announce(path, save_interval)
            return store.client()
    # Timeouts are looser than for Redis: the in-process server polls its sockets.
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)


def wait_for_url(path: Path, seconds: float = 10) -> str:
    """Wait until a store serves this data directory; return its URL."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        url = running_url(path)
        if url:
            return url
        time.sleep(0.1)
    raise RuntimeError(f"another process holds {path / LOCK_FILE} but serves no store")


def announce(path: Path, save_interval: float) -> None:
    log.warning(
        "no HITCOUNTER_REDIS_URL set: using the embedded store (fakeredis, one process) "
        "in %s, saved every %g s and on shutdown; use Redis for production",
        path,
        save_interval,
    )


def main(argv: list[str] | None = None) -> None:
    """Serve the embedded store until SIGTERM or SIGINT, or until the parent exits."""
    parser = argparse.ArgumentParser(prog="python -m hitcounter.embedded")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--save-interval", type=float, default=30)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    store = EmbeddedStore(args.data_dir, save_interval=args.save_interval)
    announce(store.data_dir, args.save_interval)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    parent = os.getppid()
    while not stop.wait(0.5):
        if os.getppid() != parent:
            break  # whoever started us is gone; save and go too
    store.close()


if __name__ == "__main__":
    main()
