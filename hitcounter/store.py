"""The one module that talks to Redis: key schema, Lua scripts, client construction.

Views and services call `Store` methods; nothing else imports `redis`. Every Redis error
is turned into `StoreUnavailable` here, once, at the boundary.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import operator
import secrets
import struct
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from time import perf_counter
from typing import Any, ParamSpec, TypeVar
from urllib.parse import unquote, urlsplit

import hiredis
import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import NoScriptError
from redis.retry import Retry

from hitcounter import metrics
from hitcounter.batching import GroupCommit
from hitcounter.errors import InvalidInput, StoreUnavailable
from hitcounter.spool import Replayer, Spool, SpoolFull, retriable, writer_day

P = ParamSpec("P")
R = TypeVar("R")

OTHER_PAGE = "(other)"
# Unions of past days a site keeps (per kind): the dashboard's three quick ranges,
# prepared daily, and a few of readers' own; one pushed out lives 2 s more, then goes.
KEPT_UNIONS = 6
REPLACED_UNION_SECONDS = 2
# How long counted overlaps of zsets are kept after their last change (distinct.lua).
OVERLAPS_SECONDS = 86400
# How deep the first read of each zset goes when ranking a sum of zsets.
TOP_FIRST_DEPTH = 100
# Rankings whose rows read a Store keeps (see Store._top_of_sum).
SUM_ROWS_KEPT = 256
# Of `depth` rows wanted from one day's buckets, each bucket gives this many times its
# share (the top rows are spread over them, but not evenly).
BUCKET_SHARE = 2


class Keys:
    """The Redis key schema, built only through these methods.

    Global keys (one slot each on a cluster; never used together in one command):

    - `{p}:sites`                 set of site names
    - `{p}:salt:{utc-date}`       32 random bytes; expires as the next day ends, so at
                                  most two exist (today's and yesterday's)

    Per-site keys, all under the hash tag `{site}` so one hit is one script on one shard.
    `day` is the date in the site's timezone:

    - `{p}:{site}:site`           hash: the site's settings and its token hash
    - `{p}:{site}:pages:{b}`      hash: path -> counted hits, all time, for the paths of
                                  page bucket `b` (see below)
    - `{p}:{site}:raw:{b}`        hash: path -> raw hits, all time, page bucket `b`. Every
                                  page kept has a field here (a page is kept once it
                                  has one), so these list all pages
    - `{p}:{site}:totals`         hash: hits, raw (all time); pages: the number of
                                  fields in all raw buckets (pages kept, for the cap);
                                  returns_since: the first day number (see day_number)
                                  from which the returns counts are complete;
                                  late:<day number>: a day written after later ones
                                  (a replay from the spool, an import), which ranges
                                  holding it cannot be counted from those counts
    - `{p}:{site}:last:{b}`       hash: path -> the day number of its latest day with a
                                  counted hit, for the paths of page bucket `b`
    - `{p}:{site}:day:{day}`      hash: hits, raw, h:HH counted per local hour, drop:<reason>
    - `{p}:{site}:pday:{day}:{b}` zset: path -> counted hits that day, for the paths of
                                  day bucket `b`
    - `{p}:{site}:ret:{day}`      string: that day's pages counted by the days since
                                  each one's previous day with counted hits (a u32 at
                                  index g; g = 0: none, or more than MAX_GAP_DAYS):
                                  what counts any range's distinct pages (see
                                  Store._distinct_pages)
    - `{p}:{site}:uv:{day}`       HyperLogLog of visitor ids that day
    - `{p}:{site}:ref:{day}`      zset: referring host -> counted hits that day
    - `{p}:{site}:seen:{visitor}:{path digest}`  dedupe marker, expires after the window
    - `{p}:{site}:rate:{minute}`  hash: visitor id -> hits that minute; expires in 120 s
    - `{p}:{site}:applied:{utc-date}`  hash: writer id -> sequence number of its last hit
                                  applied, for writers (worker processes with a spool)
                                  started that day; expires SPOOL_REPLAY_DAYS after its
                                  first field, so it holds one field per worker start
    - `{p}:{site}:union:pages:{first}:{last}:{b}`  zset: the sum of past days' pday
                                  zsets of day bucket `b`, kept for a while
    - `{p}:{site}:union:referrers:{first}:{last}`  zset: the sum of past days' ref zsets
    - `{p}:{site}:union:{kind}`   list: the keys of the site's kept unions of that kind
    - `{p}:{site}:prepared:{day}` string: one worker's claim to sum the quick ranges'
                                  past days that local day (see warming.py); two days
    - `{p}:{site}:overlaps`       hash: "<zset a> <zset b>" -> their sizes and how many
                                  members they share, counted when a range's distinct
                                  pages or referrers were (distinct.lua); a day

    Day keys expire after the retention period; all-time keys never do.

    Buckets keep memory low: Redis stores a hash or zset of at most 128 entries of at
    most 64 bytes (`hash-max-listpack-entries`, `zset-max-listpack-entries` and their
    `-value` twins) as one compact listpack, a few bytes beside each path, where one big
    hash or zset costs a hashtable entry (and a skiplist node) per path. A path's page
    bucket is `crc32(path) % PAGE_BUCKETS` (128: 10,000 pages are ~80 a bucket) and its
    day bucket `crc32(path) % DAY_BUCKETS` (16: 1,000 pages a day are ~60 a bucket).
    A path is in exactly one bucket of each kind, so the buckets of one day hold
    disjoint sets of paths, and one page's counts are read from one key.
    """

    PAGE_BUCKETS = 128
    DAY_BUCKETS = 16

    def __init__(self, prefix: str = "hc") -> None:
        self.prefix = prefix

    def sites(self) -> str:
        return f"{self.prefix}:sites"

    def salt(self, utc_date: str) -> str:
        return f"{self.prefix}:salt:{utc_date}"

    def _site(self, site: str) -> str:
        return f"{self.prefix}:{{{site}}}"

    def site_settings(self, site: str) -> str:
        return f"{self._site(site)}:site"

    @staticmethod
    def _crc(path: str | bytes) -> int:
        return zlib.crc32(path if isinstance(path, bytes) else path.encode())

    @classmethod
    def page_bucket(cls, path: str | bytes) -> int:
        """The all-time bucket (0 to PAGE_BUCKETS - 1) of a path (str, or UTF-8 bytes)."""
        return cls._crc(path) % cls.PAGE_BUCKETS

    @classmethod
    def day_bucket(cls, path: str | bytes) -> int:
        """The page-day bucket (0 to DAY_BUCKETS - 1) of a path (str, or UTF-8 bytes)."""
        return cls._crc(path) % cls.DAY_BUCKETS

    @classmethod
    def buckets(cls, path: str | bytes) -> tuple[int, int]:
        """A path's page bucket and day bucket (one CRC for both, on the hit path)."""
        crc = cls._crc(path)
        return crc % cls.PAGE_BUCKETS, crc % cls.DAY_BUCKETS

    def pages(self, site: str, bucket: int) -> str:
        return f"{self._site(site)}:pages:{bucket}"

    def raw(self, site: str, bucket: int) -> str:
        return f"{self._site(site)}:raw:{bucket}"

    def pages_of(self, site: str, path: str | bytes) -> str:
        """The counted-hits bucket holding this path."""
        return self.pages(site, self.page_bucket(path))

    def raw_of(self, site: str, path: str | bytes) -> str:
        """The raw-hits bucket holding this path."""
        return self.raw(site, self.page_bucket(path))

    def all_pages(self, site: str) -> list[str]:
        """All counted-hits buckets of a site, bucket b at index b."""
        return [self.pages(site, b) for b in range(self.PAGE_BUCKETS)]

    def all_raw(self, site: str) -> list[str]:
        """All raw-hits buckets of a site, bucket b at index b."""
        return [self.raw(site, b) for b in range(self.PAGE_BUCKETS)]

    def totals(self, site: str) -> str:
        return f"{self._site(site)}:totals"

    def day(self, site: str, day: str) -> str:
        return f"{self._site(site)}:day:{day}"

    def page_day(self, site: str, day: str, bucket: int) -> str:
        return f"{self._site(site)}:pday:{day}:{bucket}"

    def page_day_of(self, site: str, day: str, path: str | bytes) -> str:
        """The page-day bucket holding this path on that day."""
        return self.page_day(site, day, self.day_bucket(path))

    def page_days(self, site: str, day: str) -> list[str]:
        """All page-day buckets of one day, bucket b at index b."""
        return [self.page_day(site, day, b) for b in range(self.DAY_BUCKETS)]

    def last_days(self, site: str, bucket: int) -> str:
        return f"{self._site(site)}:last:{bucket}"

    def all_last_days(self, site: str) -> list[str]:
        """All last-day buckets of a site, bucket b at index b."""
        return [self.last_days(site, b) for b in range(self.PAGE_BUCKETS)]

    def returns(self, site: str, day: str) -> str:
        return f"{self._site(site)}:ret:{day}"

    # The hit script's call adds these to a hit's own keys (see _script_calls), not the
    # hit's layout, so hits spooled before the returns index replay as they are.

    @staticmethod
    @functools.lru_cache(maxsize=4096)
    def last_days_beside(pages_key: str) -> str:
        """The last-day bucket of the paths of a pages bucket (`pages(site, b)`)."""
        site_prefix, _, bucket = pages_key.rpartition(":pages:")
        return f"{site_prefix}:last:{bucket}"

    @staticmethod
    @functools.lru_cache(maxsize=256)
    def returns_beside(day_key: str) -> tuple[str, int]:
        """The returns key and the day number of a day hash (`day(site, day)`)."""
        site_prefix, _, day = day_key.rpartition(":day:")
        return f"{site_prefix}:ret:{day}", day_number(day)

    def visitors(self, site: str, day: str) -> str:
        return f"{self._site(site)}:uv:{day}"

    def referrers(self, site: str, day: str) -> str:
        return f"{self._site(site)}:ref:{day}"

    def seen(self, site: str, visitor: str, path: str) -> str:
        return f"{self._site(site)}:seen:{visitor}:{_path_digest(path)}"

    def rate(self, site: str, minute: int) -> str:
        return f"{self._site(site)}:rate:{minute}"

    def applied(self, site: str, writer_day: str) -> str:
        return f"{self._site(site)}:applied:{writer_day}"

    def union(self, site: str, kind: str, first: str, last: str) -> list[str]:
        """The keys of one union: a day bucket each for pages, one key for referrers."""
        name = f"{self._site(site)}:union:{kind}:{first}:{last}"
        if kind == "pages":
            return [f"{name}:{b}" for b in range(self.DAY_BUCKETS)]
        return [name]

    def union_pointer(self, site: str, kind: str) -> str:
        return f"{self._site(site)}:union:{kind}"

    def prepared(self, site: str, day: str) -> str:
        return f"{self._site(site)}:prepared:{day}"

    def overlaps(self, site: str) -> str:
        return f"{self._site(site)}:overlaps"

    def all_of_site(self, site: str) -> str:
        """A SCAN pattern matching every key of one site."""
        return f"{self._site(site)}:*"


# Not frozen: a frozen dataclass's __init__ costs three times as much, once per hit.
@dataclass(slots=True)
class HitWrite:
    """Everything the hit script needs, computed before the one round trip."""

    site: str
    path: str
    referrer_host: str
    visitor: str
    day: str
    hour: int
    minute: int
    dedupe_seconds: int
    rate_limit: int
    max_pages: int
    retention_seconds: int


# Not frozen either (see HitWrite).
@dataclass(slots=True)
class HitCounts:
    counted: bool
    reason: str  # "" counted, "duplicate", or "rate_limited"
    page_hits: int
    site_hits: int
    path: str


CLUSTER_TROUBLE = (redis.exceptions.ClusterError, redis.exceptions.RedisClusterException)


def untimed_redis_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn any Redis connection trouble into StoreUnavailable, once, at the boundary.

    The hit path's form: a hit waits for a batch that many hits share, which is timed
    where its round trip happens; every other operation is timed too (below).
    """

    operation = func.__name__

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            away = _store_away(operation, exc)
            if away is None:
                raise
            raise away from exc

    return wrapper


def wrap_redis_errors(func: Callable[P, R]) -> Callable[P, R]:
    """untimed_redis_errors, with the operation's time in the Redis histogram."""
    return _timed(func.__name__, untimed_redis_errors(func))


def _timed(operation: str, func: Callable[P, R]) -> Callable[P, R]:
    """`func`, each call's time observed in the Redis histogram as `operation`."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        started = perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            metrics.observe_redis(operation, perf_counter() - started)

    return wrapper


def _store_away(operation: str, exc: Exception) -> StoreUnavailable | None:
    """Count a failed operation; StoreUnavailable to raise instead when the store is
    away, None when the error is something else (raised as it is)."""
    metrics.observe_redis_error(operation)
    if isinstance(exc, CLUSTER_TROUBLE):
        # CLUSTERDOWN while a replica takes over, no reachable node: the store is away
        # (ClusterDownError is also a ResponseError, so this comes first).
        return StoreUnavailable(f"the cluster cannot serve: {exc}")
    if isinstance(exc, redis.exceptions.RedisError) and _unreachable(exc):
        return StoreUnavailable(f"the store cannot be reached: {exc}")
    return None


def _unreachable(exc: BaseException) -> bool:
    """True for errors of the connection (refused, reset, timed out, cluster down)."""
    if isinstance(exc, CLUSTER_TROUBLE):
        return True
    return not isinstance(exc, redis.exceptions.ResponseError)


# Error replies of a Redis that is loading, full, read-only or failing over: the script
# did not run, and may run later.
NOT_RUN_REPLIES = (
    "LOADING", "OOM", "READONLY", "BUSY", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN", "NOREPLICAS"
)  # fmt: skip


def _not_run(result: Any) -> Any:
    """Mark a per-call result meaning "not run, try later" as StoreUnavailable."""
    if not isinstance(result, redis.exceptions.RedisError):
        return result
    not_run = _unreachable(result) or isinstance(
        result,
        redis.exceptions.BusyLoadingError
        | redis.exceptions.OutOfMemoryError
        | redis.exceptions.ReadOnlyError
        | redis.exceptions.TryAgainError
        | redis.exceptions.MasterDownError,
    )
    if not_run or str(result).startswith(NOT_RUN_REPLIES):
        return StoreUnavailable(f"redis did not run the hit: {result}")
    return result


def _lua(*names: str) -> str:
    """A script: the named files of hitcounter/lua, one after the other (the first ones
    define functions the last calls; Redis scripts cannot load one another)."""
    folder = resources.files("hitcounter").joinpath("lua")
    return "".join(folder.joinpath(name).read_text(encoding="utf-8") for name in names)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# -- the hit script's calls ------------------------------------------------------------
#
# A hit travels (and waits in the spool) as its own keys and arguments, laid out as
# below; a batch becomes one call of hits.lua per group of hits sharing their site, day,
# minute and writer.
#
# keys: 0 pages, 1 raw, 2 totals, 3 day, 4 page_day, 5 visitors, 6 referrers, 7 seen,
#       8 rate, 9 applied, 10-12 pages, raw and page_day of the overflow page
#       (pages, raw and page_day are the path's buckets, see Keys)
# args: 0 path, 1 referring host, 2 visitor, 3 dedupe window, 4 rate limit, 5 max pages,
#       6 retention, 7 hour, 8 overflow page, 9 writer, 10 applied TTL, 11 sequence number
HitCall = tuple[list[str], list[Any]]
_OTHER_BUCKETS = Keys.buckets(OTHER_PAGE)
ScriptCall = tuple[list[Any], list[Any], int]  # keys, args, number of hits
_SHARED_KEYS = (2, 3, 5, 6, 8, 9, 10, 11, 12)
_HIT_KEYS = (0, 1, 4, 7)
_SHARED_ARGS = (5, 6, 8, 9, 10)
_HIT_ARGS = (0, 1, 2, 3, 4, 7, 11)
# Each picks its part of a hit's keys or arguments, as a tuple.
_shared_keys_of = operator.itemgetter(*_SHARED_KEYS)
_hit_keys_of = operator.itemgetter(*_HIT_KEYS)
_shared_args_of = operator.itemgetter(*_SHARED_ARGS)
_hit_args_of = operator.itemgetter(*_HIT_ARGS)
# A hit as sent (with its sequence number): any other shape is another version's layout.
HIT_KEY_COUNT = len(_SHARED_KEYS) + len(_HIT_KEYS)
HIT_ARG_COUNT = len(_SHARED_ARGS) + len(_HIT_ARGS)
MAX_HITS_PER_CALL = 64
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def day_number(day: str) -> int:
    """A local date (ISO) as days since 1970-01-01, as the returns index keeps days."""
    return date.fromisoformat(day).toordinal() - _EPOCH_ORDINAL


def day_of_number(number: int) -> str:
    """The ISO date of a day number (the inverse of day_number)."""
    return date.fromordinal(_EPOCH_ORDINAL + number).isoformat()


# The longest gap between two days of one page that the returns counts tell apart: a
# range of up to this many days is counted from them (reads take at most 400 days).
MAX_GAP_DAYS = 512


def _grouped_order(hits: Sequence[HitCall]) -> list[int]:
    """The hits' indexes, each site's together, sites in order of their first hit.

    A site's hits keep their order (it decides which of two views is the duplicate);
    sites share no keys, so their hits may be applied in any order.
    """
    sites: dict[str, list[int]] = {}
    for i, (keys, _) in enumerate(hits):
        sites.setdefault(keys[2], []).append(i)  # keys[2]: the site's totals
    return [i for members in sites.values() for i in members]


def _script_calls(hits: Sequence[HitCall]) -> list[ScriptCall]:
    """One call of hits.lua per run of consecutive hits sharing their site, day, minute
    and writer (order is kept)."""
    calls: list[ScriptCall] = []
    shared: tuple[tuple[Any, ...], tuple[Any, ...]] | None = None
    for keys, args in hits:
        hit_shared = _shared_keys_of(keys), _shared_args_of(args)
        if hit_shared != shared or calls[-1][2] >= MAX_HITS_PER_CALL:
            shared = hit_shared
            # keys[10]: the overflow page's pages bucket; keys[3]: the day's hash.
            returns, day = Keys.returns_beside(keys[3])
            calls.append(
                (
                    [*hit_shared[0], Keys.last_days_beside(keys[10]), returns],
                    [*hit_shared[1], day, MAX_GAP_DAYS],
                    0,
                )
            )
        call_keys, call_args, count = calls[-1]
        call_keys += _hit_keys_of(keys)
        call_keys.append(Keys.last_days_beside(keys[0]))
        call_args += _hit_args_of(args)
        calls[-1] = (call_keys, call_args, count + 1)
    return calls


def _pack(*command: Any) -> bytes:
    """One command in Redis's protocol; hiredis packs in C (parts are str or int)."""
    return hiredis.pack_command(command)


def _hit_counts(result: Sequence[Any]) -> HitCounts:
    counted, reason, page_hits, site_hits, path = result
    return HitCounts(
        counted=bool(counted),
        reason=_text(reason),
        page_hits=int(page_hits),
        site_hits=int(site_hits),
        path=_text(path),
    )


def _per_hit(calls: Sequence[ScriptCall], replies: Sequence[Any]) -> list[Any]:
    """Each hit's five values from its call's reply, or its call's error."""
    results: list[Any] = []
    for (_, _, count), reply in zip(calls, replies, strict=True):
        if isinstance(reply, BaseException):
            results += [_not_run(reply)] * count
        else:
            results += [reply[j : j + 5] for j in range(0, 5 * count, 5)]
    return results


# -- stats reads and export/import: value types ---------------------------------------


@dataclass(frozen=True)
class RangeSummary:
    """What one pipeline reads for a stats answer over a range of days."""

    days: list[dict[str, int]]  # each day's hash: hits, raw, h:HH, drop:<reason>
    visitors: int
    pages: int  # distinct pages with counted hits in the range
    all_time_hits: int
    all_time_raw: int
    all_time_pages: int


@dataclass(frozen=True)
class Part:
    """Zsets that make one term of a ranked sum: one key, or the buckets of one day.

    Bucketed, `keys[b]` holds only members of day bucket `b` (Keys.day_bucket): the keys
    hold disjoint members, and a member is looked up in one of them. Else, one key.
    """

    keys: tuple[str, ...]
    bucketed: bool = False

    def key_of(self, member: str | bytes) -> str:
        return self.keys[Keys.day_bucket(member)] if self.bucketed else self.keys[0]

    def split(self, members: Sequence[Any]) -> list[tuple[str, list[int]]]:
        """Group members (by index) under the key of this part that may hold them."""
        if not self.bucketed:
            return [(self.keys[0], list(range(len(members))))]
        groups: dict[str, list[int]] = {}
        for i, member in enumerate(members):
            groups.setdefault(self.key_of(member), []).append(i)
        return list(groups.items())

    def pairs(self, other: Part) -> list[tuple[str, str]]:
        """The pairs of keys, one of each part, that can share members."""
        if self.bucketed and other.bucketed:
            return list(zip(self.keys, other.keys, strict=True))
        return [(a, b) for a in self.keys for b in other.keys]

    def depth(self, depth: int) -> int:
        """Rows to read from each key when `depth` rows of the part are wanted."""
        if len(self.keys) == 1:
            return depth
        return max(1, -(-BUCKET_SHARE * depth // len(self.keys)))


class _SumReader:
    """The rows of a ranked sum's parts read so far (Store._top_of_sum), and the score of
    each member seen in every part. Each round reads on from where the last stopped.

    Every part has the same keys' layout: one key, or the day buckets, so a member read
    from key j of one part can only be in key j of each other part.
    """

    def __init__(self, client: Any, parts: Sequence[Part]) -> None:
        self.redis = client
        self.parts = parts
        self.width = len(parts[0].keys)
        assert all(len(part.keys) == self.width for part in parts), "parts of one layout"
        # tops[n][j]: the rows read from key j of part n, best first.
        self.tops: list[list[list[tuple[Any, float]]]] = [[[] for _ in p.keys] for p in parts]
        # scores[n][j]: each member seen in key j of any part, its score in part n (0: none).
        self.scores: list[list[dict[Any, float]]] = [[{} for _ in p.keys] for p in parts]
        self.rows = [0] * len(parts)  # rows asked of each key of each part so far

    def read_to(self, rows: list[int]) -> None:
        """Read each part's keys on to `rows` rows, in one round trip, then look the
        members seen for the first time up in the parts that did not read them."""
        pipe = self.redis.pipeline(transaction=False)
        reads = []
        for n, part in enumerate(self.parts):
            for j, key in enumerate(part.keys):
                # A key that gave fewer rows than asked has no more.
                if rows[n] > self.rows[n] and len(self.tops[n][j]) == self.rows[n]:
                    pipe.zrevrange(key, self.rows[n], rows[n] - 1, withscores=True)
                    reads.append((n, j))
        fresh: list[set[Any]] = [set() for _ in range(self.width)]
        for (n, j), top in zip(reads, pipe.execute(), strict=True):
            self.tops[n][j] += top
            read = dict(top)
            self.scores[n][j].update(read)
            fresh[j].update(read)
        self.rows = [max(before, now) for before, now in zip(self.rows, rows, strict=True)]
        pipe = self.redis.pipeline(transaction=False)
        asked = []
        for n, part in enumerate(self.parts):
            for j, key in enumerate(part.keys):
                missing = [m for m in fresh[j] if m not in self.scores[n][j]]
                if missing:
                    pipe.zmscore(key, missing)
                    asked.append((n, j, missing))
        for (n, j, missing), found in zip(asked, pipe.execute(), strict=True):
            self.scores[n][j].update(zip(missing, (score or 0 for score in found), strict=True))

    def highest_unread(self, n: int, rows: int | None = None) -> float:
        """The highest score part n may hold past the first `rows` rows of each key (by
        default, all read), as far as the rows read tell: the last of those rows of a key
        that may hold more (0: none does)."""
        rows = self.rows[n] if rows is None else rows
        return max((top[rows - 1][1] for top in self.tops[n] if len(top) >= rows), default=0.0)

    def complete(self) -> bool:
        return all(
            len(top) < rows for tops, rows in zip(self.tops, self.rows, strict=True) for top in tops
        )

    def sums(self) -> dict[Any, float]:
        """Every member seen, with its sum over the parts."""
        sums: dict[Any, float] = {}
        for j in range(self.width):
            total = dict(self.scores[0][j])
            for part in self.scores[1:]:
                for member, score in part[j].items():
                    total[member] += score
            sums.update(total)
        return sums

    def rows_needed(self, cut: float) -> list[int]:
        """The fewest rows of each part (of those read) whose bound stays below `cut`, the
        last wanted row's sum: a read of those alone would have given the same answer.
        Each part in turn takes the fewest given the others' (a bound falls as it reads)."""
        needed = list(self.rows)
        for n in range(len(self.parts)):
            others = sum(self.highest_unread(m, r) for m, r in enumerate(needed) if m != n)
            low, high = 1, needed[n]  # high is enough
            while low < high:
                middle = (low + high) // 2
                if others + self.highest_unread(n, middle) < cut:
                    high = middle
                else:
                    low = middle + 1
            needed[n] = high
        return needed


@dataclass(frozen=True)
class DaySnapshot:
    fields: dict[str, int]
    visitors: int
    hll: bytes | None  # the HyperLogLog's own bytes where the store can give them


@dataclass(frozen=True)
class DayRestore:
    fields: Mapping[str, int]
    pages: Mapping[str, int]
    referrers: Mapping[str, int]
    visitors: int
    hll: bytes | None
    expire_at: int  # unix time


def _int_fields(raw: Mapping[Any, Any]) -> dict[str, int]:
    return {_text(k): int(v) for k, v in raw.items()}


@functools.lru_cache(maxsize=4096)  # pages repeat from hit to hit
def _path_digest(path: str) -> str:
    # A digest keeps a key short and bounded whatever the path's length.
    return hashlib.blake2b(path.encode(), digest_size=8).hexdigest()


def _batched(items: Iterable[R], size: int) -> Iterator[list[R]]:
    batch: list[R] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class Store:
    """Site data in Redis (or fakeredis, or Redis Cluster), behind plain methods."""

    def __init__(self, client: Any, *, prefix: str = "hc") -> None:
        self.redis = client
        self.keys = Keys(prefix)
        self.is_cluster = isinstance(client, RedisCluster)
        # register_script sends EVALSHA and loads the script once if the server lacks it;
        # a NOSCRIPT answer means nothing ran, so that retry cannot count twice.
        self._hit_script = client.register_script(_lua("returns.lua", "hits.lua"))
        self._connection: Any = None
        # Concurrent hits of one process share round trips (see batching.py).
        # A batch's round trip is timed as one record_hit (a hit's own wait is its
        # request's time).
        self._hits = GroupCommit(_timed("record_hit", self._send_hits))
        # A hit's keys repeat: a site's shared keys change once a minute, a page's once a
        # day. Built once, they cost a lookup per hit instead of a dozen strings.
        self._site_keys = functools.lru_cache(maxsize=256)(self._site_hit_keys)
        self._page_keys = functools.lru_cache(maxsize=4096)(self._page_hit_keys)
        # Hit numbers of this process's writer (see spool.py); no spool, no writer.
        self._sequence = itertools.count(1)
        self._spool: Spool | None = None
        # The spool's writer id and the day in its applied key ("": no spool, no check).
        self._writer, self._writer_day = "", "none"
        self._replayer: Replayer | None = None
        # How long a replayed hit is still recognised as applied (the applied hash's TTL).
        self.replay_seconds = 30 * 86400
        self._drop_script = client.register_script(_lua("drop.lua"))
        self._count_pages_script = client.register_script(_lua("count_pages.lua"))
        self._distinct_script = client.register_script(_lua("distinct.lua"))
        self._restore_returns_script = client.register_script(
            _lua("returns.lua", "restore_returns.lua")
        )
        # The rows of each key of a ranked sum's parts its last read needed, if more than
        # a first read's (see _top_of_sum): by its parts' keys and the rows wanted.
        self._sum_rows: OrderedDict[tuple[Any, ...], list[int]] = OrderedDict()

    # -- the hit path -------------------------------------------------------------------

    def use_spool(self, spool: Spool, *, replay_days: float = 30) -> None:
        """Keep hits Redis cannot take in `spool` and replay them (see spool.py).

        A replayed hit is recognised as applied for `replay_days` after its writer's
        first hit of the site; a spool replayed later than that could count twice.
        """
        self.replay_seconds = int(replay_days * 86400)
        self._spool = spool
        self._writer, self._writer_day = spool.writer, writer_day(spool.writer)
        self._replayer = Replayer(spool, self._replay_hits)
        if spool.adopt_orphans():
            self._replayer.wake()

    @untimed_redis_errors  # timed per batch (see __init__)
    def record_hit(self, write: HitWrite) -> HitCounts:
        """Apply one hit: counters, buckets, dedupe, rate, cap, in one script call shared
        with whatever other hits of this process are waiting (see batching.py).

        With a spool, a hit Redis cannot take now is spooled and answered as such
        (reason "spooled", counts unknown); SpoolFull when there is no room for it.
        """
        keys, args = self._hit_call(write)
        return _hit_counts(self._hits.call(keys, args))

    @wrap_redis_errors
    def record_hits(self, writes: Sequence[HitWrite]) -> list[HitCounts]:
        """Apply hits in this order as one batch, now, without waiting for others (the
        batching property test drives the script through this)."""
        results = self._send_hits([self._hit_call(write) for write in writes])
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [_hit_counts(result) for result in results]

    def _hit_call(self, write: HitWrite) -> HitCall:
        """One hit's keys and arguments (the layout is described above _script_calls)."""
        site, day, path = write.site, write.day, write.path
        totals, day_key, visitors, referrers, rate, applied, *overflow = self._site_keys(
            site, day, write.minute, self._writer_day
        )
        pages, raw, page_day = self._page_keys(site, day, path)
        seen = self.keys.seen(site, write.visitor, path)
        keys = [pages, raw, totals, day_key, page_day, visitors, referrers, seen, rate, applied]
        keys += overflow
        args = [
            write.path,
            write.referrer_host,
            write.visitor,
            write.dedupe_seconds,
            write.rate_limit,
            write.max_pages,
            write.retention_seconds,
            f"{write.hour:02d}",
            OTHER_PAGE,
            self._writer,
            self.replay_seconds,
            # The sequence number is added when the hit is sent.
        ]
        return keys, args

    def _site_hit_keys(self, site: str, day: str, minute: int, writer_day: str) -> tuple[str, ...]:
        """The keys all of a site's hits in one minute share (see _hit_call)."""
        k = self.keys
        return (
            k.totals(site),
            k.day(site, day),
            k.visitors(site, day),
            k.referrers(site, day),
            k.rate(site, minute),
            k.applied(site, writer_day),
            # Where the path goes past the page cap: the overflow page's buckets.
            k.pages(site, _OTHER_BUCKETS[0]),
            k.raw(site, _OTHER_BUCKETS[0]),
            k.page_day(site, day, _OTHER_BUCKETS[1]),
        )

    def _page_hit_keys(self, site: str, day: str, path: str) -> tuple[str, str, str]:
        """A path's pages, raw and page-day buckets on that day."""
        k = self.keys
        page_bucket, day_bucket = k.buckets(path)
        page_day = k.page_day(site, day, day_bucket)
        return k.pages(site, page_bucket), k.raw(site, page_bucket), page_day

    def _send_hits(self, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        """Number a batch of hits and send it in one round trip, or spool it.

        GroupCommit sends one batch at a time, in order, and the hits are numbered here in
        the order Redis will apply them (grouped per script call), which the replay check
        in hits.lua relies on. A hit never goes to Redis ahead of one waiting in the spool.
        """
        order = _grouped_order(calls)
        numbered = [(calls[i][0], [*calls[i][1], next(self._sequence)]) for i in order]
        results = self._send_numbered(numbered)
        in_order: list[Any] = [None] * len(calls)
        for i, result in zip(order, results, strict=True):
            in_order[i] = result
        return in_order

    def _send_numbered(self, numbered: list[tuple[list[str], list[Any]]]) -> list[Any]:
        spool, replayer = self._spool, self._replayer
        if spool is None or replayer is None:
            return self._send_batch(numbered)
        if spool.adopt_due() and spool.adopt_orphans():
            replayer.wake()
        if spool.append_if_pending(numbered):
            replayer.wake()
            return [self._spooled(args) for _, args in numbered]
        try:
            results = self._send_batch(numbered)
        except redis.exceptions.RedisError as exc:
            if not _unreachable(exc):
                raise
            # Unreachable, or no answer in time: the batch may or may not have been
            # applied. Spooled with the same numbers, its replay cannot count it twice.
            results = [_not_run(exc)] * len(numbered)
        retry = [i for i, result in enumerate(results) if retriable(result)]
        if retry:
            # Spooled, not failed; still a Redis error operators should see.
            metrics.observe_redis_error("record_hit")
            try:
                spool.append([numbered[i] for i in retry])
                replayer.wake()
            except SpoolFull as full:
                # Only the hits that were not applied are refused (503).
                for i in retry:
                    results[i] = full
                return results
            for i in retry:
                results[i] = self._spooled(numbered[i][1])
        return results

    @staticmethod
    def _spooled(args: list[Any]) -> list[Any]:
        return [0, "spooled", 0, 0, args[0]]

    def _send_batch(self, hits: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        """Apply numbered hits with one script call per group, all in one round trip.

        Returns one result per hit: its five values, or the error of its call. On a
        cluster, one call at a time; a failure there marks that call's hits and the
        rest with the error (those before it were applied).
        """
        calls = _script_calls(hits)
        script = self._hit_script
        replies: list[Any]
        if self.is_cluster:
            # redis-py's cluster pipeline refuses scripts: one round trip per call there.
            replies = []
            for keys, args, _ in calls:
                try:
                    replies.append(self._run_one(script, keys, args))
                except redis.exceptions.RedisError as exc:
                    if not _unreachable(exc) or self._spool is None:
                        raise
                    replies += [exc] * (len(calls) - len(replies))
                    break
        else:
            replies = self._evalsha_calls(calls)
            missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
            if missing:
                # NOSCRIPT means the script did not run: loading it and sending again is
                # safe. (Redis lost its script cache by restarting, so every call of the
                # batch missed it; the numbers still increase in the order applied.)
                self.redis.script_load(script.script)
                again = self._evalsha_calls([calls[i] for i in missing])
                for i, reply in zip(missing, again, strict=True):
                    replies[i] = reply
        return _per_hit(calls, replies)

    @staticmethod
    def _run_one(script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return script(keys=keys, args=args)
        except redis.exceptions.ResponseError as exc:
            return exc

    def _evalsha_calls(
        self, calls: Sequence[ScriptCall], connection: Any = None, *, load: bool = False
    ) -> list[Any]:
        """Send script calls in one round trip, on the hit connection unless another is
        given; one reply each (an error reply as its exception). With `load`, the script
        is loaded first in the same round trip."""
        script = self._hit_script
        packed = [_pack("SCRIPT", "LOAD", script.script)] if load else []
        packed += [_pack("EVALSHA", script.sha, len(k), *k, *a) for k, a, _ in calls]
        if connection is None:
            connection = self._hit_connection()
        replies: list[Any] = []
        try:
            # One write: redis-py would send each command of a list with its own call.
            connection.send_packed_command([b"".join(packed)])
            for _ in packed:
                try:
                    replies.append(connection.read_response())
                except redis.exceptions.ResponseError as exc:
                    replies.append(exc)
        except BaseException:
            # Replies may still be on their way: never let the next batch read them.
            connection.disconnect()
            raise
        return replies[1:] if load else replies

    def _hit_connection(self) -> Any:
        """The connection this process sends hits on: batches never overlap (GroupCommit),
        so one connection serves them all, without a pool's locking per batch. It
        reconnects by itself after an error."""
        if self._connection is None:
            self._connection = self.redis.connection_pool.make_connection()
        return self._connection

    @wrap_redis_errors
    def _replay_hits(self, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        """Send spooled hits again, in order, with their own writer ids and numbers.

        A hit spooled in another layout (an older version's) gets an error result: the
        replayer skips it and counts it as failed rather than stopping on it.
        """
        results: list[Any] = [
            ValueError("a spooled hit in another version's layout") for _ in calls
        ]
        fitting = [
            i
            for i, (keys, args) in enumerate(calls)
            if len(keys) == HIT_KEY_COUNT and len(args) == HIT_ARG_COUNT
        ]
        if fitting:
            sent = self._replay_fitting([calls[i] for i in fitting])
            for i, result in zip(fitting, sent, strict=True):
                results[i] = result
        return results

    def _replay_fitting(self, calls: Sequence[HitCall]) -> list[Any]:
        if self.is_cluster:
            return self._send_batch(calls)
        # Load the script in the same round trip: after a restart Redis has lost it, and
        # a NOSCRIPT answer for some calls of a batch would break the order. Replays take
        # a connection of the pool: they run beside the hit connection's batches.
        script_calls = _script_calls(calls)
        pool = self.redis.connection_pool
        connection = pool.get_connection()
        try:
            return _per_hit(script_calls, self._evalsha_calls(script_calls, connection, load=True))
        finally:
            pool.release(connection)

    @wrap_redis_errors
    def record_drop(self, site: str, day: str, reason: str, retention_seconds: int) -> None:
        """Tally one dropped request of a known site."""
        self._drop_script(keys=[self.keys.day(site, day)], args=[reason, retention_seconds])

    @wrap_redis_errors
    def daily_salt(self, utc_date: str) -> bytes:
        """Return the salt of one UTC day, creating it on the day's first call.

        It expires when the next day ends, so only today's and yesterday's salts exist.
        """
        day = date.fromisoformat(utc_date)
        expires = datetime.combine(day + timedelta(days=2), time.min, tzinfo=UTC)
        fresh = secrets.token_bytes(32)
        # NX + GET: when two workers race, both get the first one's salt, in one call.
        existing = self.redis.set(
            self.keys.salt(utc_date), fresh, nx=True, get=True, exat=int(expires.timestamp())
        )
        return fresh if existing is None else bytes(existing)

    # -- reads --------------------------------------------------------------------------

    @wrap_redis_errors
    def page_count(self, site: str, path: str) -> tuple[int, int, int]:
        """Return (counted hits, raw hits) of one page and the site's counted total."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(self.keys.pages_of(site, path), path)
        pipe.hget(self.keys.raw_of(site, path), path)
        pipe.hget(self.keys.totals(site), "hits")
        hits, raw, site_hits = pipe.execute()
        return int(hits or 0), int(raw or 0), int(site_hits or 0)

    # -- sites --------------------------------------------------------------------------

    @wrap_redis_errors
    def create_site(self, name: str, fields: Mapping[str, str]) -> bool:
        """Store a new site's settings; False if the site exists already."""
        key = self.keys.site_settings(name)
        if not self.redis.hsetnx(key, "name", name):
            return False
        self.redis.hset(key, mapping=dict(fields))
        # A new site's returns index is complete from its first day (see hits.lua).
        self.redis.hset(self.keys.totals(name), "returns_since", 0)
        self.redis.sadd(self.keys.sites(), name)
        return True

    @wrap_redis_errors
    def site_fields(self, name: str) -> dict[str, str] | None:
        raw = self.redis.hgetall(self.keys.site_settings(name))
        if not raw:
            return None
        return {_text(k): _text(v) for k, v in raw.items()}

    @wrap_redis_errors
    def update_site(self, name: str, fields: Mapping[str, str]) -> None:
        self.redis.hset(self.keys.site_settings(name), mapping=dict(fields))

    @wrap_redis_errors
    def site_names(self) -> list[str]:
        return sorted(_text(n) for n in self.redis.smembers(self.keys.sites()))

    @wrap_redis_errors
    def delete_site(self, name: str) -> int:
        """Remove every key of a site; return how many were removed."""
        self.redis.srem(self.keys.sites(), name)
        removed = 0
        batch: list[Any] = []
        for key in self._scan(self.keys.all_of_site(name)):
            batch.append(key)
            if len(batch) >= 500:
                removed += self._delete(batch)
                batch = []
        if batch:
            removed += self._delete(batch)
        return removed

    def _delete(self, keys: list[Any]) -> int:
        # All keys of one site share a hash tag, so one DEL is fine on a cluster too.
        return int(self.redis.delete(*keys))

    def _scan(self, pattern: str) -> Iterator[Any]:
        if self.is_cluster:
            yield from self.redis.scan_iter(match=pattern, count=1000, target_nodes="primaries")
        else:
            yield from self.redis.scan_iter(match=pattern, count=1000)

    # -- stats reads --------------------------------------------------------------------

    @wrap_redis_errors
    def range_summary(
        self, site: str, days: Sequence[str], *, today: str, cache_seconds: int = 0
    ) -> RangeSummary:
        """Read a range's day hashes, visitors, distinct pages and all-time totals."""
        k = self.keys
        pages = self._page_count(
            site, days, lambda: self._parts(site, "pages", days, today, cache_seconds)
        )
        pipe = self.redis.pipeline(transaction=False)
        for day in days:
            pipe.hgetall(k.day(site, day))
        # redis-py refuses multi-key PFCOUNT in a cluster pipeline without looking at the
        # keys; these share the site's hash tag, so the raw command is routed to one node.
        pipe.execute_command("PFCOUNT", *[k.visitors(site, day) for day in days])
        pipe.hmget(k.totals(site), ["hits", "raw", "pages"])
        results = pipe.execute()
        n = len(days)
        visitors, (hits, raw, all_time_pages) = results[n:]
        return RangeSummary(
            days=[_int_fields(fields) for fields in results[:n]],
            visitors=int(visitors),
            pages=pages,
            all_time_hits=int(hits or 0),
            all_time_raw=int(raw or 0),
            all_time_pages=int(all_time_pages or 0),
        )

    @wrap_redis_errors
    def day_fields(self, site: str, days: Sequence[str]) -> list[dict[str, int]]:
        """Read each day's hash: hits, raw, h:HH and drop:<reason> fields."""
        pipe = self.redis.pipeline(transaction=False)
        for day in days:
            pipe.hgetall(self.keys.day(site, day))
        return [_int_fields(raw) for raw in pipe.execute()]

    @wrap_redis_errors
    def daily_visitors(self, site: str, days: Sequence[str]) -> list[int]:
        """Count each day's visitors (one PFCOUNT per day)."""
        pipe = self.redis.pipeline(transaction=False)
        for day in days:
            pipe.execute_command("PFCOUNT", self.keys.visitors(site, day))
        return [int(n) for n in pipe.execute()]

    @wrap_redis_errors
    def daily_page_hits(self, site: str, path: str, days: Sequence[str]) -> list[int]:
        """Read one page's counted hits on each day."""
        pipe = self.redis.pipeline(transaction=False)
        for day in days:
            pipe.zscore(self.keys.page_day_of(site, day, path), path)
        return [int(score or 0) for score in pipe.execute()]

    @wrap_redis_errors
    def top(
        self,
        site: str,
        kind: str,
        days: Sequence[str],
        offset: int,
        limit: int,
        *,
        today: str,
        cache_seconds: int = 0,
    ) -> tuple[int, list[tuple[str, int]]]:
        """Return how many pages (kind "pages") or referring hosts ("referrers") had hits
        in the days, and one slice of them by hits."""
        parts = self._parts(site, kind, days, today, cache_seconds)
        return self._top(site, parts, offset, limit, days=days if kind == "pages" else ())

    # Summing a range's day zsets with ZUNIONSTORE costs time in proportion to all their
    # members (about 80 ms for 30 days of 10,000 pages each), however few rows are read.
    # Days before today never change, so their sum is made once and kept; today's zset,
    # still changing, is combined with it at read time by the threshold algorithm below,
    # which reads only the top of each zset: the answer is exact, and its cost follows
    # the rows asked for, not the number of pages.

    def _parts(
        self,
        site: str,
        kind: str,
        days: Sequence[str],
        today: str,
        cache_seconds: int,
        *,
        extend: bool = False,
    ) -> list[Part]:
        """Parts whose sum is the range: the past days' kept union, and each live day.
        With `extend`, a kept union is kept at least `cache_seconds` from now."""
        k = self.keys

        def day_part(day: str) -> Part:
            if kind == "pages":
                return Part(tuple(k.page_days(site, day)), bucketed=True)
            return Part((k.referrers(site, day),))

        past_days = [day for day in days if day < today]
        live = [day_part(day) for day in days if day >= today]
        if len(past_days) <= 1:
            return [day_part(day) for day in past_days] + live
        past = [day_part(day) for day in past_days]
        union = k.union(site, kind, past_days[0], past_days[-1])
        # Bucket b of the union sums bucket b of each day (a part has one key or buckets).
        sums = [(dest, [part.keys[b] for part in past]) for b, dest in enumerate(union)]
        self._past_union(site, kind, sums, cache_seconds, extend=extend)
        return [Part(tuple(union), bucketed=past[0].bucketed), *live]

    @wrap_redis_errors
    def claim_preparation(self, site: str, day: str) -> bool:
        """True for the one caller, among all processes, that should prepare the site's
        quick ranges on that local day (see prepare_range)."""
        return bool(self.redis.set(self.keys.prepared(site, day), 1, nx=True, ex=2 * 86400))

    @wrap_redis_errors
    def release_preparation(self, site: str, day: str) -> None:
        """Give a claim back (its preparation failed), so that another try can take it."""
        self.redis.delete(self.keys.prepared(site, day))

    @wrap_redis_errors
    def prepare_range(
        self, site: str, days: Sequence[str], *, today: str, keep_seconds: int
    ) -> None:
        """Sum the range's past days (pages and referrers) now and keep the sums for
        `keep_seconds`, so that the range's first read finds them made; and count their
        overlaps with today's zsets, so that it counts again only those changed since."""
        for kind in ("pages", "referrers"):
            parts = self._parts(site, kind, days, today, keep_seconds, extend=True)
            if kind == "referrers" or self._distinct_pages(site, days) is None:
                self._distinct(site, parts)

    def _past_union(
        self,
        site: str,
        kind: str,
        sums: Sequence[tuple[str, Sequence[str]]],
        cache_seconds: int,
        *,
        extend: bool = False,
    ) -> None:
        """Make the keys holding the sums of past days' zsets (each `(key, the zsets it
        sums)`) now, unless they are kept from before (with `extend`, ones kept from
        before are then kept at least `cache_seconds`).

        One ZUNIONSTORE per day bucket, not one for all: Redis serves other clients
        between them, so a big site's sum stalls hits for a bucket's share of its time.

        A site keeps its few most recent unions of each kind (KEPT_UNIONS); an older one
        lingers two seconds for reads already using it, then goes, so asking for many
        ranges cannot fill Redis. An import that changes past days forgets them all.
        """
        keys = [key for key, _ in sums]
        pointer = self.keys.union_pointer(site, kind)
        if cache_seconds > 0:
            pipe = self.redis.pipeline(transaction=False)
            for key in keys:
                pipe.pttl(key)
            ttls = [int(ttl) for ttl in pipe.execute()]
            # A bucket that sums to nothing is no key (-2); the others were all made
            # together. Reuse only with a second to spare, so none expires before the read.
            made = [ttl for ttl in ttls if ttl != -2]
            if made and min(made) > 1000:
                if extend:
                    # A reader made them, to keep for less time (STATS_CACHE_SECONDS).
                    pipe = self.redis.pipeline(transaction=False)
                    for key in keys:
                        pipe.expire(key, cache_seconds, gt=True)
                    pipe.execute()
                return
        pipe = self.redis.pipeline(transaction=False)
        for key, sources in sums:
            pipe.zunionstore(key, list(sources))
            pipe.expire(key, max(cache_seconds, REPLACED_UNION_SECONDS))
            pipe.lrem(pointer, 0, key)
        pipe.lpush(pointer, *keys)
        # The pointer lists keys; each union of this kind has len(keys) of them.
        pipe.lrange(pointer, KEPT_UNIONS * len(keys), -1)
        pipe.ltrim(pointer, 0, KEPT_UNIONS * len(keys) - 1)
        evicted = pipe.execute()[-2]
        if evicted:
            pipe = self.redis.pipeline(transaction=False)
            for name in evicted:
                pipe.expire(_text(name), REPLACED_UNION_SECONDS)
            pipe.execute()

    def _scores(self, asks: Sequence[tuple[Part, Sequence[Any]]]) -> list[list[Any]]:
        """Look members up in parts, in one round trip: for each (part, members) asked,
        each member's score in the part (None: not in it)."""
        pipe = self.redis.pipeline(transaction=False)
        plan: list[tuple[int, list[int]]] = []
        for n, (part, members) in enumerate(asks):
            for key, indices in part.split(members):
                if indices:
                    pipe.zmscore(key, [members[i] for i in indices])
                    plan.append((n, indices))
        found: list[list[Any]] = [[None] * len(members) for _, members in asks]
        if plan:
            for (n, indices), scores in zip(plan, pipe.execute(), strict=True):
                for i, score in zip(indices, scores, strict=True):
                    found[n][i] = score
        return found

    def _distinct(self, site: str, parts: Sequence[Part]) -> int:
        """Count the distinct members of the parts' zsets (the keys of one part are disjoint)."""
        if len(parts) == 2:
            # |A or B| = |A| + |B| - |A and B|, and A and B share members only between
            # keys that can (the same bucket, or any key of an unbucketed part); the
            # script keeps each pair's overlap until either key changes.
            keys = [*parts[0].keys, *parts[1].keys]
            index = {key: n for n, key in enumerate(keys, start=2)}  # KEYS[1] is the memo
            pairs = [index[key] for pair in parts[0].pairs(parts[1]) for key in pair]
            return int(
                self._distinct_script(
                    keys=[self.keys.overlaps(site), *keys], args=[OVERLAPS_SECONDS, *pairs]
                )
            )
        pipe = self.redis.pipeline(transaction=False)
        for part in parts:
            for key in part.keys:
                pipe.zcard(key)
        counts = [int(n) for n in pipe.execute()]
        first = sum(counts[: len(parts[0].keys)])
        if len(parts) == 1:
            return first
        # More parts: the first's count plus the others' members not in it.
        pipe = self.redis.pipeline(transaction=False)
        for part in parts[1:]:
            for key in part.keys:
                pipe.zrange(key, 0, -1)
        members = list({m for found in pipe.execute() for m in found})
        if not members:
            return first
        known = self._scores([(parts[0], members)])[0]
        return first + sum(1 for score in known if score is None)

    def _page_count(
        self, site: str, days: Sequence[str], parts: Callable[[], Sequence[Part]]
    ) -> int:
        """A range's distinct pages: from the returns counts, else from the zsets of
        `parts()` (made only then: they may sum the range's past days)."""
        count = self._distinct_pages(site, days)
        return self._distinct(site, parts()) if count is None else count

    def _distinct_pages(self, site: str, days: Sequence[str]) -> int | None:
        """Count the distinct pages of a range (consecutive days, oldest first) from the
        days' returns counts, in time that follows the number of days, not of pages:
        each page counts once, on the first day of the range it had hits, which is the
        range's first day or a day whose previous one with hits came before the range.
        None when the counts do not cover the range (a site older than them, or a day of
        the range written after later ones), to count otherwise.
        """
        k = self.keys
        if len(days) > MAX_GAP_DAYS:
            return None
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(k.totals(site))
        for day in days:
            pipe.get(k.returns(site, day))
        raw_totals, *counts = pipe.execute()
        totals = {_text(field): value for field, value in raw_totals.items()}
        first, last = day_number(days[0]), day_number(days[-1])
        since = totals.get("returns_since")
        late = (int(field[5:]) for field in totals if field.startswith("late:"))
        if since is None or int(since) > first or any(first <= d <= last for d in late):
            return None
        total = 0
        for n, raw in enumerate(counts):
            if raw:
                by_gap = struct.unpack(f">{len(raw) // 4}I", raw)
                # Day n of the range: pages new to the site, and those back after n or
                # more days (whose previous day came before the range).
                total += by_gap[0] + sum(by_gap[n + 1 :])
        return total

    def _top(
        self, site: str, parts: Sequence[Part], offset: int, limit: int, days: Sequence[str] = ()
    ) -> tuple[int, list[tuple[str, int]]]:
        """Count and rank the parts' members; `days`: the range's, if they are pages."""
        if len(parts) == 1:
            return self._top_of_part(parts[0], offset, limit)
        count = self._page_count(site, days, lambda: parts) if days else self._distinct(site, parts)
        return count, self._top_of_sum(parts, offset, limit)

    def _top_of_part(
        self, part: Part, offset: int, limit: int
    ) -> tuple[int, list[tuple[str, int]]]:
        """Count and rank the members of one part, whose keys hold disjoint members.

        Each key's top rows are read, with each key's size in the same round trip. A
        member not read ranks below the last row read from its key (by score, then
        member, the order of ZREVRANGE), so once the last wanted row ranks at or above
        the highest of those last rows, the answer is complete; else read deeper.
        """
        wanted = offset + limit
        if len(part.keys) == 1:
            pipe = self.redis.pipeline(transaction=False)
            pipe.zcard(part.keys[0])
            pipe.zrevrange(part.keys[0], offset, wanted - 1, withscores=True)
            total, top = pipe.execute()
            return int(total), [(_text(m), int(score)) for m, score in top]
        # A few rows more than the part's share: the first read is nearly always enough.
        rows = max(part.depth(wanted), 8)
        total = -1
        while True:
            pipe = self.redis.pipeline(transaction=False)
            if total < 0:
                for key in part.keys:
                    pipe.zcard(key)
            for key in part.keys:
                pipe.zrevrange(key, 0, rows - 1, withscores=True)
            tops = pipe.execute()
            if total < 0:
                total = sum(int(n) for n in tops[: len(part.keys)])
                tops = tops[len(part.keys) :]
            read = sorted(((score, m) for top in tops for m, score in top), reverse=True)
            cut = [(top[-1][1], top[-1][0]) for top in tops if len(top) == rows]
            if not cut or (len(read) >= wanted and read[wanted - 1] >= max(cut)):
                return total, [(_text(m), int(score)) for score, m in read[offset:wanted]]
            rows *= 4

    def _top_of_sum(self, parts: Sequence[Part], offset: int, limit: int) -> list[tuple[str, int]]:
        """Rank the members of several parts by the sum of their scores (Fagin's TA).

        Read the top rows of each zset (a bucket of a part, its share of them); every
        member seen gets its exact sum (its score in each part: read, or looked up). A
        member never seen scores at most the sum, over the parts, of the highest last
        score read from the part's keys read only in part (the bound), so once the last
        wanted row beats that, the answer is complete; else read on, deeper.
        Ties are ordered as ZREVRANGE would order them on the summed zset.
        """
        wanted = offset + limit
        first = [part.depth(max(wanted, TOP_FIRST_DEPTH)) for part in parts]
        # A ranking read again (a dashboard refreshing, its readers) starts with the rows
        # it last needed; any rows give the exact answer, these just read less.
        ranking = (tuple(part.keys[0] for part in parts), wanted)
        rows = self._sum_rows.get(ranking, first)
        reader = _SumReader(self.redis, parts)
        while True:
            reader.read_to(rows)
            highest_unread = [reader.highest_unread(n) for n in range(len(parts))]
            bound = sum(highest_unread)
            complete = reader.complete()
            sums = reader.sums()
            # Only members above the bound can be among the wanted rows when it holds.
            ranked = [m for m, total in sums.items() if complete or total > bound]
            if complete or len(ranked) >= wanted:
                ranked.sort(key=lambda m: (sums[m], m), reverse=True)
                cut = sums[ranked[wanted - 1]] if len(ranked) >= wanted else 0
                self._remember_rows(ranking, reader.rows_needed(cut), first)
                return [(_text(m), int(sums[m])) for m in ranked[offset:wanted]]
            # Read on where it lowers the bound: in the parts holding much of it. A
            # range's past days' sum scores far above today's alone, and reading more of
            # today's flat scores would hardly lower it. The highest always reads on.
            rows = [
                part_rows * 2 if unread * 2 * len(parts) >= bound else part_rows
                for part_rows, unread in zip(rows, highest_unread, strict=True)
            ]

    def _remember_rows(self, ranking: tuple[Any, ...], rows: list[int], first: list[int]) -> None:
        """Keep the rows a ranked sum needed, with some to spare as today's hits change
        it (at most SUM_ROWS_KEPT rankings: the oldest goes first); none if the first
        read's rows are enough."""
        if all(r <= f for r, f in zip(rows, first, strict=True)):
            self._sum_rows.pop(ranking, None)
            return
        if ranking not in self._sum_rows and len(self._sum_rows) >= SUM_ROWS_KEPT:
            # One call, safe beside other threads' reads (gthread workers).
            with contextlib.suppress(KeyError):
                self._sum_rows.popitem(last=False)
        self._sum_rows[ranking] = [max(f, r + r // 4) for r, f in zip(rows, first, strict=True)]

    @wrap_redis_errors
    def forget_unions(self, site: str) -> None:
        """Drop the site's cached unions and counted overlaps (after an import changed
        past days, perhaps without changing their sizes)."""
        self.redis.unlink(self.keys.overlaps(site))
        for kind in ("pages", "referrers"):
            pointer = self.keys.union_pointer(site, kind)
            for name in self.redis.lrange(pointer, 0, -1):
                self.redis.unlink(_text(name))
            self.redis.unlink(pointer)

    # -- export and import --------------------------------------------------------------

    @wrap_redis_errors
    def days_with_data(self, site: str, days: Sequence[str]) -> list[str]:
        """Keep those of the days for which any day key of the site exists."""
        k = self.keys
        pipe = self.redis.pipeline(transaction=False)
        for day in days:
            pipe.exists(
                k.day(site, day),
                *k.page_days(site, day),
                k.visitors(site, day),
                k.referrers(site, day),
            )
        return [day for day, found in zip(days, pipe.execute(), strict=True) if int(found)]

    @wrap_redis_errors
    def all_time_totals(self, site: str) -> tuple[int, int]:
        """Return the site's all-time (counted hits, raw hits)."""
        hits, raw = self.redis.hmget(self.keys.totals(site), ["hits", "raw"])
        return int(hits or 0), int(raw or 0)

    def iter_pages(self, site: str, batch: int = 1000) -> Iterator[list[tuple[str, int, int]]]:
        """Yield all-time (path, hits, raw hits) in batches, bucket by bucket.

        Every page kept has a raw field, so HSCAN of the raw buckets finds them all; each
        batch's counted hits come from the same bucket of counted hits.
        """
        k = self.keys
        rows: list[tuple[str, int, int]] = []
        for bucket in range(k.PAGE_BUCKETS):
            for fields in _batched(self._hscan(k.raw(site, bucket)), batch):
                hits = self._hmget(k.pages(site, bucket), [path for path, _ in fields])
                rows += [
                    (_text(path), int(h or 0), int(r))
                    for (path, r), h in zip(fields, hits, strict=True)
                ]
                while len(rows) >= batch:
                    yield rows[:batch]
                    rows = rows[batch:]
        if rows:
            yield rows

    @wrap_redis_errors
    def _hmget(self, key: str, fields: list[Any]) -> list[Any]:
        return list(self.redis.hmget(key, fields))

    @wrap_redis_errors
    def day_snapshot(self, site: str, day: str) -> DaySnapshot:
        """Read one day's hash, visitor count and (on Redis) its HyperLogLog's bytes."""
        k = self.keys
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(k.day(site, day))
        pipe.execute_command("PFCOUNT", k.visitors(site, day))
        pipe.get(k.visitors(site, day))
        fields, visitors, hll = pipe.execute(raise_on_error=False)
        if isinstance(fields, Exception) or isinstance(visitors, Exception):
            raise fields if isinstance(fields, Exception) else visitors
        # On fakeredis a HyperLogLog is not a string (GET fails): only the count travels.
        if isinstance(hll, Exception) or not hll:
            hll = None
        return DaySnapshot(_int_fields(fields), int(visitors), hll)

    def iter_day_pages(self, site: str, day: str) -> Iterator[tuple[str, int]]:
        """Yield (path, hits) of one day by ZSCAN of each of its buckets."""
        for key in self.keys.page_days(site, day):
            for path, hits in self._zscan(key):
                yield _text(path), int(hits)

    def iter_day_referrers(self, site: str, day: str) -> Iterator[tuple[str, int]]:
        """Yield (host, hits) of one day by ZSCAN."""
        for host, hits in self._zscan(self.keys.referrers(site, day)):
            yield _text(host), int(hits)

    @wrap_redis_errors
    def page_scores(self, site: str, paths: Sequence[str]) -> tuple[int, list[int | None]]:
        """Return the number of pages kept and each path's all-time hits (None if new)."""
        k = self.keys
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(k.totals(site), "pages")
        buckets: dict[int, list[int]] = {}
        for i, path in enumerate(paths):
            buckets.setdefault(k.page_bucket(path), []).append(i)
        for bucket, indices in buckets.items():
            members = [paths[i] for i in indices]
            pipe.hmget(k.pages(site, bucket), members)
            pipe.hmget(k.raw(site, bucket), members)
        count, *found = pipe.execute()
        scores: list[int | None] = [None] * len(paths)
        for n, indices in enumerate(buckets.values()):
            hits, raws = found[2 * n], found[2 * n + 1]
            for i, h, r in zip(indices, hits, raws, strict=True):
                # A page is kept once it has a raw field (see Keys).
                scores[i] = None if r is None else int(h or 0)
        return int(count or 0), scores

    @wrap_redis_errors
    def add_pages(self, site: str, pages: Sequence[tuple[str, int, int]]) -> None:
        """Add (path, hits, raw hits) to the all-time pages and totals, in one pipeline."""
        k = self.keys
        # A transaction (one site: one slot), because redis-py's cluster pipeline sends
        # commands again one by one after a timeout, and these add: a batch could count
        # twice. Its transactions, like everything here, are never resent.
        pipe = self.redis.pipeline(transaction=True)
        hits_total = raw_total = 0
        for path, hits, raw in pages:
            pipe.hincrby(k.pages_of(site, path), path, hits)
            # Always, even by 0: a page kept has a raw field.
            pipe.hincrby(k.raw_of(site, path), path, raw)
            hits_total += hits
            raw_total += raw
        pipe.hincrby(k.totals(site), "hits", hits_total)
        pipe.hincrby(k.totals(site), "raw", raw_total)
        pipe.execute()
        self._count_pages(site)

    @wrap_redis_errors
    def set_pages(self, site: str, pages: Sequence[tuple[str, int, int]]) -> None:
        """Set (path, hits, raw hits) of all-time pages to these values, in one pipeline."""
        k = self.keys
        buckets: dict[int, list[tuple[str, int, int]]] = {}
        for page in pages:
            buckets.setdefault(k.page_bucket(page[0]), []).append(page)
        pipe = self.redis.pipeline(transaction=False)
        for bucket, rows in buckets.items():
            pipe.hset(k.pages(site, bucket), mapping={path: hits for path, hits, _ in rows})
            pipe.hset(k.raw(site, bucket), mapping={path: raw for path, _, raw in rows})
        pipe.execute()
        self._count_pages(site)

    def _count_pages(self, site: str) -> int:
        """Set totals.pages to the number of pages kept, counted (atomically) in the buckets.

        The hit script keeps that count as it adds pages; writers of many pages at once
        (imports) count again after writing, which is right whatever ran in between.
        """
        k = self.keys
        return int(self._count_pages_script(keys=[k.totals(site), *k.all_raw(site)]))

    @wrap_redis_errors
    def set_totals(self, site: str, hits: int, raw: int) -> None:
        self.redis.hset(self.keys.totals(site), mapping={"hits": hits, "raw": raw})

    @wrap_redis_errors
    def restore_day(self, site: str, day: str, restore: DayRestore) -> None:
        """Replace one day's keys with the given values; they expire at `expire_at`."""
        k = self.keys
        page_days = k.page_days(site, day)
        keys = [k.day(site, day), k.visitors(site, day), k.referrers(site, day), *page_days]
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.exists(key)
        existed = any(pipe.execute())
        returns = k.returns(site, day)
        pipe = self.redis.pipeline(transaction=False)
        for key in [*keys, returns]:  # one DEL each: a cluster pipeline takes no multi-key DEL
            pipe.delete(key)
        if restore.fields:
            pipe.hset(k.day(site, day), mapping=dict(restore.fields))
        buckets: dict[int, dict[str, int]] = {}
        for path, hits in restore.pages.items():
            buckets.setdefault(k.day_bucket(path), {})[path] = hits
        for bucket, members in sorted(buckets.items()):
            for chunk in _batched(iter(members.items()), 1000):
                pipe.zadd(page_days[bucket], dict(chunk))
        for chunk in _batched(iter(restore.referrers.items()), 1000):
            pipe.zadd(k.referrers(site, day), dict(chunk))
        for key in keys:
            pipe.expireat(key, restore.expire_at)
        pipe.execute()
        self._restore_returns(site, day, restore, returns, existed=existed)
        self._restore_visitors(k.visitors(site, day), day, restore)

    def _restore_returns(
        self, site: str, day: str, restore: DayRestore, returns: str, *, existed: bool
    ) -> None:
        """Note the restored day's paths in the returns index (restore_returns.lua)."""
        k = self.keys
        keys = [k.totals(site), returns, *k.all_last_days(site)]
        head = [day_number(day), restore.expire_at, int(existed), MAX_GAP_DAYS]
        # At least one call, so that a day restored over data it held is noted.
        chunks = list(_batched(iter(restore.pages), 1000)) or [[]]
        for chunk in chunks:
            args = [*head, *(x for path in chunk for x in (k.page_bucket(path), path))]
            self._restore_returns_script(keys=keys, args=args)

    def _restore_visitors(self, key: str, day: str, restore: DayRestore) -> None:
        if restore.hll is not None:
            # Redis takes a HyperLogLog's bytes back with SET; PFCOUNT then checks them.
            pipe = self.redis.pipeline(transaction=False)
            pipe.set(key, restore.hll)
            pipe.execute_command("PFCOUNT", key)
            pipe.expireat(key, restore.expire_at)
            if not any(isinstance(r, Exception) for r in pipe.execute(raise_on_error=False)):
                return
            self.redis.delete(key)
        if restore.visitors <= 0:
            return
        # No usable bytes (the embedded store, or an export from it): stand-in visitor
        # ids, new each day as real ones are (the salt changes daily), give the count back.
        pipe = self.redis.pipeline(transaction=False)
        ids = (f"import:{day}:{i}" for i in range(restore.visitors))
        for chunk in _batched(ids, 1000):
            pipe.pfadd(key, *chunk)
        pipe.expireat(key, restore.expire_at)
        pipe.execute()

    def _zscan(self, key: str) -> Iterator[tuple[Any, float]]:
        yield from self._call_iter(lambda: self.redis.zscan_iter(key, count=1000))

    def _hscan(self, key: str) -> Iterator[tuple[Any, Any]]:
        yield from self._call_iter(lambda: self.redis.hscan_iter(key, count=1000))

    @staticmethod
    @wrap_redis_errors
    def _call(func: Callable[[], R]) -> R:
        return func()

    @staticmethod
    def _call_iter(make: Callable[[], Iterator[R]]) -> Iterator[R]:
        # Generators escape a decorator's try block: wrap each step instead.
        iterator = Store._call(make)
        while True:
            try:
                item = Store._call(lambda: next(iterator))
            except StopIteration:
                return
            yield item

    # -- operations ---------------------------------------------------------------------

    @wrap_redis_errors
    def ping(self) -> bool:
        return bool(self.redis.ping())


# RESP2. redis-py 8 speaks RESP3 by default and, to return the shapes RESP2 gave,
# turns each zset score Redis sent as a double back into bytes and then into a float:
# on reads of ranked rows that doubled the stats API's time.
RESP_PROTOCOL = 2


def connect(url: str, *, timeout: float = 0.5) -> Any:
    """Build a Redis client from a URL: redis://, rediss://, unix:// or redis+cluster://."""
    # No retries: a retried script after an ambiguous timeout could count a hit twice.
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 30,
        "protocol": RESP_PROTOCOL,
    }
    scheme = urlsplit(url).scheme
    if scheme == "redis+cluster":
        return _connect_cluster(url, options)
    if scheme not in ("redis", "rediss", "unix"):
        raise InvalidInput(
            f"HITCOUNTER_REDIS_URL must start with redis://, rediss://, unix:// or "
            f"redis+cluster://, not {scheme or 'nothing'}://"
        )
    return redis.Redis.from_url(url, **options)


def _cluster_node(hostport: str) -> ClusterNode:
    """One `host:port` (or `[v6]:port`, or `host` for port 6379) of a cluster URL."""
    node = urlsplit("//" + hostport.strip())
    try:
        port = node.port or 6379
    except ValueError:
        port = 0
    if not node.hostname or not port:
        raise InvalidInput(f"HITCOUNTER_REDIS_URL: {hostport!r} is not a host:port")
    return ClusterNode(node.hostname, port)


def _connect_cluster(url: str, options: dict[str, Any]) -> RedisCluster:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    nodes = [_cluster_node(hostport) for hostport in netloc.split(",")]
    options.pop("health_check_interval")
    # `retry` (no retries) is the cluster client's own retry count. On a connection error
    # or timeout RedisCluster reloads the slot map and raises without resending, so after
    # a failover the next command goes to the promoted replica; MOVED, ASK and TRYAGAIN
    # answers mean the command did not run, and are followed.
    try:
        return RedisCluster(
            startup_nodes=nodes,
            password=unquote(parts.password) if parts.password else None,
            username=unquote(parts.username) if parts.username else None,
            **options,
        )
    except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
        # The client reads the slot map as it is built: one node must answer at start.
        raise StoreUnavailable(f"no node of the Redis Cluster answers: {exc}") from exc
