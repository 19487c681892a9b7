"""Visitor ids: a keyed hash that forgets the visitor when its daily salt expires."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from hitcounter.store import Store

VISITOR_ID_BYTES = 8


class VisitorHasher:
    """Hash (daily salt, site, IP, User-Agent) into a short id; IP and UA are never kept."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # The day and an HMAC keyed with its salt, replaced together (one assignment,
        # so a thread never sees one day's key with another day's name).
        self._keyed: tuple[str, hmac.HMAC] | None = None

    def _keyed_for(self, utc_now: datetime) -> hmac.HMAC:
        """An HMAC keyed with today's salt, fetched from Redis once a day per process."""
        day = utc_now.date().isoformat()
        keyed = self._keyed
        if keyed is None or keyed[0] != day:
            keyed = (day, hmac.new(self.store.daily_salt(day), digestmod=hashlib.sha256))
            self._keyed = keyed
        return keyed[1]

    def visitor_id(self, site: str, ip: str, user_agent: str, utc_now: datetime) -> str:
        message = "\0".join((site, ip, user_agent)).encode("utf-8", "surrogatepass")
        # Copying an HMAC keyed once a day skips hashing the key on every hit (and
        # OpenSSL's lookup of the digest by name): less than half of hmac.digest's cost.
        mac = self._keyed_for(utc_now).copy()
        mac.update(message)
        return mac.digest()[:VISITOR_ID_BYTES].hex()
