"""Embedding endpoints: the pixel, the beacon, the read-only count and the snippet.

None of them sets a cookie, and none stores or logs the client's IP or User-Agent.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, jsonify, request

from hitcounter.errors import (
    HitcounterError,
    InvalidInput,
    PayloadTooLarge,
    StoreUnavailable,
    UnsupportedMediaType,
    error_body,
)
from hitcounter.hits import HitOutcome, HitRequest
from hitcounter.httputil import add_cors, is_prefetch, request_ip, request_source, strong_etag
from hitcounter.inputs import normalise_path
from hitcounter.services import get_services

bp = Blueprint("embed", __name__)

# A transparent 1x1 GIF: the smallest valid image, 43 bytes.
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00"
    b"\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
BEACON_TYPES = ("text/plain", "application/json")


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
    """Count one hit of the current request through the shared hit pipeline."""
    hit = HitRequest(
        site=site,
        path=path,
        referrer=referrer,
        source=request_source(),
        ip=request_ip(),
        user_agent=request.headers.get("User-Agent", ""),
        prefetch=is_prefetch(),
    )
    return get_services().recorder.record(hit)


def referer_path() -> str | None:
    """The path of the Referer header: the page that embedded an image without ?path=."""
    referer = request.headers.get("Referer")
    if not referer:
        return None
    try:
        return urlsplit(referer).path or "/"
    except ValueError:
        return None


@bp.get("/hit/<site>.gif")
def pixel(site: str) -> Response:
    """Count a view and answer the GIF; a hit not counted gets a 4xx and the reason."""
    reason, status, outcome = "", 200, None
    try:
        outcome = record(site, request.args.get("path") or referer_path(), request.args.get("ref"))
        reason, status = outcome.reason, outcome.status
    except StoreUnavailable:
        reason, status = "unavailable", 503
    response = Response(GIF, status=status, mimetype="image/gif")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    if reason:
        response.headers["X-Hitcounter"] = reason
    return add_cors(response, outcome.site if outcome else None)


@bp.post("/api/v1/hit", provide_automatic_options=False)
def beacon() -> tuple[Response, int]:
    """Count a view sent by the snippet as text/plain JSON (no CORS preflight)."""
    outcome = None
    try:
        body = _beacon_body()
        outcome = record(body["site"], body.get("path"), body.get("referrer"))
    except HitcounterError as exc:
        response = jsonify(error_body(exc.code, exc.message))
        return add_cors(response, None), exc.status
    if outcome.accepted:
        response = jsonify(path=outcome.path, hits=outcome.hits, site_hits=outcome.site_hits)
    else:
        response = jsonify(error_body(outcome.reason, outcome.message))
        response.headers["X-Hitcounter"] = outcome.reason
    response.headers["Cache-Control"] = "no-store"
    return add_cors(response, outcome.site), outcome.status


@bp.route("/api/v1/hit", methods=["OPTIONS"])
def beacon_preflight() -> Response:
    """Answer the preflight a client sending application/json triggers."""
    response = Response(status=204)
    response.headers["Access-Control-Allow-Methods"] = "POST"
    response.headers["Access-Control-Allow-Headers"] = "Content-Type"
    response.headers["Access-Control-Max-Age"] = "86400"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def _beacon_body() -> dict[str, Any]:
    limit = int(current_app.config["MAX_HIT_BODY"])
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the body must be at most {limit} bytes")
    mimetype = request.mimetype
    if mimetype and mimetype not in BEACON_TYPES:
        raise UnsupportedMediaType("send the hit as text/plain or application/json")
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"the body must be at most {limit} bytes")
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("the body must be JSON: {site, path, referrer}") from exc
    if not isinstance(body, dict) or not isinstance(body.get("site"), str):
        raise InvalidInput("the body must be a JSON object with a string 'site'")
    for field in ("path", "referrer"):
        if body.get(field) is not None and not isinstance(body[field], str):
            raise InvalidInput(f"{field} must be a string")
    return body


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
    return response.make_conditional(request)
