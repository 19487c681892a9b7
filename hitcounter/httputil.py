"""Small HTTP helpers shared by the embed endpoints: client facts, CORS, cache headers.

The environ-based helpers serve the WSGI fast path and the Flask views alike.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from flask import Response, current_app, request

from hitcounter.config import trusted_networks
from hitcounter.hits import HitRequest
from hitcounter.inputs import TrustedProxies, client_ip, host_allowed, host_of
from hitcounter.sites import Site

NO_CACHE_HEADERS = {
    "Cache-Control": "no-cache, no-store, max-age=0, must-revalidate",
    "Pragma": "no-cache",
    "Expires": "Thu, 01 Jan 1970 00:00:00 GMT",
}
PREFETCH_HEADERS = ("HTTP_SEC_PURPOSE", "HTTP_PURPOSE", "HTTP_X_PURPOSE", "HTTP_X_MOZ")


@lru_cache(maxsize=8)
def trusted_proxies(setting: str) -> TrustedProxies:
    """The parsed TRUSTED_PROXIES setting (parsed once per distinct value)."""
    return TrustedProxies(trusted_networks(setting))


def hit_request(
    environ: dict[str, Any],
    trusted: TrustedProxies,
    site: str,
    path: str | None,
    referrer: str | None,
) -> HitRequest:
    """The facts of one embed request, read from the WSGI environ."""
    return HitRequest(
        site=site,
        path=path,
        referrer=referrer,
        source=environ.get("HTTP_ORIGIN") or environ.get("HTTP_REFERER"),
        ip=client_ip(environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR"), trusted),
        user_agent=environ.get("HTTP_USER_AGENT", ""),
        prefetch=_is_prefetch(environ),
    )


def _is_prefetch(environ: dict[str, Any]) -> bool:
    """True for a browser's speculative fetch (the page may never be seen)."""
    for name in PREFETCH_HEADERS:
        value = environ.get(name)
        if value and "prefetch" in value.lower():
            return True
    return False


def referer_path(referer: str | None) -> str | None:
    """The path of a Referer: the page that embedded an image without ?path=."""
    if not referer:
        return None
    try:
        return urlsplit(referer).path or "/"
    except ValueError:
        return None


def cors_headers(origin: str | None, site: Site | None, *, error: bool) -> list[tuple[str, str]]:
    """CORS for an embed answer: the site's domains (any, if it has none) may read it.

    Errors carry CORS for any origin, so the snippet can read why; they hold no site data.
    """
    if not origin:
        return []
    allow = ""
    if error or site is None or not site.domains:
        allow = "*"
    else:
        host = host_of(origin)
        if host and host_allowed(host, site.domains):
            allow = origin
    if not allow:
        return []
    headers = [("Access-Control-Allow-Origin", allow)]
    if allow != "*":
        headers.append(("Vary", "Origin"))
    headers.append(("Access-Control-Expose-Headers", "X-Hitcounter"))
    return headers


def request_ip() -> str:
    """The current request's client address, believing only trusted proxies."""
    trusted = trusted_proxies(str(current_app.config.get("TRUSTED_PROXIES") or ""))
    return client_ip(request.remote_addr, request.headers.get("X-Forwarded-For"), trusted)


def add_cors(response: Response, site: Site | None) -> Response:
    """Add the embed CORS headers to a Flask response."""
    origin = request.headers.get("Origin")
    for name, value in cors_headers(origin, site, error=response.status_code >= 400):
        if name == "Vary":
            response.vary.add(value)
        else:
            response.headers[name] = value
    return response


def strong_etag(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:32]
