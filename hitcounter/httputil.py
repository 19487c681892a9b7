"""Small HTTP helpers shared by the blueprints: client facts, CORS, cache headers."""

from __future__ import annotations

import hashlib
from functools import lru_cache

from flask import Response, current_app, request

from hitcounter.config import trusted_networks
from hitcounter.inputs import IPNetwork, client_ip, host_allowed, host_of
from hitcounter.sites import Site

NO_CACHE_HEADERS = {
    "Cache-Control": "no-cache, no-store, max-age=0, must-revalidate",
    "Pragma": "no-cache",
    "Expires": "Thu, 01 Jan 1970 00:00:00 GMT",
}


@lru_cache(maxsize=8)
def _networks(setting: str) -> tuple[IPNetwork, ...]:
    return tuple(trusted_networks(setting))


def request_ip() -> str:
    """The client's address, believing X-Forwarded-For only from trusted proxies."""
    trusted = _networks(str(current_app.config.get("TRUSTED_PROXIES") or ""))
    return client_ip(request.remote_addr, request.headers.get("X-Forwarded-For"), trusted)


def request_source() -> str | None:
    """The page a request came from: its Origin header, else its Referer."""
    return request.headers.get("Origin") or request.headers.get("Referer")


def is_prefetch() -> bool:
    purpose = (
        request.headers.get("Sec-Purpose")
        or request.headers.get("Purpose")
        or request.headers.get("X-Purpose")
        or request.headers.get("X-Moz")
        or ""
    )
    return "prefetch" in purpose.lower()


def add_cors(response: Response, site: Site | None) -> Response:
    """Let the site's allowed domains (any domain if it has none) read the answer."""
    origin = request.headers.get("Origin")
    if not origin:
        return response
    if site is None or not site.domains:
        response.headers["Access-Control-Allow-Origin"] = "*"
    else:
        host = host_of(origin)
        if host and host_allowed(host, site.domains):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.vary.add("Origin")
    response.headers["Access-Control-Expose-Headers"] = "X-Hitcounter"
    return response


def strong_etag(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:32]
