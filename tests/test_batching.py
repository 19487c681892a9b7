"""Group commit: concurrent calls share round trips, and each gets its own answer."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from hitcounter.batching import GroupCommit


class SlowEcho:
    """A send function that takes a while, so callers pile up behind it."""

    def __init__(self, fail_on: set[int] | None = None) -> None:
        self.batches: list[int] = []
        self.fail_on = fail_on or set()
        self.lock = threading.Lock()
        self.release = threading.Event()

    def __call__(self, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        self.release.wait(0.02)
        with self.lock:
            self.batches.append(len(calls))
        if any(args[0] in self.fail_on for _, args in calls):
            raise ConnectionError("redis went away")
        return [args[0] * 10 for _, args in calls]


def test_every_caller_gets_its_own_result_and_batches_form() -> None:
    send = SlowEcho()
    group = GroupCommit(send)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda n: group.call([f"k{n}"], [n]), range(400)))
    assert results == [n * 10 for n in range(400)]
    assert sum(send.batches) == 400
    assert max(send.batches) > 1  # callers shared round trips
    assert len(send.batches) < 400


def test_a_lone_caller_is_sent_at_once() -> None:
    send = SlowEcho()
    send.release.set()
    group = GroupCommit(send)
    assert [group.call(["k"], [n]) for n in range(3)] == [0, 10, 20]
    assert send.batches == [1, 1, 1]


def test_a_failed_round_trip_fails_every_caller_in_it_and_no_other() -> None:
    send = SlowEcho(fail_on={7})
    group = GroupCommit(send, max_batch=1)

    def call(n: int) -> Any:
        try:
            return group.call(["k"], [n])
        except ConnectionError:
            return "failed"

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(20)))
    assert results[7] == "failed"
    assert [r for i, r in enumerate(results) if i != 7] == [n * 10 for n in range(20) if n != 7]


def test_per_call_errors_reach_only_their_caller() -> None:
    def send(calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        return [ValueError("bad") if args[0] == 1 else args[0] for _, args in calls]

    group = GroupCommit(send)
    assert group.call(["k"], [0]) == 0
    with pytest.raises(ValueError):
        group.call(["k"], [1])


# Run under gevent in a process of its own: monkey-patching would change this one.
GEVENT_SCRIPT = r"""
from gevent import monkey

monkey.patch_all()
import time

import gevent

from hitcounter.batching import MAX_GATHER_SECONDS, GroupCommit

batches = []


def send(calls):
    batches.append(len(calls))
    gevent.sleep(0.001)  # the round trip: the socket waits, other greenlets run
    return [args[0] * 10 for _, args in calls]


group = GroupCommit(send)
# Twenty requests ready at once: the first leads, and waits for the other nineteen.
results = [g.get() for g in [gevent.spawn(group.call, [], [n]) for n in range(20)]]
assert results == [n * 10 for n in range(20)], results
assert batches == [20], batches

# Callers arriving while a batch is in flight wait (on gevent Waiters) and go together
# in the next one, led by the first of them once the first batch is back.
batches.clear()


def late_callers():
    gevent.sleep(0.0003)  # the first batch is on its round trip
    return [gevent.spawn(group.call, [], [n]) for n in range(100, 105)]


first = [gevent.spawn(group.call, [], [n]) for n in range(5)]
late = gevent.spawn(late_callers).get()
assert [g.get() for g in first + late] == [n * 10 for n in [*range(5), *range(100, 105)]]
assert batches == [5, 5], batches

# A flood that never lets the loop go idle: the leader still sends, after the bound.
flooding = True


def flood():
    while flooding:
        gevent.sleep(0)


flooder = gevent.spawn(flood)
gevent.sleep(0)
started = time.perf_counter()
assert group.call([], [7]) == 70
waited = time.perf_counter() - started
flooding = False
flooder.join()
# Bounded by the gather timeout, which gevent checks between runs of callbacks (at its
# switch interval, 5 ms): never the flood's whole length.
assert MAX_GATHER_SECONDS <= waited < 0.5, waited
print("ok", batches)
"""


def test_under_gevent_a_leader_gathers_every_ready_request_but_never_waits_long() -> None:
    done = subprocess.run(
        [sys.executable, "-c", GEVENT_SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok")
