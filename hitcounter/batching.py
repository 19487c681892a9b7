"""Group commit: hits that arrive while a Redis round trip is in flight share the next.

The first caller sends at once (under gevent, after one pass of the other ready requests,
which join it), so an idle server adds no wait. Callers arriving while a batch is in
flight queue up; when it returns, the first of them sends everything queued in one
pipeline. Every caller
returns only after its own hit was applied (or raises), so nothing is answered before it
is counted.

Sends never overlap and go out in the order callers arrived: the store numbers each
hit when its batch is sent, and replays of the spool rely on those numbers increasing
in the order Redis applies them (see spool.py).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# Sends a batch of script calls (keys, args) in one round trip; one result per call.
SendBatch = Callable[[Sequence[tuple[list[str], list[Any]]]], list[Any]]


def _held_lock() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


def _greenlet_yield() -> Callable[[], None] | None:
    """One pass of the other ready greenlets, where gevent runs this process's requests.

    Under threads there is nothing as cheap: time.sleep(0) is a system call that costs
    tens of microseconds here, and the GIL already lets other threads in.
    """
    gevent = sys.modules.get("gevent")
    if gevent is None or not gevent.monkey.is_module_patched("threading"):
        return None
    sleep: Callable[[float], None] = gevent.sleep
    return lambda: sleep(0)


@dataclass(slots=True)
class _Pending:
    keys: list[str]
    args: list[Any]
    # Released once, when this call is done or must lead: a plain lock is the cheapest
    # one-shot signal between threads (an Event builds a Condition for every call).
    ready: threading.Lock = field(default_factory=_held_lock)
    done: bool = False
    result: Any = None
    error: BaseException | None = None

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class GroupCommit:
    """Batch concurrent script calls of one process into shared round trips."""

    def __init__(self, send: SendBatch, *, max_batch: int = 64) -> None:
        self._send = send
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._busy = False
        self._yield = _greenlet_yield()

    def call(self, keys: list[str], args: list[Any]) -> Any:
        """Run one script call, batched with whatever else is waiting; return its result."""
        mine = _Pending(keys, args)
        with self._lock:
            self._queue.append(mine)
            leader = not self._busy
            self._busy = True
        if not leader:
            mine.ready.acquire()
            if mine.done:
                return mine.outcome()
            # Not done: the previous leader handed the next batch over to us.
        if self._yield is not None:
            # Let every request that is ready to run reach its own call before the batch
            # is taken, so it rides this round trip instead of waiting for the next one.
            # The load benchmark measured batches twice as large and about 10% less
            # server CPU per hit (one script call for all of them; fewer round trips).
            self._yield()
        self._lead(mine)
        return mine.outcome()

    def _lead(self, mine: _Pending) -> None:
        with self._lock:
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
        try:
            results = self._send([(p.keys, p.args) for p in batch])
            for pending, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    pending.error = result
                else:
                    pending.result = result
        except BaseException as exc:  # every caller of this batch must hear of it
            for pending in batch:
                pending.error = exc
        finally:
            for pending in batch:
                pending.done = True
            with self._lock:
                successor = self._queue[0] if self._queue else None
                self._busy = successor is not None
            if successor is not None:
                successor.ready.release()
            for pending in batch:
                if pending is not mine:
                    pending.ready.release()
