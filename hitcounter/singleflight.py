"""Single flight: concurrent callers that need the same thing share one fetch of it.

A worker that starts (or a day that turns) finds its caches empty while a burst of
requests arrives: without this, each of them would fetch the site's settings or the day's
salt from Redis at once, each on a connection of its own. With it the first fetches and
the others wait for its answer, or its error: when Redis is away they fail together
after one timeout instead of one after another.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class _Flight(Generic[T]):
    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: T | None = None
        self.fetched = False
        self.error: Exception | None = None


class SingleFlight(Generic[T]):
    """Run `fetch` once for all callers asking for the same key at the same time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, _Flight[T]] = {}

    def do(self, key: Hashable, fetch: Callable[[], T]) -> T:
        with self._lock:
            flight = self._flights.get(key)
            leading = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leading:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            if not flight.fetched:
                # The fetching caller was interrupted (its greenlet killed): try again.
                return self.do(key, fetch)
            return flight.result  # type: ignore[return-value]
        try:
            flight.result = fetch()
            flight.fetched = True
            return flight.result
        except Exception as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()
