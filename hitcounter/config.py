"""Configuration defaults: every setting the service reads, with its default.

Each key can be overridden by an environment variable with the `HITCOUNTER_` prefix
(`HITCOUNTER_REDIS_URL`, `HITCOUNTER_MAX_PAGES`, ...); Flask's `from_prefixed_env` parses
numbers and booleans as JSON. Nothing here reads the environment at import time.
"""

from __future__ import annotations

import ipaddress
from typing import Any

DEFAULTS: dict[str, Any] = {
    # Where the data lives. Unset: the embedded store (fakeredis) in DATA_DIR.
    "REDIS_URL": None,
    "DATA_DIR": "hitcounter-data",
    # Seconds between snapshots of the embedded store (it also saves on shutdown).
    "SAVE_INTERVAL": 30,
    # Admin API token; the admin API answers 403 while it is unset.
    "ADMIN_TOKEN": None,
    # The address this service is reached at, used in printed snippets.
    "PUBLIC_URL": "http://localhost:8080",
    # Day buckets, hourly buckets, visitor and referrer sets expire after this many days.
    "RETENTION_DAYS": 400,
    # Distinct pages kept per site; past that new paths count under the page "(other)".
    "MAX_PAGES": 10_000,
    # Counted hits one visitor may make per minute on one site (0 turns the limit off).
    "RATE_LIMIT_PER_MINUTE": 60,
    # Comma-separated addresses or networks whose X-Forwarded-For is believed.
    "TRUSTED_PROXIES": "",
    # User-Agent prefixes of image proxies that fetch for many viewers (GitHub's camo).
    "IMAGE_PROXY_AGENTS": "github-camo",
    # How long site settings are cached in each process, in seconds.
    "SITE_CACHE_SECONDS": 5,
    # Redis socket timeouts, in seconds: Redis trouble must never hang a page.
    "REDIS_TIMEOUT": 0.5,
    # Hits Redis cannot take (down, or no answer within REDIS_TIMEOUT) are appended to a
    # per-worker spool file, fsync'd, answered as accepted, and replayed in order when
    # Redis answers again; replays never count a hit twice. Unset: DATA_DIR/spool.
    "SPOOL_DIR": None,
    # Largest spool file of one worker, in bytes (a hit takes about 600); past it, hits
    # get 503 and are counted as dropped (spool_full). 0 turns the spool off.
    "SPOOL_MAX_BYTES": 64 * 1024 * 1024,
    # Days a replayed hit is still recognised as applied: a spool left on disk longer
    # than this (a worker dead and never replaced) could count some hits twice.
    "SPOOL_REPLAY_DAYS": 30,
    # Prefix of every Redis key (several deployments can share one Redis).
    "KEY_PREFIX": "hc",
    # Largest body accepted by POST /api/v1/hit, in bytes.
    "MAX_HIT_BODY": 4096,
    "LOG_LEVEL": "INFO",
    # How long a sum of a range's past days is kept for the stats API, in seconds.
    "STATS_CACHE_SECONDS": 3600,
    # Seconds between a server worker's looks for sites whose day turned, to sum their
    # quick ranges' past days before their first read (see warming.py); 0 turns it off.
    "PREPARE_INTERVAL": 60,
    # Wrong tokens one client may present per minute before it gets 429 (0: no limit).
    "AUTH_FAILURES_PER_MINUTE": 20,
}


def comma_list(value: Any) -> list[str]:
    """Split a comma-separated setting (or accept a list) into its trimmed items."""
    if value is None:
        return []
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return [str(item).strip() for item in value if str(item).strip()]


def trusted_networks(value: Any) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Parse TRUSTED_PROXIES into networks; a bad entry is a configuration error."""
    return [ipaddress.ip_network(item, strict=False) for item in comma_list(value)]
