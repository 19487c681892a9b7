"""gunicorn's gevent worker, taking no more than its share of kept-alive connections.

gunicorn's workers accept connections from one shared socket, each as it gets to it. A
hit waits on Redis, so a worker serving hits is back in its event loop almost at once and
can take nearly all of a burst of new connections before another worker wakes: wrk's 32,
opened together, fell 31/1 on two workers in three of five benchmark rounds, and a proxy
opening its upstream pool does the same. Those connections stay for thousands of
requests; the worker holding one sends a round trip per hit (nothing to batch it with)
while the other carries everything, so a hit cost 10-25% more server CPU in those rounds.

So each worker publishes how many connections it holds on a board the arbiter shares
(anonymous shared memory, one slot per worker). A worker holding more than one above
the fewest of the others leaves a pending connection to them for a millisecond, and
takes it itself once it has waited MAX_WAIT_SECONDS (the others may be busy or stuck):
a new connection waits at most that long, and only while the workers are uneven. A
worker still starting or already leaving shows as away, so nobody waits for it.

Spreading at accept time still leaves workers uneven when the others could not take
their share then: a burst arriving while they were still closing a previous client's
connections (16 opened just after wrk's 32 closed fell 16/0 in two of eight tries), or
a worker started later (after a crash, or `kill -TTIN`) that nobody connects to. So a worker holding
more than SHED_SLACK above the fewest elsewhere answers one request with "Connection:
close", at most one every SHED_EVERY_SECONDS: its client reconnects, and the accept
policy leaves the new connection to a worker holding fewer.
"""

from __future__ import annotations

import mmap
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import gevent
from gevent.pool import Pool
from gevent.server import StreamServer
from gunicorn.sock import ssl_context
from gunicorn.workers.ggevent import GeventWorker

# A worker holding more than this many connections above the fewest elsewhere leaves
# new ones to the others (one above is as even as an odd number allows).
SLACK = 1
RETRY_SECONDS = 0.001
MAX_WAIT_SECONDS = 0.005
# Closing a kept-alive connection costs its client a reconnect: only when clearly uneven
# (accepting keeps workers within SLACK), and a few times a second at most.
SHED_SLACK = 2
SHED_EVERY_SECONDS = 0.05
SLOTS = 64
_FREE = -1
AWAY = 2**62  # a worker not accepting (starting or leaving): nobody leaves it connections


class ConnectionBoard:
    """Each worker's open connections, in memory the arbiter shares with its workers.

    Made in the arbiter before the first fork; the arbiter hands slots out and takes them
    back, a worker writes only its own. A slot is one aligned 64-bit integer, so readers
    never see half a write; a count a moment old is good enough for spreading.
    """

    def __init__(self, slots: int = SLOTS) -> None:
        self._memory = mmap.mmap(-1, slots * 8)  # anonymous and shared across fork
        self._counts = memoryview(self._memory).cast("q")
        for slot in range(slots):
            self._counts[slot] = _FREE

    def claim(self) -> int | None:
        """A free slot for a worker about to be forked (None: all taken; it runs unspread).
        It shows as away until the worker starts accepting."""
        for slot in range(len(self._counts)):
            if self._counts[slot] == _FREE:
                self._counts[slot] = AWAY
                return slot
        return None

    def release(self, slot: int | None) -> None:
        """Free a gone worker's slot."""
        if slot is not None:
            self._counts[slot] = _FREE

    def publish(self, slot: int, connections: int) -> None:
        self._counts[slot] = connections

    def fewest_elsewhere(self, slot: int) -> int | None:
        """The fewest connections any other accepting worker holds; None: there is none."""
        counts = self._counts.tolist()
        counts[slot] = _FREE
        accepting = [count for count in counts if count != _FREE and count != AWAY]
        return min(accepting) if accepting else None


class AcceptPolicy:
    """Whether a worker should leave a pending connection to the others, for now."""

    def __init__(
        self,
        board: ConnectionBoard,
        slot: int,
        held: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.board = board
        self.slot = slot
        self.held = held
        self.clock = clock
        self._waiting_since = 0.0
        self._last_wait = float("-inf")
        self._last_shed_look = float("-inf")

    def _ahead(self, slack: int) -> bool:
        """Whether this worker holds more than `slack` connections above the fewest any
        other accepting worker holds (False when there is none)."""
        fewest = self.board.fewest_elsewhere(self.slot)
        return fewest is not None and self.held() > fewest + slack

    def should_wait(self) -> bool:
        if not self._ahead(SLACK):
            return False
        now = self.clock()
        if now - self._last_wait > 2 * RETRY_SECONDS:
            # The last wait ended (another worker took that connection): a new one starts.
            self._waiting_since = now
        if now - self._waiting_since >= MAX_WAIT_SECONDS:
            return False  # the others have not come for it: take it
        self._last_wait = now
        return True

    def should_shed(self) -> bool:
        """Whether to close a kept-alive connection after its current request, so that
        its client reconnects to a worker holding fewer. Looks at the board at most
        once every SHED_EVERY_SECONDS (it runs on every request)."""
        now = self.clock()
        if now - self._last_shed_look < SHED_EVERY_SECONDS:
            return False
        self._last_shed_look = now
        return self._ahead(SHED_SLACK)


class _CountingPool(Pool):
    """The worker's connection greenlets, telling when their number changes."""

    def __init__(self, size: int, changed: Callable[[], None]) -> None:
        super().__init__(size)
        self._changed = changed

    def add(self, greenlet: Any, *args: Any, **kwargs: Any) -> None:
        super().add(greenlet, *args, **kwargs)
        self._changed()

    def _discard(self, greenlet: Any) -> None:
        # gevent's own hook: a finished greenlet leaves the pool through it (the link
        # `add` makes), and `discard` calls it too. Overriding `discard` alone missed
        # every connection that ended, so a worker's count fell only at its next accept.
        super()._discard(greenlet)
        self._changed()


class _SpreadingServer(StreamServer):
    def __init__(self, *args: Any, policy: AcceptPolicy | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.policy = policy

    def _do_read(self) -> None:
        # gevent calls this when the listening socket is readable. Waiting reuses the
        # timer gevent itself backs off with after an accept error.
        if self.policy is not None and self.policy.should_wait():
            self.stop_accepting()
            self._timer = self.loop.timer(RETRY_SECONDS)
            self._timer.start(self._start_accepting_if_started)
            return
        super()._do_read()


class SpreadingGeventWorker(GeventWorker):
    """gunicorn's gevent worker (its parser, its keep-alive handling) with its accept
    spread as above; the board and slot come from gunicorn_conf's hooks."""

    connection_board: ConnectionBoard | None = None
    connection_slot: int | None = None

    _pool: _CountingPool | None = None
    _policy: AcceptPolicy | None = None
    _accepting = False

    def run(self) -> None:
        # One pool for all listeners: worker_connections bounds the worker, not a socket.
        pool = self._pool = _CountingPool(self.worker_connections, self._publish)
        policy = None
        if self.connection_board is not None and self.connection_slot is not None:
            policy = AcceptPolicy(self.connection_board, self.connection_slot, pool.__len__)
        self._policy = policy
        ssl_args = {"ssl_context": ssl_context(self.cfg)} if self.cfg.is_ssl else {}
        servers = []
        for listener in self.sockets:
            listener.setblocking(1)
            server = _SpreadingServer(
                listener,
                handle=partial(self.handle, listener),
                spawn=pool,
                policy=policy,
                **ssl_args,
            )
            server.max_accept = 1  # one connection a wake-up, so the others get their turn
            server.start()
            servers.append(server)
        self._accepting = True
        self._publish()

        while self.alive:
            self.notify()
            gevent.sleep(1.0)
        self._finish(servers, pool)

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> None:
        if self._policy is not None and self._policy.should_shed():
            req.force_close()  # "Connection: close": see the module's docstring
        super().handle_request(listener_name, req, sock, addr)

    def _publish(self) -> None:
        board, slot = self.connection_board, self.connection_slot
        if board is not None and slot is not None and self._pool is not None:
            board.publish(slot, len(self._pool) if self._accepting else AWAY)

    def _finish(self, servers: list[_SpreadingServer], pool: _CountingPool) -> None:
        """Stop accepting, let the open connections finish within the graceful timeout,
        then end those still open."""
        self._accepting = False
        self._publish()
        for server in servers:
            server.close()
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while len(pool) and time.monotonic() < deadline:
            self.notify()  # the arbiter's heartbeat, while the connections finish
            pool.join(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
        if len(pool):
            self.log.warning("Worker graceful timeout (pid:%s)", self.pid)
            pool.kill(block=True, timeout=1)
