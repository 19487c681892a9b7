"""Sum the dashboard's ranges' past days ahead of their first read each day.

Top pages and referrers of a range add up its days' zsets (its distinct pages come from
the returns counts, see Store._distinct_pages, except where those do not cover it). The
sum of the past days is kept (Store._past_union), so later reads only merge today's; but
the first read of a range each day builds it, in time that follows the range's page-days:
about 80 ms for 30 days of 10,000 pages each, 4 ms for 100 pages a day. For the ranges
the dashboard links to (the last 7, 30 and 90 days; 30 is the API's default), a worker
builds those sums after each site's local midnight and keeps them until the next, so no
reader waits for them.

Every worker of every app server runs a RangeWarmer; one of them prepares each site on
each day (a claim in Redis), and a worker looks at a site again only when the site's
day turns. Other ranges are still summed on their first read.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from hitcounter import stats
from hitcounter.errors import StoreUnavailable

if TYPE_CHECKING:
    from flask import Flask

    from hitcounter.sites import Site, SiteRegistry
    from hitcounter.store import Store

log = logging.getLogger("hitcounter.warming")

# Kept a little past the site's midnight: a read just after it still finds the sum
# (of yesterday's range) while the day's new one is made.
KEEP_MARGIN_SECONDS = 600


class RangeWarmer:
    """Prepare every site's quick ranges once a day, before anyone reads them."""

    def __init__(self, store: Store, sites: SiteRegistry) -> None:
        self.store = store
        self.sites = sites
        # Site name -> when its local day turns next (unix time): no look before that.
        self._next_look: dict[str, float] = {}

    def run_once(self, now: datetime | None = None) -> list[str]:
        """Look at the sites whose day turned; return those this process prepared."""
        now = now or datetime.now(UTC)
        prepared: list[str] = []
        for name in self.store.site_names():
            if now.timestamp() < self._next_look.get(name, 0.0):
                continue
            site = self.sites.get(name)
            if site is None:
                continue
            local_today = stats.today(site, now)
            today = local_today.isoformat()
            midnight = _midnight_after(site, local_today)
            if self.store.claim_preparation(name, today):
                try:
                    keep = int(midnight - now.timestamp()) + KEEP_MARGIN_SECONDS
                    for count in stats.QUICK_RANGES:
                        days = stats.last_days(site, count, now).days
                        self.store.prepare_range(name, days, today=today, keep_seconds=keep)
                except Exception:
                    # Give the claim back: the next look (of any worker) tries again.
                    self.store.release_preparation(name, today)
                    raise
                prepared.append(name)
            self._next_look[name] = midnight
        return prepared

    def run_forever(self, interval: float) -> None:
        while True:
            try:
                done = self.run_once()
                if done:
                    log.info("prepared the quick ranges of %d sites", len(done))
            except StoreUnavailable as exc:
                log.warning("could not prepare ranges, will try again: %s", exc)
            except Exception:
                log.exception("preparing ranges failed; will try again")
            time.sleep(interval)  # gevent's, once the worker is patched


def _midnight_after(site: Site, day: date) -> float:
    """When the site's local day after `day` begins, as unix time."""
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), site.zone).timestamp()


def start_in_worker(app: Flask | Any) -> threading.Thread | None:
    """Start preparing ranges in the background of this server process (gunicorn calls
    this once per worker); None when PREPARE_INTERVAL is 0, the cache is off, or the app
    served is not hitcounter's (the benchmark's reference apps use the same config)."""
    services = getattr(app, "extensions", {}).get("hitcounter")
    if services is None:
        return None
    interval = float(app.config["PREPARE_INTERVAL"])
    if interval <= 0 or int(app.config["STATS_CACHE_SECONDS"]) <= 0:
        return None
    warmer = RangeWarmer(services.store, services.sites)
    # Under gevent this is a greenlet: its Redis calls wait without holding up requests.
    thread = threading.Thread(
        target=warmer.run_forever, args=(interval,), name="hitcounter-warming", daemon=True
    )
    thread.start()
    return thread
