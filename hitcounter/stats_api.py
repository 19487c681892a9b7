"""Stats API: totals, pages, time series, referrers, export and import; the OpenAPI document."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, stream_with_context

from hitcounter import stats
from hitcounter.auth import require_admin, require_reader
from hitcounter.errors import InvalidInput
from hitcounter.openapi import openapi_document
from hitcounter.services import get_services
from hitcounter.sites import Site
from hitcounter.transfer import FORMATS, Export, export_name, import_body

bp = Blueprint("stats_api", __name__, url_prefix="/api/v1")

MEDIA_TYPES = {"json": "application/json", "csv": "text/csv; charset=utf-8"}


def readable_site(name: str) -> Site:
    """The named site, if the request may read it (404 unknown, 401 without a token)."""
    site = get_services().sites.require(name)
    require_reader(site)
    return site


def private(response: Response) -> Response:
    # Stats of a private site must not sit in a shared cache.
    response.headers["Cache-Control"] = "private, no-store"
    return response


def cache_seconds() -> int:
    return int(current_app.config.get("STATS_CACHE_SECONDS", stats.DEFAULT_CACHE_SECONDS))


def span_of(site: Site) -> stats.DateRange:
    return stats.parse_range(site, request.args.get("from"), request.args.get("to"))


@bp.get("/sites/<site>/stats")
def site_stats(site: str) -> Response:
    """Totals over a range: hits, raw hits, visitors, pages, drops; and all-time totals."""
    found = readable_site(site)
    answer = stats.summary(
        get_services().store, found, span_of(found), cache_seconds=cache_seconds()
    )
    return private(jsonify(answer))


@bp.get("/sites/<site>/pages")
def site_pages(site: str) -> Response:
    """Pages by counted hits in the range, descending, with limit and offset."""
    found = readable_site(site)
    args = request.args
    limit = stats.parse_int(args.get("limit"), "limit", stats.DEFAULT_LIMIT, 1, stats.MAX_LIMIT)
    offset = stats.parse_int(args.get("offset"), "offset", 0, 0, stats.MAX_OFFSET)
    answer = stats.top_pages(
        get_services().store,
        found,
        span_of(found),
        limit=limit,
        offset=offset,
        cache_seconds=cache_seconds(),
    )
    return private(jsonify(answer))


@bp.get("/sites/<site>/timeseries")
def site_timeseries(site: str) -> Response:
    """Zero-filled points by day or local hour, for the site or one page."""
    found = readable_site(site)
    return private(jsonify(stats.timeseries_query(get_services().store, found, request.args)))


@bp.get("/sites/<site>/referrers")
def site_referrers(site: str) -> Response:
    """Referring hosts by counted hits in the range."""
    found = readable_site(site)
    limit = stats.parse_int(
        request.args.get("limit"), "limit", stats.DEFAULT_LIMIT, 1, stats.MAX_LIMIT
    )
    answer = stats.top_referrers(
        get_services().store, found, span_of(found), limit=limit, cache_seconds=cache_seconds()
    )
    return private(jsonify(answer))


@bp.get("/sites/<site>/export")
def site_export(site: str) -> Response:
    """Everything kept for the site, as JSON or CSV, streamed."""
    found = readable_site(site)
    fmt = request.args.get("format") or "json"
    if fmt not in FORMATS:
        raise InvalidInput("format must be json or csv")
    # Planning reads the store first, so a store outage is a 503, not a cut-off download.
    export = Export.plan(
        get_services().store, found, retention_days=int(current_app.config["RETENTION_DAYS"])
    )
    chunks = export.json_chunks() if fmt == "json" else export.csv_chunks()
    response = Response(stream_with_context(chunks), mimetype=MEDIA_TYPES[fmt].split(";")[0])
    response.headers["Content-Type"] = MEDIA_TYPES[fmt]
    response.headers["Content-Disposition"] = f'attachment; filename="{export_name(found, fmt)}"'
    return private(response)


@bp.post("/sites/<site>/import")
def site_import(site: str) -> Response:
    """Admin: restore an export, or add `{"pages": {path: hits}}` starting counts."""
    require_admin()
    body: Any = request.get_json(silent=True, force=True)
    if body is None:
        raise InvalidInput('the body must be JSON: an export or {"pages": {path: hits}}')
    config = current_app.config
    summary = import_body(
        get_services(),
        site,
        body,
        max_pages=int(config["MAX_PAGES"]),
        retention_days=int(config["RETENTION_DAYS"]),
    )
    return jsonify(summary)


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 document of every endpoint of the service."""
    response = jsonify(openapi_document())
    response.headers["Cache-Control"] = "public, max-age=3600"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response
