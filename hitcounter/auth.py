"""Tokens from requests: the admin token and the sites' read tokens."""

from __future__ import annotations

import hmac
import threading
import time
from collections import deque

from flask import current_app, request

from hitcounter.errors import Forbidden, TooManyRequests, Unauthorized
from hitcounter.httputil import request_ip
from hitcounter.sites import Site


def presented_token() -> str | None:
    """The token a request carries: `Authorization: Bearer T`, else `?token=T`."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.args.get("token") or None


def is_admin(token: str | None) -> bool:
    admin = current_app.config.get("ADMIN_TOKEN")
    if not admin or not token:
        return False
    return hmac.compare_digest(token.encode(), str(admin).encode())


def require_admin() -> None:
    """Allow only the admin token; the admin API is off while none is configured."""
    if not current_app.config.get("ADMIN_TOKEN"):
        raise Forbidden("the admin API is off: set HITCOUNTER_ADMIN_TOKEN to turn it on")
    check_failures()
    if not is_admin(presented_token()):
        note_failure()
        raise Unauthorized("a valid admin token is required")


def require_reader(site: Site) -> None:
    """Allow a public site to all; a private one to its read token or the admin token."""
    if site.public:
        return
    check_failures()
    token = presented_token()
    if not (site.token_matches(token) or is_admin(token)):
        note_failure()
        raise Unauthorized("this site's stats need its read token")


# -- failed token attempts -----------------------------------------------------------------
# Each process keeps its own tally: enough to make guessing a token by brute force
# pointless (tokens are 256 random bits anyway) without a Redis round trip per request.

FAILURES_PER_MINUTE = 20
_LIMITER = "hitcounter.auth_failures"


class FailureLimiter:
    """Count a client's failed token attempts over the last minute, in this process."""

    def __init__(self, limit: int, window: float = 60.0, max_clients: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, client: str, now: float | None = None) -> bool:
        if self.limit <= 0:  # 0 turns the limit off
            return False
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = self._failures.get(client)
            if recent is None:
                return False
            while recent and recent[0] <= now - self.window:
                recent.popleft()
            if not recent:
                del self._failures[client]
            return len(recent) >= self.limit

    def fail(self, client: str, now: float | None = None) -> None:
        if self.limit <= 0:
            return
        now = time.monotonic() if now is None else now
        with self._lock:
            if client not in self._failures and len(self._failures) >= self.max_clients:
                # A flood from many addresses must not grow this without end.
                self._failures.clear()
            recent = self._failures.setdefault(client, deque(maxlen=self.limit))
            recent.append(now)


def _limiter() -> FailureLimiter:
    limiter = current_app.extensions.get(_LIMITER)
    if limiter is None:
        limit = int(current_app.config.get("AUTH_FAILURES_PER_MINUTE", FAILURES_PER_MINUTE))
        limiter = current_app.extensions.setdefault(_LIMITER, FailureLimiter(limit))
    return limiter


def check_failures() -> None:
    """Refuse a client that failed too many token checks in the last minute."""
    if _limiter().blocked(request_ip()):
        raise TooManyRequests("too many failed token attempts: wait a minute")


def note_failure() -> None:
    _limiter().fail(request_ip())
