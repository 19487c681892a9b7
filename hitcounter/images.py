"""Visible counters: SVG badges and classic digit counters.

Both count through the pixel's hit pipeline, so the same rules and drops apply. Every
answer, refusals included, is an SVG image: a broken embed says what is wrong on the page
where it is seen, and the status and `X-Hitcounter` header say it to machines.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from flask import Blueprint, Response, request

from hitcounter.embed import record, referer_path
from hitcounter.errors import InvalidInput, NotFound, StoreUnavailable
from hitcounter.httputil import NO_CACHE_HEADERS, add_cors, strong_etag
from hitcounter.inputs import normalise_path
from hitcounter.render.badge import BADGE_STYLES, format_count, render_badge
from hitcounter.render.colors import decimal_rgb, parse_color
from hitcounter.render.digits import DIGIT_THEMES, MAX_DIGITS, MIN_DIGITS, render_digits
from hitcounter.services import get_services
from hitcounter.sites import Site

bp = Blueprint("images", __name__)

SVG_TYPE = "image/svg+xml; charset=utf-8"
# The drawings are attributes only: no script, no <style>, nothing fetched. An SVG opened
# as a document on our origin then cannot run anything a crafted URL smuggles in.
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'"
DEFAULT_LABEL = "views"
DEFAULT_STYLE = "flat"
DEFAULT_THEME = "odometer"
DEFAULT_DIGITS = 6
REFUSAL_COLOR = "critical"
UNAVAILABLE_COLOR = "inactive"
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
_SMALL_INTEGER = re.compile(r"[0-9]{1,3}")

# What the image says for each reason a hit is not counted: short enough for a badge.
REASON_TEXT = {
    "unknown_site": "unknown site",
    "bot": "bot",
    "origin": "origin not allowed",
    "rate_limited": "rate limited",
    "prefetch": "prefetch",
    "unavailable": "unavailable",
}


@dataclass(eq=False)
class Refusal(Exception):
    """Why an image shows a reason instead of a count."""

    reason: str  # for X-Hitcounter: a drop reason, "invalid" or "unavailable"
    text: str  # what the image says
    status: int
    site: Site | None = None


@dataclass(frozen=True)
class Shown:
    """The count an image shows, the site it belongs to, and why it did not grow if so."""

    hits: int
    site: Site | None
    reason: str = ""  # "duplicate" for a repeat view inside the dedupe window


@bp.get("/badge/<site>.svg")
def badge(site: str) -> Response:
    """Count a view and answer a shields-style badge with the page's hits."""
    label = request.args.get("label", DEFAULT_LABEL)
    style = DEFAULT_STYLE
    try:
        # Every display parameter is checked before counting: a refused image never counts.
        style = _choice("style", BADGE_STYLES, DEFAULT_STYLE)
        color = _colour("color", "#4c1")
        label_color = _colour("label_color", "#555")
        abbreviate = _flag("abbreviate", default=False)
        counting = _counting()
        shown = _hits(site, counting)
    except Refusal as refusal:
        return _refused(refusal, label or DEFAULT_LABEL, style)
    body = render_badge(
        label,
        format_count(shown.hits, abbreviate),
        style=style,
        color=color,
        label_color=label_color,
    )
    return _shown(body, shown, conditional=not counting)


@bp.get("/counter/<site>.svg")
def counter(site: str) -> Response:
    """Count a view and answer a classic digit counter with the page's hits."""
    try:
        digits = _digits()
        theme = _choice("theme", DIGIT_THEMES, DEFAULT_THEME)
        fg = _colour_or_decimal("fg", "f")
        bg = _colour_or_decimal("bg", "b")
        counting = _counting()
        shown = _hits(site, counting)
    except Refusal as refusal:
        return _refused(refusal, DEFAULT_LABEL, DEFAULT_STYLE)
    body = render_digits(shown.hits, digits=digits, theme=theme, fg=fg, bg=bg)
    return _shown(body, shown, conditional=not counting)


# -- parameters ----------------------------------------------------------------------------


def _invalid(what: str) -> Refusal:
    return Refusal("invalid", f"invalid {what}", 400)


def _choice(name: str, allowed: Collection[str], default: str) -> str:
    """One of `allowed` (any case), or `default` when the parameter is absent."""
    value = (request.args.get(name) or default).strip().lower()
    if value not in allowed:
        raise _invalid(name)
    return value


def _colour(name: str, default: str) -> str:
    try:
        return parse_color(request.args.get(name), default)
    except InvalidInput as exc:
        raise _invalid("colour") from exc


def _colour_or_decimal(hex_name: str, decimal_name: str) -> str | None:
    """A hex or named colour; else SimpleHitCounter's decimal RGB; else the theme's own."""
    hex_value = (request.args.get(hex_name) or "").strip()
    decimal_value = (request.args.get(decimal_name) or "").strip()
    try:
        if hex_value:
            return parse_color(hex_value, hex_value)
        if decimal_value:
            return decimal_rgb(decimal_value)
    except InvalidInput as exc:
        raise _invalid("colour") from exc
    return None


def _digits() -> int:
    value = (request.args.get("digits") or str(DEFAULT_DIGITS)).strip()
    if not _SMALL_INTEGER.fullmatch(value) or not MIN_DIGITS <= int(value) <= MAX_DIGITS:
        raise _invalid("digits")
    return int(value)


def _flag(name: str, *, default: bool) -> bool:
    """A yes/no parameter: 1/true/yes/on or 0/false/no/off; anything else is refused."""
    value = (request.args.get(name) or "").strip().lower()
    if not value:
        return default
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise _invalid(name)


def _counting() -> bool:
    """Count unless asked not to; HEAD checks a link, it is not a view."""
    return _flag("count", default=True) and request.method != "HEAD"


# -- counting ------------------------------------------------------------------------------


def _hits(site: str, counting: bool) -> Shown:
    """Return the page's hits after counting this view (or only reading them)."""
    # Image proxies such as camo send no Referer: their badge is for the site's front page.
    path = request.args.get("path") or referer_path() or "/"
    try:
        return _record(site, path) if counting else _read(site, path)
    except StoreUnavailable as exc:
        raise Refusal("unavailable", REASON_TEXT["unavailable"], 503) from exc


def _record(site: str, path: str) -> Shown:
    """Count this view through the pixel's pipeline; refuse with the reason it was dropped."""
    outcome = record(site, path, None)
    if outcome.spooled:
        # Kept in the spool while Redis is away, which cannot say the count: not a 0.
        raise Refusal("spooled", REASON_TEXT["unavailable"], 200, outcome.site)
    if outcome.accepted:  # a duplicate is accepted too: it shows the current count
        return Shown(outcome.hits, outcome.site, outcome.reason)
    if outcome.reason == "invalid":
        # The pipeline refuses a bad site name before it knows any site, a bad path after.
        text = "invalid path" if outcome.site else "invalid site"
    else:
        text = REASON_TEXT.get(outcome.reason, outcome.reason.replace("_", " "))
    raise Refusal(outcome.reason, text, outcome.status, outcome.site)


def _read(site: str, path: str) -> Shown:
    """Read the page's hits without counting; an unknown site or bad path is still refused."""
    services = get_services()
    try:
        found = services.sites.require(site)
    except NotFound as exc:
        raise Refusal("unknown_site", REASON_TEXT["unknown_site"], 404) from exc
    except InvalidInput as exc:
        raise _invalid("site") from exc
    try:
        page = normalise_path(path)
    except InvalidInput as exc:
        raise Refusal("invalid", "invalid path", 400, found) from exc
    hits, _raw, _site_hits = services.store.page_count(found.name, page)
    return Shown(hits, found)


# -- answers -------------------------------------------------------------------------------


def _shown(body: str, shown: Shown, *, conditional: bool) -> Response:
    """Answer the image of a count; a repeat view says so, as the pixel does."""
    response = _answer(body, 200, shown.site, conditional=conditional)
    if shown.reason:
        response.headers["X-Hitcounter"] = shown.reason
    return response


def _refused(refusal: Refusal, label: str, style: str) -> Response:
    """Answer a badge that says why there is no count, with the refusal's status."""
    color = UNAVAILABLE_COLOR if refusal.status >= 500 else REFUSAL_COLOR
    body = render_badge(label, refusal.text, style=style, color=color)
    response = _answer(body, refusal.status, refusal.site, conditional=False)
    response.headers["X-Hitcounter"] = refusal.reason
    return response


def _answer(body: str, status: int, site: Site | None, *, conditional: bool) -> Response:
    """Wrap an SVG with headers that stop every cache and forbid the image to run anything."""
    response = Response(body, status=status, content_type=SVG_TYPE)
    response.headers.update(NO_CACHE_HEADERS)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    # The ETag hashes the body, which holds the count: a new count never reuses an ETag.
    response.set_etag(strong_etag(response.get_data()))
    response = add_cors(response, site)
    if conditional:
        # Only a read may answer 304 (in place): a counting fetch must get the fresh image.
        response.make_conditional(request)
    return response
