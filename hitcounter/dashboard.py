"""The HTML dashboard of one site: totals, a chart, top pages, referrers and drops."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, make_response, render_template, request, url_for
from markupsafe import Markup

from hitcounter import stats
from hitcounter.auth import require_reader
from hitcounter.errors import HitcounterError
from hitcounter.render.chart import ChartPoint, render_chart
from hitcounter.services import get_services
from hitcounter.sites import Site
from hitcounter.stats_api import cache_seconds

bp = Blueprint("dashboard", __name__)

TOP_PAGES = 20
TOP_REFERRERS = 10
# No script at all; inline styles only; the token in the URL never leaves in a Referer.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "private, no-store",
}


def _html(body: str, status: int = 200) -> Response:
    response = make_response(body, status)
    response.headers.update(HEADERS)
    return response


@bp.errorhandler(HitcounterError)
def error_page(exc: HitcounterError) -> Response:
    """Answer the dashboard's errors as a page, not JSON: a person is reading."""
    return _html(render_template("dashboard.html", error=exc, site_name=None), exc.status)


def range_link(site: Site, start: str, end: str, token: str | None) -> str:
    args: dict[str, Any] = {"site": site.name, "from": start, "to": end}
    if token:
        args["token"] = token
    return url_for("dashboard.show", **args)


def api_links(site: Site, span: stats.DateRange, token: str | None) -> dict[str, str]:
    """Links to the same numbers as JSON, and to the exports (None values are left out)."""
    query: dict[str, Any] = {"site": site.name, "token": token}
    ranged = query | span.as_dict()
    return {
        "stats": url_for("stats_api.site_stats", **ranged),
        "pages": url_for("stats_api.site_pages", **ranged, limit=100),
        "timeseries": url_for("stats_api.site_timeseries", **ranged),
        "referrers": url_for("stats_api.site_referrers", **ranged, limit=100),
        "csv": url_for("stats_api.site_export", **query, format="csv"),
        "json": url_for("stats_api.site_export", **query, format="json"),
    }


@bp.get("/sites/<site>/")
def show(site: str) -> Response:
    """Render the dashboard for the range (default the last 30 days)."""
    services = get_services()
    found = services.sites.require(site)
    require_reader(found)
    span = stats.parse_range(found, request.args.get("from"), request.args.get("to"))
    store = services.store
    keep = cache_seconds()
    totals = stats.summary(store, found, span, cache_seconds=keep)
    series = stats.timeseries(store, found, span, interval="day", path=None)
    points = [ChartPoint(p["date"], p["hits"], p["visitors"]) for p in series["points"]]
    token = request.args.get("token") or None
    spans = [(days, stats.last_days(found, days)) for days in stats.QUICK_RANGES]
    quick = [(days, range_link(found, str(s.start), str(s.end), token)) for days, s in spans]
    page = render_template(
        "dashboard.html",
        error=None,
        site=found,
        site_name=found.name,
        span=span,
        totals=totals,
        # The chart escapes what it writes (dates and numbers only).
        chart=Markup(render_chart(points)),
        pages=stats.top_pages(store, found, span, limit=TOP_PAGES, cache_seconds=keep)["pages"],
        referrers=stats.top_referrers(store, found, span, limit=TOP_REFERRERS, cache_seconds=keep)[
            "referrers"
        ],
        quick=quick,
        token=token,
        links=api_links(found, span, token),
    )
    return _html(page)
