"""Embedding endpoints on Flask: the read-only count and the snippet.

The pixel and the beacon, which run on every page view, are answered before Flask by
`hitcounter.fastpath`; the badge and counter images are in `hitcounter.images`. None of
them sets a cookie, and none stores or logs the client's IP or User-Agent.
"""

from __future__ import annotations

from importlib import resources

from flask import Blueprint, Response, current_app, jsonify, request

from hitcounter import httputil
from hitcounter.hits import HitOutcome
from hitcounter.httputil import add_cors, hit_request, strong_etag, trusted_proxies
from hitcounter.inputs import normalise_path
from hitcounter.services import get_services

bp = Blueprint("embed", __name__)


@bp.after_request
def cors_on_errors(response: Response) -> Response:
    """Errors carry CORS too, so the snippet can read why (they hold no site data)."""
    if (
        response.status_code >= 400
        and request.headers.get("Origin")
        and "Access-Control-Allow-Origin" not in response.headers
    ):
        response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def record(site: str, path: str | None, referrer: str | None) -> HitOutcome:
    """Count one hit of the current Flask request through the shared hit pipeline."""
    trusted = trusted_proxies(str(current_app.config.get("TRUSTED_PROXIES") or ""))
    hit = hit_request(request.environ, trusted, site, path, referrer)
    return get_services().recorder.record(hit)


def referer_path() -> str | None:
    """The path of the current request's Referer."""
    return httputil.referer_path(request.headers.get("Referer"))


@bp.get("/api/v1/sites/<site>/count")
def count(site: str) -> Response:
    """Read one page's counts without counting."""
    services = get_services()
    found = services.sites.require(site)
    path = normalise_path(request.args.get("path") or referer_path() or "/")
    hits, raw, site_hits = services.store.page_count(found.name, path)
    response = jsonify(path=path, hits=hits, raw_hits=raw, site_hits=site_hits)
    response.headers["Cache-Control"] = "no-store"
    return add_cors(response, found)


def _snippet() -> tuple[bytes, str]:
    body = resources.files("hitcounter").joinpath("static", "counter.js").read_bytes()
    return body, strong_etag(body)


@bp.get("/counter.js")
def snippet() -> Response:
    """Serve the snippet: cacheable for a day, revalidated by ETag."""
    body, etag = current_app.extensions.setdefault("hitcounter.snippet", _snippet())
    response = Response(body, mimetype="text/javascript")
    response.set_etag(etag)
    response.headers["Cache-Control"] = "public, max-age=86400, stale-while-revalidate=604800"
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    response.make_conditional(request)  # in place: a 304 when If-None-Match matches
    return response
