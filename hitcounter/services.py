"""The per-app objects (store, sites, hit recorder), kept in app.extensions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app

from hitcounter import embedded
from hitcounter.config import comma_list
from hitcounter.hits import HitRecorder, HitRules
from hitcounter.sites import SiteRegistry
from hitcounter.spool import spool_from_config
from hitcounter.store import Store, connect

EXTENSION = "hitcounter"


@dataclass
class Services:
    store: Store
    sites: SiteRegistry
    recorder: HitRecorder
    embedded: bool


def init_services(app: Flask, store: Store | None = None) -> Services:
    """Build the store and the objects around it, once per app (so once per worker)."""
    cfg = app.config
    is_embedded = False
    if store is None:
        client: Any
        if cfg.get("REDIS_URL"):
            client = connect(str(cfg["REDIS_URL"]), timeout=float(cfg["REDIS_TIMEOUT"]))
        else:
            client = embedded.open_embedded(
                str(cfg["DATA_DIR"]), save_interval=float(cfg["SAVE_INTERVAL"])
            )
            is_embedded = True
        store = Store(client, prefix=str(cfg["KEY_PREFIX"]))
        spool = spool_from_config(cfg)
        if spool is not None:
            store.use_spool(spool, replay_days=float(cfg["SPOOL_REPLAY_DAYS"]))
    sites = SiteRegistry(store, cache_seconds=float(cfg["SITE_CACHE_SECONDS"]))
    rules = HitRules(
        max_pages=int(cfg["MAX_PAGES"]),
        rate_limit=int(cfg["RATE_LIMIT_PER_MINUTE"]),
        retention_days=int(cfg["RETENTION_DAYS"]),
        image_proxy_agents=tuple(comma_list(cfg["IMAGE_PROXY_AGENTS"])),
    )
    services = Services(store, sites, HitRecorder(store, sites, rules), is_embedded)
    app.extensions[EXTENSION] = services
    return services


def get_services() -> Services:
    """The current app's services."""
    services: Services = current_app.extensions[EXTENSION]
    return services
