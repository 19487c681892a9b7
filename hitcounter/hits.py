"""The hit pipeline: from a request's facts to a counted (or dropped) hit.

Every embed endpoint (pixel, beacon, badge, counter) goes through `HitRecorder.record`,
so the same rules apply whatever the form of embedding.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from hitcounter import metrics
from hitcounter.bots import is_bot, is_image_proxy
from hitcounter.errors import InvalidInput, StoreUnavailable
from hitcounter.inputs import host_allowed, host_of, normalise_path, validate_site_name
from hitcounter.sites import Site, SiteRegistry
from hitcounter.spool import SpoolFull
from hitcounter.store import HitWrite, Store
from hitcounter.visitors import VisitorHasher

# The HTTP status of each way a hit is not counted. A duplicate is a raw hit: accepted.
DROP_STATUS = {
    "invalid": 400,
    "unknown_site": 404,
    "bot": 403,
    "origin": 403,
    "rate_limited": 429,
    "prefetch": 400,
}
# Kept hits: counted, raw (duplicate), or waiting in the spool for Redis (see spool.py).
ACCEPTED = frozenset({"", "duplicate", "spooled"})
# Reasons tallied per site and day; prefetches are not page views at all.
TALLIED_DROPS = frozenset({"invalid", "bot", "origin", "rate_limited"})


# Not frozen: a frozen dataclass's __init__ costs three times as much, once per hit.
@dataclass(slots=True)
class HitRequest:
    """The facts of one embed request, taken from HTTP by the view."""

    site: str
    path: str | None
    referrer: str | None
    source: str | None  # the Origin header, else the Referer header
    ip: str
    user_agent: str
    prefetch: bool = False


# Not frozen either (see HitRequest).
@dataclass(slots=True)
class HitOutcome:
    counted: bool
    reason: str  # "" when counted; "duplicate"; or a drop reason
    path: str
    hits: int = 0
    site_hits: int = 0
    message: str = ""
    site: Site | None = None

    @property
    def status(self) -> int:
        return DROP_STATUS.get(self.reason, 200)

    @property
    def accepted(self) -> bool:
        """True if the hit was kept: counted, a raw hit inside the dedupe window, or
        spooled to be applied when Redis answers again (its counts are then unknown)."""
        return self.reason in ACCEPTED

    @property
    def spooled(self) -> bool:
        return self.reason == "spooled"


@functools.lru_cache(maxsize=1024)
def local_day_and_hour(timezone: str, minute: int) -> tuple[str, int]:
    """The local date (ISO) and hour of a UTC minute (minutes since the epoch).

    Kept per minute: every hit of a site in that minute shares them, and UTC offsets
    change only on whole minutes."""
    local = datetime.fromtimestamp(minute * 60, ZoneInfo(timezone))
    return local.date().isoformat(), local.hour


@dataclass(frozen=True)
class HitRules:
    max_pages: int = 10_000
    rate_limit: int = 60
    retention_days: int = 400
    image_proxy_agents: Sequence[str] = ("github-camo",)


class HitRecorder:
    """Check one hit against the site's rules and apply it with one store call."""

    def __init__(self, store: Store, sites: SiteRegistry, rules: HitRules) -> None:
        self.store = store
        self.sites = sites
        self.rules = rules
        self.visitors = VisitorHasher(store)
        self._proxy_prefixes = tuple(agent.lower() for agent in rules.image_proxy_agents)

    def record(self, hit: HitRequest, *, now: datetime | None = None) -> HitOutcome:
        """Apply one hit; StoreUnavailable (SpoolFull included) means it was not kept."""
        # Minutes since the epoch (UTC): what the rules below need of the time, without
        # building a datetime per hit.
        minute = int(time.time() if now is None else now.timestamp()) // 60
        try:
            outcome = self._record(hit, minute)
        except StoreUnavailable as exc:
            # Answered 503: a hit lost to an outage is counted, never acknowledged.
            metrics.observe_unkept("spool_full" if isinstance(exc, SpoolFull) else "unavailable")
            raise
        metrics.observe_hit(outcome)
        return outcome

    def _record(self, hit: HitRequest, minute: int) -> HitOutcome:
        try:
            name = validate_site_name(hit.site)
        except InvalidInput as exc:
            return HitOutcome(False, "invalid", "", message=exc.message)
        site = self.sites.get(name)
        if site is None:
            return HitOutcome(False, "unknown_site", "", message=f"no site named {name!r}")
        day, hour = local_day_and_hour(site.timezone, minute)
        if hit.prefetch:
            return HitOutcome(False, "prefetch", "", message="prefetch is not a view", site=site)
        try:
            path = normalise_path(hit.path)
        except InvalidInput as exc:
            return self._drop(site, day, "invalid", exc.message)

        proxy = is_image_proxy(hit.user_agent, self._proxy_prefixes)
        if not proxy and is_bot(hit.user_agent):
            return self._drop(site, day, "bot", "bots are not counted", path)
        source_host = host_of(hit.source)
        if site.domains and source_host and not host_allowed(source_host, site.domains):
            return self._drop(site, day, "origin", f"{source_host} is not allowed", path)

        counts = self.store.record_hit(
            HitWrite(
                site=name,
                path=path,
                referrer_host=self._external_host(hit.referrer, source_host, site),
                visitor=self.visitors.visitor_id(name, hit.ip, hit.user_agent, minute),
                day=day,
                hour=hour,
                minute=minute,
                # Image proxies fetch for many viewers from few addresses: count them all.
                dedupe_seconds=0 if proxy else site.dedupe_seconds,
                rate_limit=0 if proxy else self.rules.rate_limit,
                max_pages=self.rules.max_pages,
                retention_seconds=self.rules.retention_days * 86400,
            )
        )
        message = "over the rate limit" if counts.reason == "rate_limited" else ""
        return HitOutcome(
            counts.counted,
            counts.reason,
            counts.path,
            counts.page_hits,
            counts.site_hits,
            message,
            site,
        )

    def _drop(self, site: Site, day: str, reason: str, message: str, path: str = "") -> HitOutcome:
        if reason in TALLIED_DROPS:
            self.store.record_drop(site.name, day, reason, self.rules.retention_days * 86400)
        return HitOutcome(False, reason, path, message=message, site=site)

    @staticmethod
    def _external_host(referrer: str | None, source_host: str | None, site: Site) -> str:
        """The referring host, or "" when there is none or it is the site itself."""
        host = host_of(referrer)
        if host is None or host == source_host or host_allowed(host, site.domains):
            return ""
        return host
