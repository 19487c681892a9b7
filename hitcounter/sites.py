"""Sites: their settings, read tokens, and a short-lived in-process cache."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hitcounter.errors import Conflict, InvalidInput, NotFound, StoreUnavailable
from hitcounter.inputs import validate_domain_pattern, validate_site_name
from hitcounter.singleflight import SingleFlight
from hitcounter.store import Store

DEFAULT_DEDUPE_SECONDS = 1800
MAX_DEDUPE_SECONDS = 7 * 86400
MAX_DOMAINS = 100
SETTING_FIELDS = ("domains", "public", "timezone", "dedupe_seconds")


@dataclass(frozen=True)
class Site:
    name: str
    domains: tuple[str, ...] = ()
    public: bool = False
    timezone: str = "UTC"
    dedupe_seconds: int = DEFAULT_DEDUPE_SECONDS
    token_hash: str = ""
    created: str = ""

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def settings(self) -> dict[str, Any]:
        """The site as the API shows it: never the token or its hash."""
        return {
            "name": self.name,
            "domains": list(self.domains),
            "public": self.public,
            "timezone": self.timezone,
            "dedupe_seconds": self.dedupe_seconds,
            "created": self.created,
        }

    def to_fields(self) -> dict[str, str]:
        return {
            "name": self.name,
            "domains": json.dumps(list(self.domains)),
            "public": "1" if self.public else "0",
            "timezone": self.timezone,
            "dedupe_seconds": str(self.dedupe_seconds),
            "token_hash": self.token_hash,
            "created": self.created,
        }

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> Site:
        return cls(
            name=fields["name"],
            domains=tuple(json.loads(fields.get("domains", "[]"))),
            public=fields.get("public") == "1",
            timezone=fields.get("timezone", "UTC"),
            dedupe_seconds=int(fields.get("dedupe_seconds", DEFAULT_DEDUPE_SECONDS)),
            token_hash=fields.get("token_hash", ""),
            created=fields.get("created", ""),
        )

    def token_matches(self, token: str | None) -> bool:
        """Compare a presented read token with the stored hash in constant time."""
        if not token or not self.token_hash:
            return False
        return hmac.compare_digest(hash_token(token), self.token_hash)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> str:
    """A read token: 32 random bytes, URL-safe."""
    return secrets.token_urlsafe(32)


def parse_settings(body: Any, *, partial: bool) -> dict[str, Any]:
    """Validate the settings fields of a create or update request."""
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    unknown = set(body) - set(SETTING_FIELDS) - {"name"}
    if unknown:
        raise InvalidInput(f"unknown settings: {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    if "domains" in body:
        domains = body["domains"]
        if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
            raise InvalidInput("domains must be a list of hostnames")
        if len(domains) > MAX_DOMAINS:
            raise InvalidInput(f"at most {MAX_DOMAINS} domains")
        out["domains"] = tuple(dict.fromkeys(validate_domain_pattern(d) for d in domains))
    if "public" in body:
        if not isinstance(body["public"], bool):
            raise InvalidInput("public must be true or false")
        out["public"] = body["public"]
    if "timezone" in body:
        out["timezone"] = validate_timezone(body["timezone"])
    if "dedupe_seconds" in body:
        seconds = body["dedupe_seconds"]
        if isinstance(seconds, bool) or not isinstance(seconds, int):
            raise InvalidInput("dedupe_seconds must be a whole number")
        if not 0 <= seconds <= MAX_DEDUPE_SECONDS:
            raise InvalidInput(f"dedupe_seconds must be between 0 and {MAX_DEDUPE_SECONDS}")
        out["dedupe_seconds"] = seconds
    if not partial and "name" in body:
        if not isinstance(body["name"], str):
            raise InvalidInput("name must be a string")
        out["name"] = validate_site_name(body["name"])
    return out


def validate_timezone(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 64:
        raise InvalidInput("timezone must be an IANA name such as Europe/Paris")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(f"unknown timezone: {value!r}") from exc
    return value


class SiteRegistry:
    """Create, read, change and remove sites; cache reads briefly for the hit path."""

    def __init__(self, store: Store, *, cache_seconds: float = 5.0) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Site | None]] = {}
        self._lock = threading.Lock()
        # A cold worker's burst of hits for one site reads its settings once.
        self._fetches: SingleFlight[dict[str, str] | None] = SingleFlight()

    def get(self, name: str) -> Site | None:
        """Return the site, from the cache when it is fresh; None if it does not exist."""
        now = time.monotonic()
        cached = self._cache.get(name)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            fields = self._fetches.do(name, lambda: self.store.site_fields(name))
        except StoreUnavailable:
            # Redis is away: a site known a moment ago still takes hits (into the spool).
            if cached is not None:
                return cached[1]
            raise
        site = Site.from_fields(fields) if fields else None
        with self._lock:
            # Unknown names are cached too, so a flood of junk names costs one read each
            # per interval; the cache is bounded so that flood cannot grow it without end.
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[name] = (now + self.cache_seconds, site)
        return site

    def require(self, name: str) -> Site:
        site = self.get(validate_site_name(name))
        if site is None:
            raise NotFound(f"no site named {name!r}", code="unknown_site")
        return site

    def fresh(self, name: str) -> Site:
        """Read a site bypassing the cache (for admin operations)."""
        self.forget(name)
        return self.require(name)

    def forget(self, name: str) -> None:
        with self._lock:
            self._cache.pop(name, None)

    def create(self, body: Any) -> tuple[Site, str]:
        """Register a site; return it with its read token, which is shown only now."""
        settings = parse_settings(body, partial=False)
        if "name" not in settings:
            raise InvalidInput("name is required")
        token = new_token()
        site = Site(
            **settings,
            token_hash=hash_token(token),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        if not self.store.create_site(site.name, site.to_fields()):
            raise Conflict(f"a site named {site.name!r} exists already")
        self.forget(site.name)
        return site, token

    def update(self, name: str, body: Any) -> Site:
        site = self.fresh(name)
        changes = parse_settings(body, partial=True)
        updated = replace(site, **changes)
        self.store.update_site(name, updated.to_fields())
        self.forget(name)
        return updated

    def rotate_token(self, name: str) -> str:
        site = self.fresh(name)
        token = new_token()
        self.store.update_site(name, replace(site, token_hash=hash_token(token)).to_fields())
        self.forget(name)
        return token

    def delete(self, name: str) -> None:
        self.fresh(name)
        self.store.delete_site(name)
        self.forget(name)

    def all(self) -> list[Site]:
        sites = []
        for name in self.store.site_names():
            fields = self.store.site_fields(name)
            if fields:
                sites.append(Site.from_fields(fields))
        return sites
