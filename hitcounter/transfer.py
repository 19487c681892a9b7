"""Export and import of everything kept for one site.

Exports are generators of text chunks: they read the store in batches (ZSCAN, HSCAN,
one day at a time), so a site of any size is never held in memory at once. Two import
forms are taken: the JSON export itself (a restore: the values it names replace the
store's), and `{"pages": {path: hits}}` starting counts (added) for owners moving from
another counter.

Daily visitors are HyperLogLogs. On Redis the export carries each one's own bytes
(`visitors_hll`, base64), so a Redis-to-Redis round trip gives back the very same visitor
counts for every range. The embedded store (fakeredis) cannot give or take those bytes:
there the day's count travels alone and is restored with stand-in ids, which gives each
day its count back but counts a visitor seen on two days twice over a range.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hitcounter.errors import InvalidInput
from hitcounter.inputs import normalise_path
from hitcounter.services import Services
from hitcounter.sites import SETTING_FIELDS, Site
from hitcounter.stats import parse_date, today
from hitcounter.store import OTHER_PAGE, DayRestore, Store

FORMAT = "hitcounter-export"
VERSION = 1
FORMATS = ("json", "csv")
PAGE_BATCH = 1000
MAX_COUNT = 10**15
MAX_DAY_VISITORS = 10**7
CSV_HEADER = ("section", "date", "key", "value")
_HOST = re.compile(r"[a-z0-9_.:\[\]-]{1,253}")
_REASON = re.compile(r"[a-z_]{1,32}")
_HOUR = re.compile(r"[0-2][0-9]")

Progress = Callable[[int], None]


def _no_progress(_: int) -> None:
    pass


# -- export -------------------------------------------------------------------------------


@dataclass
class Export:
    """One export of one site: which days it holds, then its JSON or CSV, streamed."""

    store: Store
    site: Site
    days: list[str]
    exported_at: str

    @classmethod
    def plan(cls, store: Store, site: Site, *, retention_days: int) -> Export:
        """Find the days that hold data by probing each retained date (no key scan)."""
        last = today(site) + timedelta(days=1)
        candidates = [(last - timedelta(days=n)).isoformat() for n in range(retention_days + 3)][
            ::-1
        ]
        days: list[str] = []
        for start in range(0, len(candidates), 500):
            days += store.days_with_data(site.name, candidates[start : start + 500])
        stamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        return cls(store, site, days, stamp)

    def json_chunks(self, progress: Progress = _no_progress) -> Iterator[str]:
        """Yield the export as JSON text, one piece at a time."""
        hits, raw = self.store.all_time_totals(self.site.name)
        settings = self.site.settings()
        yield (
            f'{{"format": "{FORMAT}", "version": {VERSION}, '
            f'"exported_at": {json.dumps(self.exported_at)},\n'
            f'"site": {json.dumps(settings)},\n'
            f'"totals": {json.dumps({"hits": hits, "raw_hits": raw})},\n"pages": ['
        )
        first = True
        for batch in self.store.iter_pages(self.site.name, PAGE_BATCH):
            rows = ",\n".join(
                json.dumps({"path": path, "hits": h, "raw_hits": r}) for path, h, r in batch
            )
            yield ("\n" if first else ",\n") + rows
            first = False
        yield '],\n"days": ['
        progress(1)
        for n, day in enumerate(self.days):
            yield ("\n" if n == 0 else ",\n") + "".join(self._day_json(day))
            progress(1)
        yield "]}\n"

    def _day_json(self, day: str) -> Iterator[str]:
        snapshot = self.store.day_snapshot(self.site.name, day)
        head = {
            "date": day,
            "hits": snapshot.fields.get("hits", 0),
            "raw_hits": snapshot.fields.get("raw", 0),
            "hours": _prefixed(snapshot.fields, "h:"),
            "dropped": _prefixed(snapshot.fields, "drop:"),
            "visitors": snapshot.visitors,
        }
        if snapshot.hll is not None:
            head["visitors_hll"] = base64.b64encode(snapshot.hll).decode()
        yield json.dumps(head)[:-1] + ', "pages": {'
        yield from _json_members(self.store.iter_day_pages(self.site.name, day))
        yield '}, "referrers": {'
        yield from _json_members(self.store.iter_day_referrers(self.site.name, day))
        yield "}}"

    def csv_chunks(self, progress: Progress = _no_progress) -> Iterator[str]:
        """Yield the export as CSV rows `section,date,key,value`, a batch at a time.

        Sections: setting, total, page (all-time hits), page_raw (all-time raw hits),
        day (hits, raw_hits, visitors), hour, dropped, page_day, referrer. Every cell
        written comes from a normalised path, a hostname, a setting or a number, so
        none starts with a spreadsheet formula character.
        """
        yield _csv_rows([CSV_HEADER])
        site = self.site
        settings = [
            ("setting", "", key, json.dumps(value) if isinstance(value, list | bool) else value)
            for key, value in site.settings().items()
        ]
        hits, raw = self.store.all_time_totals(site.name)
        yield _csv_rows([*settings, ("total", "", "hits", hits), ("total", "", "raw_hits", raw)])
        for batch in self.store.iter_pages(site.name, PAGE_BATCH):
            rows: list[tuple[Any, ...]] = []
            for path, h, r in batch:
                rows += [("page", "", path, h), ("page_raw", "", path, r)]
            yield _csv_rows(rows)
        progress(1)
        for day in self.days:
            snapshot = self.store.day_snapshot(site.name, day)
            fields = snapshot.fields
            rows = [
                ("day", day, "hits", fields.get("hits", 0)),
                ("day", day, "raw_hits", fields.get("raw", 0)),
                ("day", day, "visitors", snapshot.visitors),
            ]
            rows += [("hour", day, h, n) for h, n in _prefixed(fields, "h:").items()]
            rows += [("dropped", day, r, n) for r, n in _prefixed(fields, "drop:").items()]
            yield _csv_rows(rows)
            for section, members in (
                ("page_day", self.store.iter_day_pages(site.name, day)),
                ("referrer", self.store.iter_day_referrers(site.name, day)),
            ):
                batch_rows: list[tuple[Any, ...]] = []
                for key, n in members:
                    batch_rows.append((section, day, key, n))
                    if len(batch_rows) >= PAGE_BATCH:
                        yield _csv_rows(batch_rows)
                        batch_rows = []
                if batch_rows:
                    yield _csv_rows(batch_rows)
            progress(1)


def _prefixed(fields: Mapping[str, int], prefix: str) -> dict[str, int]:
    return {k[len(prefix) :]: v for k, v in sorted(fields.items()) if k.startswith(prefix)}


def _json_members(members: Iterator[tuple[str, int]]) -> Iterator[str]:
    batch: list[str] = []
    first = True
    for key, n in members:
        batch.append(f"{json.dumps(key)}: {n}")
        if len(batch) >= PAGE_BATCH:
            yield ("" if first else ", ") + ", ".join(batch)
            first, batch = False, []
    if batch:
        yield ("" if first else ", ") + ", ".join(batch)


def _csv_rows(rows: list[tuple[Any, ...]] | list[tuple[str, ...]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


# -- import -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DayData:
    day: str
    restore: DayRestore


@dataclass(frozen=True)
class ExportData:
    settings: dict[str, Any]
    hits: int
    raw: int
    pages: list[tuple[str, int, int]]
    days: list[DayData]


def import_size(body: Any) -> int:
    """How many steps an import of this body takes (pages, then days), for progress bars."""
    if not isinstance(body, dict):
        return 0
    pages, days = body.get("pages"), body.get("days")
    return (len(pages) if isinstance(pages, list | dict) else 0) + (
        len(days) if isinstance(days, list) else 0
    )


def import_body(
    services: Services,
    site_name: str,
    body: Any,
    *,
    max_pages: int,
    retention_days: int,
    progress: Progress = _no_progress,
) -> dict[str, Any]:
    """Import an export or starting counts into an existing site; return what was done."""
    site = services.sites.fresh(site_name)
    if isinstance(body, dict) and "format" in body:
        data = parse_export(body, retention_days=retention_days)
        return _restore(services, site, data, max_pages, progress)
    if isinstance(body, dict) and set(body) == {"pages"}:
        counts = parse_starting_counts(body["pages"])
        return _add_starting_counts(services.store, site, counts, max_pages, progress)
    raise InvalidInput(
        'the body must be an export (with "format": "hitcounter-export") or {"pages": {path: hits}}'
    )


def parse_starting_counts(pages: Any) -> dict[str, int]:
    """Validate {path: hits}; paths are normalised, and paths that become equal are summed."""
    if not isinstance(pages, dict):
        raise InvalidInput('"pages" must be an object of path: hits')
    counts: dict[str, int] = {}
    for raw_path, hits in pages.items():
        path = _page_path(raw_path, f"pages[{raw_path[:80]!r}]", allow_other=False)
        counts[path] = counts.get(path, 0) + _count(hits, f"pages[{raw_path[:80]!r}]")
    return counts


def _add_starting_counts(
    store: Store, site: Site, counts: dict[str, int], max_pages: int, progress: Progress
) -> dict[str, Any]:
    items = [(path, hits) for path, hits in counts.items() if hits > 0]
    other = total = 0
    for start in range(0, len(items), PAGE_BATCH):
        batch = items[start : start + PAGE_BATCH]
        kept, scores = store.page_scores(site.name, [path for path, _ in batch])
        rows: list[tuple[str, int, int]] = []
        folded = 0
        for (path, hits), score in zip(batch, scores, strict=True):
            if score is None and path != OTHER_PAGE:
                if kept >= max_pages:
                    # The same rule as for hits: past the cap, new paths count as (other).
                    folded += hits
                    other += 1
                    continue
                kept += 1
            rows.append((path, hits, hits))
            total += hits
        if folded:
            rows.append((OTHER_PAGE, folded, folded))
            total += folded
        store.add_pages(site.name, rows)
        progress(len(batch))
    store.forget_unions(site.name)
    return {"site": site.name, "form": "pages", "pages": len(items), "hits": total, "other": other}


def _restore(
    services: Services, site: Site, data: ExportData, max_pages: int, progress: Progress
) -> dict[str, Any]:
    store = services.store
    kept = store.page_scores(site.name, [])[0] if data.pages else 0
    new = 0
    for start in range(0, len(data.pages), PAGE_BATCH):
        batch = data.pages[start : start + PAGE_BATCH]
        scores = store.page_scores(site.name, [path for path, _, _ in batch])[1]
        new += sum(1 for score in scores if score is None)
    if kept + new > max_pages:
        raise InvalidInput(
            f"the export holds {kept + new} distinct pages with those already kept, more than "
            f"the {max_pages} this service keeps per site (HITCOUNTER_MAX_PAGES)"
        )
    if data.settings:
        services.sites.update(site.name, data.settings)
    for start in range(0, len(data.pages), PAGE_BATCH):
        batch = data.pages[start : start + PAGE_BATCH]
        store.set_pages(site.name, batch)
        progress(len(batch))
    store.set_totals(site.name, data.hits, data.raw)
    now = datetime.now(UTC).timestamp()
    restored = 0
    # Oldest first, as the returns index notes days (see Store.restore_day).
    for day in sorted(data.days, key=lambda found: found.day):
        if day.restore.expire_at > now:
            store.restore_day(site.name, day.day, day.restore)
            restored += 1
        progress(1)
    store.forget_unions(site.name)
    return {
        "site": site.name,
        "form": "export",
        "pages": len(data.pages),
        "days": restored,
        "expired_days": len(data.days) - restored,
    }


def parse_export(body: dict[str, Any], *, retention_days: int) -> ExportData:
    """Validate an export completely before anything is written."""
    if body.get("format") != FORMAT or body.get("version") != VERSION:
        raise InvalidInput(f'an export must have "format": "{FORMAT}" and "version": {VERSION}')
    site = body.get("site", {})
    if not isinstance(site, dict):
        raise InvalidInput("site must be an object of settings")
    settings = {key: site[key] for key in SETTING_FIELDS if key in site}
    totals = body.get("totals", {})
    if not isinstance(totals, dict):
        raise InvalidInput("totals must be an object")
    hits = _count(totals.get("hits", 0), "totals.hits")
    raw = _count(totals.get("raw_hits", 0), "totals.raw_hits")
    pages_in = body.get("pages", [])
    if not isinstance(pages_in, list):
        raise InvalidInput("pages must be a list of {path, hits, raw_hits}")
    pages: dict[str, tuple[str, int, int]] = {}
    for n, page in enumerate(pages_in):
        where = f"pages[{n}]"
        if not isinstance(page, dict):
            raise InvalidInput(f"{where} must be an object")
        path = _page_path(page.get("path"), where, allow_other=True)
        pages[path] = (
            path,
            _count(page.get("hits", 0), f"{where}.hits"),
            _count(page.get("raw_hits", 0), f"{where}.raw_hits"),
        )
    days_in = body.get("days", [])
    if not isinstance(days_in, list):
        raise InvalidInput("days must be a list")
    days: dict[str, DayData] = {}
    for n, day in enumerate(days_in):
        parsed = _parse_day(day, f"days[{n}]", retention_days)
        days[parsed.day] = parsed
    return ExportData(settings, hits, raw, list(pages.values()), list(days.values()))


def _parse_day(day: Any, where: str, retention_days: int) -> DayData:
    if not isinstance(day, dict):
        raise InvalidInput(f"{where} must be an object")
    if not isinstance(day.get("date"), str):
        raise InvalidInput(f"{where}.date must be a date as YYYY-MM-DD")
    when = parse_date(day["date"], f"{where}.date")
    fields: dict[str, int] = {}
    for name, key in (("hits", "hits"), ("raw_hits", "raw")):
        if name in day:
            fields[key] = _count(day[name], f"{where}.{name}")
    for hour, n in _object(day.get("hours", {}), f"{where}.hours").items():
        if not _HOUR.fullmatch(hour) or int(hour) > 23:
            raise InvalidInput(f"{where}.hours: {hour[:8]!r} is not an hour 00 to 23")
        fields[f"h:{hour}"] = _count(n, f"{where}.hours.{hour}")
    for reason, n in _object(day.get("dropped", {}), f"{where}.dropped").items():
        if not _REASON.fullmatch(reason):
            raise InvalidInput(f"{where}.dropped: {reason[:40]!r} is not a drop reason")
        fields[f"drop:{reason}"] = _count(n, f"{where}.dropped.{reason}")
    pages = {
        _page_path(path, f"{where}.pages", allow_other=True): _count(n, f"{where}.pages")
        for path, n in _object(day.get("pages", {}), f"{where}.pages").items()
    }
    referrers: dict[str, int] = {}
    for host, n in _object(day.get("referrers", {}), f"{where}.referrers").items():
        if not _HOST.fullmatch(host):
            raise InvalidInput(f"{where}.referrers: {host[:80]!r} is not a hostname")
        referrers[host] = _count(n, f"{where}.referrers")
    visitors = _count(day.get("visitors", 0), f"{where}.visitors")
    if visitors > MAX_DAY_VISITORS:
        raise InvalidInput(f"{where}.visitors is larger than {MAX_DAY_VISITORS}")
    hll = _parse_hll(day.get("visitors_hll"), f"{where}.visitors_hll")
    # Day keys expire as they would have: the retention period after the day.
    expires = datetime.combine(when + timedelta(days=1), datetime.min.time(), UTC)
    try:
        expire_at = int((expires + timedelta(days=retention_days)).timestamp())
    except OverflowError:
        expire_at = int(datetime.max.replace(tzinfo=UTC).timestamp())
    restore = DayRestore(fields, pages, referrers, visitors, hll, expire_at)
    return DayData(when.isoformat(), restore)


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(f"{where} must be an object")
    return value


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise InvalidInput(f"{where} must be a whole number from 0 to {MAX_COUNT}")
    return value


def _page_path(value: Any, where: str, *, allow_other: bool) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{where}: a path must be a string")
    if allow_other and value == OTHER_PAGE:
        return value
    try:
        path = normalise_path(value)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc.message}") from exc
    if allow_other and path != value:
        raise InvalidInput(f"{where}: {value[:80]!r} is not a normalised path")
    return path


# -- HyperLogLog bytes ----------------------------------------------------------------------

HLL_REGISTERS = 16384
HLL_HEADER = 16
HLL_DENSE_SIZE = HLL_HEADER + HLL_REGISTERS * 6 // 8


def _parse_hll(value: Any, where: str) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 4 * HLL_DENSE_SIZE:
        raise InvalidInput(f"{where} must be base64 of a Redis HyperLogLog")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"{where} is not base64") from exc
    if not valid_hll(raw):
        raise InvalidInput(f"{where} is not a well-formed Redis HyperLogLog")
    # Clear the cached cardinality (the top bit marks it stale): Redis recounts it.
    return raw[:15] + bytes([raw[15] | 0x80]) + raw[HLL_HEADER:]


def valid_hll(raw: bytes) -> bool:
    """Check a Redis HyperLogLog's bytes before they are stored.

    Redis checks only the header of a HyperLogLog written with SET; a sparse one whose
    runs do not add up to exactly 16384 registers has crashed servers, so the runs are
    counted here.
    """
    if len(raw) < HLL_HEADER or raw[:4] != b"HYLL":
        return False
    encoding = raw[4]
    if encoding == 0:
        return len(raw) == HLL_DENSE_SIZE
    if encoding != 1:
        return False
    registers, i = 0, HLL_HEADER
    while i < len(raw):
        op = raw[i]
        if op & 0xC0 == 0x00:  # ZERO: 1 to 64 empty registers
            registers += (op & 0x3F) + 1
            i += 1
        elif op & 0xC0 == 0x40:  # XZERO: 1 to 16384 empty registers, two bytes
            if i + 1 >= len(raw):
                return False
            registers += (((op & 0x3F) << 8) | raw[i + 1]) + 1
            i += 2
        else:  # VAL: 1 to 4 registers of one value
            registers += (op & 0x03) + 1
            i += 1
        if registers > HLL_REGISTERS:
            return False
    return registers == HLL_REGISTERS


def export_name(site: Site, fmt: str, on: date | None = None) -> str:
    """The download's file name: site and date."""
    return f"{site.name}-{(on or today(site)).isoformat()}.{fmt}"
