"""Stats queries: date ranges in a site's timezone, totals, pages, series and referrers.

Everything here is read from structures the hit script keeps at write time (day hashes,
day zsets, daily HyperLogLogs, all-time totals); nothing scans a site's keys. HTTP lives
in `stats_api`, and the dashboard and CLI call the same functions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from hitcounter.errors import InvalidInput
from hitcounter.inputs import normalise_path
from hitcounter.sites import Site
from hitcounter.store import Store

DEFAULT_DAYS = 30
# The ranges, in days up to today, the dashboard links to. Workers sum their past days
# after each site's midnight, ahead of the day's first read (warming.py).
QUICK_RANGES = (7, DEFAULT_DAYS, 90)
# Day keys live 400 days by default: a longer range could only add zeros.
MAX_RANGE_DAYS = 400
# An hourly series has 24 points a day; a month of them is plenty for one answer.
MAX_HOUR_RANGE_DAYS = 31
DEFAULT_LIMIT = 10
MAX_LIMIT = 1000
MAX_OFFSET = 1_000_000
# How long the sum of a range's past days (page and referrer zsets) is kept for the next
# read. Past days do not change (an import forgets the sums), so this only bounds memory.
DEFAULT_CACHE_SECONDS = 3600
# Every reason a request can be dropped for. `unknown_site` drops belong to no site, so
# they are always zero here; listing it keeps the answer's shape the same for all reasons.
DROP_REASONS = ("bot", "origin", "unknown_site", "invalid", "rate_limited")
INTERVALS = ("day", "hour")

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DIGITS = re.compile(r"\d{1,9}")


@dataclass(frozen=True)
class DateRange:
    """An inclusive range of local days of one site."""

    start: date
    end: date

    @property
    def days(self) -> list[str]:
        count = (self.end - self.start).days + 1
        return [(self.start + timedelta(days=n)).isoformat() for n in range(count)]

    def as_dict(self) -> dict[str, str]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat()}


def today(site: Site, now: datetime | None = None) -> date:
    """The current date in the site's timezone."""
    return (now or datetime.now(site.zone)).astimezone(site.zone).date()


def parse_date(value: str, name: str) -> date:
    if not _DATE.fullmatch(value):
        raise InvalidInput(f"{name} must be a date as YYYY-MM-DD, not {value[:40]!r}")
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(f"{name} is not a real date: {value!r}") from exc


def parse_range(
    site: Site,
    start: str | None,
    end: str | None,
    *,
    max_days: int = MAX_RANGE_DAYS,
    now: datetime | None = None,
) -> DateRange:
    """Read `from` and `to`; either may be missing (default: the 30 days up to today)."""
    last = parse_date(end, "to") if end else None
    first = parse_date(start, "from") if start else None
    if last is None:
        last = max(today(site, now), first) if first else today(site, now)
    if first is None:
        first = _days_before(last, DEFAULT_DAYS - 1)
    if first > last:
        raise InvalidInput(f"from ({first}) is after to ({last})")
    if (last - first).days + 1 > max_days:
        raise InvalidInput(f"the range may span at most {max_days} days")
    return DateRange(first, last)


def last_days(site: Site, count: int, now: datetime | None = None) -> DateRange:
    """The `count` days up to the site's today."""
    end = today(site, now)
    return DateRange(_days_before(end, count - 1), end)


def _days_before(day: date, count: int) -> date:
    try:
        return day - timedelta(days=count)
    except OverflowError:
        return date.min


def parse_int(value: str | None, name: str, default: int, low: int, high: int) -> int:
    """Read a whole-number query parameter within [low, high]."""
    if value is None or value == "":
        return default
    if not _DIGITS.fullmatch(value) or not low <= int(value) <= high:
        raise InvalidInput(f"{name} must be a whole number from {low} to {high}")
    return int(value)


def summary(
    store: Store, site: Site, span: DateRange, *, cache_seconds: int = DEFAULT_CACHE_SECONDS
) -> dict[str, Any]:
    """Totals over the range: hits, raw hits, visitors, pages, drops; and all time."""
    read = store.range_summary(
        site.name, span.days, today=today(site).isoformat(), cache_seconds=cache_seconds
    )
    dropped = dict.fromkeys(DROP_REASONS, 0)
    hits = raw = 0
    for fields in read.days:
        hits += fields.get("hits", 0)
        raw += fields.get("raw", 0)
        for reason in DROP_REASONS:
            dropped[reason] += fields.get(f"drop:{reason}", 0)
    return {
        "site": site.name,
        "timezone": site.timezone,
        **span.as_dict(),
        "hits": hits,
        "raw_hits": raw,
        "visitors": read.visitors,
        "pages": read.pages,
        "dropped": dropped,
        "all_time": {
            "hits": read.all_time_hits,
            "raw_hits": read.all_time_raw,
            "pages": read.all_time_pages,
        },
    }


def top_pages(
    store: Store,
    site: Site,
    span: DateRange,
    *,
    limit: int,
    offset: int = 0,
    cache_seconds: int = DEFAULT_CACHE_SECONDS,
) -> dict[str, Any]:
    """Pages by counted hits in the range, descending, one slice of them."""
    total, rows = store.top(
        site.name,
        "pages",
        span.days,
        offset,
        limit,
        today=today(site).isoformat(),
        cache_seconds=cache_seconds,
    )
    return {
        "site": site.name,
        **span.as_dict(),
        "total": total,
        "limit": limit,
        "offset": offset,
        "pages": [{"path": path, "hits": hits} for path, hits in rows],
    }


def top_referrers(
    store: Store,
    site: Site,
    span: DateRange,
    *,
    limit: int,
    cache_seconds: int = DEFAULT_CACHE_SECONDS,
) -> dict[str, Any]:
    """Referring hosts by counted hits in the range, descending."""
    total, rows = store.top(
        site.name,
        "referrers",
        span.days,
        0,
        limit,
        today=today(site).isoformat(),
        cache_seconds=cache_seconds,
    )
    return {
        "site": site.name,
        **span.as_dict(),
        "total": total,
        "limit": limit,
        "referrers": [{"host": host, "hits": hits} for host, hits in rows],
    }


def timeseries(
    store: Store, site: Site, span: DateRange, *, interval: str, path: str | None
) -> dict[str, Any]:
    """Zero-filled points of the range, by day or by local hour; one page's if `path`."""
    points: list[dict[str, Any]]
    days = span.days
    if interval == "hour":
        # Hours are kept per site only (the day hash's h:HH fields), not per page.
        if path is not None:
            raise InvalidInput("interval=hour is kept per site, not per page: use interval=day")
        points = [
            {"time": f"{day}T{hour:02d}:00", "hits": fields.get(f"h:{hour:02d}", 0)}
            for day, fields in zip(days, store.day_fields(site.name, days), strict=True)
            for hour in range(24)
        ]
    elif path is not None:
        # Visitors are counted per site and day, not per page: page points carry hits only.
        hits = store.daily_page_hits(site.name, path, days)
        points = [{"date": day, "hits": n} for day, n in zip(days, hits, strict=True)]
    else:
        fields = store.day_fields(site.name, days)
        visitors = store.daily_visitors(site.name, days)
        points = [
            {"date": day, "hits": f.get("hits", 0), "visitors": v}
            for day, f, v in zip(days, fields, visitors, strict=True)
        ]
    return {
        "site": site.name,
        "timezone": site.timezone,
        **span.as_dict(),
        "interval": interval,
        "path": path,
        "points": points,
    }


def timeseries_query(
    store: Store, site: Site, args: Mapping[str, str], now: datetime | None = None
) -> dict[str, Any]:
    """Validate a timeseries request's parameters and answer it."""
    interval = args.get("interval") or "day"
    if interval not in INTERVALS:
        raise InvalidInput("interval must be day or hour")
    max_days = MAX_HOUR_RANGE_DAYS if interval == "hour" else MAX_RANGE_DAYS
    span = parse_range(site, args.get("from"), args.get("to"), max_days=max_days, now=now)
    raw_path = args.get("path")
    path = normalise_path(raw_path) if raw_path else None
    return timeseries(store, site, span, interval=interval, path=path)
