"""The hit spool: hits accepted while Redis cannot take them, kept on disk until it can.

Each worker process is a *writer* with a random id and numbers its hits 1, 2, 3... in
the order it sends them (see `Store._send_hits`). When a round trip fails, whether
Redis was unreachable or the answer timed out (the hits may or may not have been
applied), the batch is appended to the worker's spool file and fsync'd, and only then
answered as accepted. While that file holds anything, later hits are appended behind
it, so they still reach Redis in sequence order. A `Replayer` thread sends the file's
hits again in order when Redis answers; hits.lua skips any hit whose number is not above
the last one applied for its writer, so sending a hit twice never counts it twice.

A spool file is locked (flock) by its writer for as long as the process lives. A file
whose lock can be taken belongs to a process that is gone (stopped, reloaded, recycled
or killed): another worker adopts it and replays it under the dead writer's id.

Format: one hit per line, `crc32 json([keys, args])`. A line cut short by a crash was
never fsync'd, so never acknowledged: it fails its checksum and is skipped.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import secrets
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hitcounter import metrics
from hitcounter.errors import StoreUnavailable

log = logging.getLogger("hitcounter.spool")

Call = tuple[list[str], list[Any]]
# Sends calls to Redis in one go, in order; one result (or exception) per call. Raises
# StoreUnavailable when the round trip fails.
SendCalls = Callable[[Sequence[Call]], list[Any]]

SUFFIX = ".spool"
# Hits per replay round trip: big enough to drain quickly, small enough to stay well
# inside the socket timeout.
REPLAY_BATCH = 256
# How often the hit path looks for files of dead workers (a directory listing).
ADOPT_EVERY_SECONDS = 5.0
# Replay retries back off up to this; Redis coming back is noticed within it.
MAX_BACKOFF_SECONDS = 1.0


class SpoolFull(StoreUnavailable):
    """Redis cannot take the hit and the spool has no room left for it."""

    code = "spool_full"


def new_writer_id() -> str:
    """A writer id: the UTC date it started (the applied hash is kept per day), then random."""
    return f"{datetime.now(UTC).date().isoformat()}.{secrets.token_hex(6)}"


def writer_day(writer: str) -> str:
    """The UTC date in a writer id."""
    return writer.split(".", 1)[0]


def encode(call: Call) -> bytes:
    body = json.dumps(call, separators=(",", ":")).encode()
    return b"%08x %s\n" % (zlib.crc32(body), body)


def decode(line: bytes) -> Call | None:
    """One spooled hit, or None for a line that is cut short or damaged."""
    crc, _, body = line.partition(b" ")
    try:
        if len(crc) != 8 or int(crc, 16) != zlib.crc32(body):
            return None
        keys, args = json.loads(body)
    except ValueError:
        return None
    return list(keys), list(args)


class SpoolFile:
    """One spool file: hits appended at the end, replayed from the head.

    `confirmed` is the offset up to which Redis has applied (or skipped as applied) the
    hits; once it reaches the end the file is removed.
    """

    def __init__(self, path: Path, fd: int, size: int) -> None:
        self.path = path
        self.fd = fd
        self.size = size
        self.confirmed = 0

    @property
    def pending(self) -> bool:
        return self.size > self.confirmed

    def take(self, limit: int) -> list[tuple[Call | None, int]]:
        """Read up to `limit` hits after the confirmed offset, each with its end offset."""
        out: list[tuple[Call | None, int]] = []
        offset = self.confirmed
        while len(out) < limit and offset < self.size:
            chunk = os.pread(self.fd, min(1 << 18, self.size - offset), offset)
            if not chunk:
                break
            # The last piece is either empty (the chunk ended on a line) or the start of a
            # line the next read completes, unless it is the file's cut-short tail.
            complete = chunk.split(b"\n")[:-1]
            if not complete:
                out.append((None, self.size))  # a tail without newline: cut short
                break
            for line in complete:
                offset += len(line) + 1
                out.append((decode(line), offset))
                if len(out) >= limit:
                    break
        return out

    def remove(self) -> None:
        """Delete the file (while still holding its lock) and close it."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self.fd)
        self.fd = -1


class Spool:
    """This worker's spool file, and the files of dead workers it adopted."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.writer = new_writer_id()
        self.lock = threading.Lock()
        self.own: SpoolFile | None = None
        self.adopted: list[SpoolFile] = []
        self._next_adopt_scan = 0.0

    @property
    def pending(self) -> bool:
        """True while hits of this writer wait in the spool (new ones must queue behind)."""
        own = self.own
        return own is not None and own.pending

    def append_if_pending(self, calls: Sequence[Call]) -> bool:
        """Queue the calls behind those waiting, if any; False if none wait (send them)."""
        with self.lock:
            if not self.pending:
                return False
            self._append(calls)
            return True

    def append(self, calls: Sequence[Call]) -> None:
        """Write the calls to this worker's spool and fsync; raise SpoolFull if no room."""
        with self.lock:
            self._append(calls)

    def _append(self, calls: Sequence[Call]) -> None:
        data = b"".join(encode(call) for call in calls)
        try:
            own = self.own or self._create()
        except OSError as exc:
            # A read-only or missing volume: no spool, so the hits are refused (503).
            raise SpoolFull(f"the hit spool cannot be created: {exc}") from exc
        if own.size + len(data) > self.max_bytes:
            raise SpoolFull("the store cannot be reached and the hit spool is full")
        try:
            written = os.write(own.fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, "short write")
            os.fsync(own.fd)
        except OSError as exc:
            # Leave no partial line behind: the next append must start on a line.
            os.ftruncate(own.fd, own.size)
            raise SpoolFull(f"the hit spool cannot be written: {exc}") from exc
        own.size += len(data)
        metrics.spool_size(self._bytes())

    def _create(self) -> SpoolFile:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self.writer}{SUFFIX}"
        # Lock under a name adopters do not look at, then rename: they must never see
        # (and take) a live worker's file in the moment before it is locked.
        temporary = path.with_suffix(".new")
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(temporary, path)
        self.own = SpoolFile(path, fd, 0)
        return self.own

    def adopt_orphans(self) -> int:
        """Take over the spool files of processes that are gone; return how many."""
        self._next_adopt_scan = time.monotonic() + ADOPT_EVERY_SECONDS
        try:
            candidates = sorted(self.directory.glob(f"*{SUFFIX}"))
        except OSError:
            return 0
        taken = 0
        for path in candidates:
            if self.own is not None and path == self.own.path:
                continue
            if any(f.path == path for f in self.adopted):
                continue
            adopted = self._try_adopt(path)
            if adopted is not None:
                with self.lock:
                    self.adopted.append(adopted)
                taken += 1
        if taken:
            metrics.SPOOL_ADOPTED.inc(taken)
            metrics.spool_size(self._bytes())
        return taken

    def adopt_due(self) -> bool:
        """True when it is time for another look for dead workers' files."""
        return time.monotonic() >= self._next_adopt_scan

    def _try_adopt(self, path: Path) -> SpoolFile | None:
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # its writer is alive
            return None
        stat = os.fstat(fd)
        if stat.st_nlink == 0:
            os.close(fd)  # drained and removed by its last owner in the meantime
            return None
        log.warning(
            "adopting the hit spool %s (%d bytes) of a worker that is gone", path.name, stat.st_size
        )
        adopted = SpoolFile(path, fd, stat.st_size)
        if not adopted.pending:
            adopted.remove()
            return None
        return adopted

    def waiting(self) -> list[SpoolFile]:
        """The files with hits to replay: adopted ones first (they are older)."""
        with self.lock:
            files = [*self.adopted, *([self.own] if self.own is not None else [])]
            return [f for f in files if f.pending]

    def confirm(self, spool_file: SpoolFile, offset: int) -> None:
        """Mark hits up to `offset` as applied; remove the file once all are."""
        with self.lock:
            spool_file.confirmed = offset
            if spool_file.pending:
                return
            spool_file.remove()
            if spool_file is self.own:
                self.own = None
            else:
                self.adopted.remove(spool_file)
        metrics.spool_size(self._bytes())

    def _bytes(self) -> int:
        files = [*self.adopted, *([self.own] if self.own is not None else [])]
        return sum(f.size - f.confirmed for f in files)


def retriable(result: Any) -> bool:
    """True for a call Redis did not run and may run later (the store marks those)."""
    return isinstance(result, StoreUnavailable)


class Replayer:
    """A background thread that sends spooled hits to Redis, in order, until none wait.

    It runs only while something waits, and is woken by the hit path when a batch is
    spooled or a dead worker's file is adopted.
    """

    def __init__(self, spool: Spool, send: SendCalls, *, batch: int = REPLAY_BATCH) -> None:
        self.spool = spool
        self.send = send
        self.batch = batch
        self._lock = threading.Lock()
        self._running = False
        self.idle = threading.Event()
        self.idle.set()

    def wake(self) -> None:
        """Make sure the thread runs."""
        with self._lock:
            if self._running:
                return
            self._running = True
            self.idle.clear()
        threading.Thread(target=self._run, name="hitcounter-replayer", daemon=True).start()

    def _run(self) -> None:
        backoff = 0.05
        while True:
            with self._lock:
                files = self.spool.waiting()
                if not files:
                    self._running = False
                    self.idle.set()
                    return
            try:
                for spool_file in files:
                    self.replay_some(spool_file)
                backoff = 0.05
            except StoreUnavailable:
                time.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            except Exception:
                log.exception("replaying spooled hits failed")
                time.sleep(MAX_BACKOFF_SECONDS)

    def replay_some(self, spool_file: SpoolFile) -> None:
        """Send the next batch of one file; confirm what Redis applied or had applied."""
        taken = self.spool_take(spool_file)
        if not taken:
            return
        calls = [call for call, _ in taken if call is not None]
        results = self.send(calls) if calls else []
        confirmed = spool_file.confirmed
        outcomes = iter(results)
        for call, end in taken:
            if call is None:
                log.error("skipping a damaged line in the hit spool %s", spool_file.path.name)
                metrics.SPOOL_REPLAYED.labels("damaged").inc()
                confirmed = end
                continue
            result = next(outcomes)
            if retriable(result):
                # Not run: stop here and send it again later, in order.
                self.spool.confirm(spool_file, confirmed)
                raise StoreUnavailable(f"redis cannot run spooled hits yet: {result}")
            if isinstance(result, Exception):
                log.error("a spooled hit failed in Redis and is skipped: %s", result)
                metrics.SPOOL_REPLAYED.labels("failed").inc()
            else:
                reason = result[1].decode() if isinstance(result[1], bytes) else result[1]
                metrics.SPOOL_REPLAYED.labels(
                    "already_applied" if reason == "replayed" else "applied"
                ).inc()
            confirmed = end
        self.spool.confirm(spool_file, confirmed)

    def spool_take(self, spool_file: SpoolFile) -> list[tuple[Call | None, int]]:
        with self.spool.lock:
            if spool_file.fd < 0:
                return []
            return spool_file.take(self.batch)


def spool_from_config(config: Mapping[str, Any]) -> Spool | None:
    """The worker's spool as configured (SPOOL_DIR, SPOOL_MAX_BYTES), or None when off."""
    max_bytes = int(config.get("SPOOL_MAX_BYTES") or 0)
    if max_bytes <= 0:
        return None
    directory = config.get("SPOOL_DIR") or os.path.join(str(config["DATA_DIR"]), "spool")
    return Spool(directory, max_bytes)
