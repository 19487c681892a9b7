"""The one module that talks to Redis: key schema, Lua scripts, client construction.

Views and services call `Store` methods; nothing else imports `redis`. Every Redis error
is turned into `StoreUnavailable` here, once, at the boundary.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from hitcounter.errors import InvalidInput, StoreUnavailable

P = ParamSpec("P")
R = TypeVar("R")

OTHER_PAGE = "(other)"
SALT_TTL_SECONDS = 48 * 3600


class Keys:
    """The Redis key schema, built only through these methods.

    Global keys (one slot each on a cluster; never used together in one command):

    - `{p}:sites`                 set of site names
    - `{p}:salt:{utc-date}`       32 random bytes; expires after 48 h, so at most two exist

    Per-site keys, all under the hash tag `{site}` so one hit is one script on one shard.
    `day` is the date in the site's timezone:

    - `{p}:{site}:site`           hash: the site's settings and its token hash
    - `{p}:{site}:pages`          zset: path -> counted hits, all time
    - `{p}:{site}:raw`            hash: path -> raw hits, all time
    - `{p}:{site}:totals`         hash: hits, raw (all time)
    - `{p}:{site}:day:{day}`      hash: hits, raw, h:HH counted per local hour, drop:<reason>
    - `{p}:{site}:pday:{day}`     zset: path -> counted hits that day
    - `{p}:{site}:uv:{day}`       HyperLogLog of visitor ids that day
    - `{p}:{site}:ref:{day}`      zset: referring host -> counted hits that day
    - `{p}:{site}:seen:{visitor}:{path digest}`  dedupe marker, expires after the window
    - `{p}:{site}:rate:{visitor}:{minute}`       per-visitor hits this minute, expires in 60 s

    Day keys expire after the retention period; all-time keys never do.
    """

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

    def pages(self, site: str) -> str:
        return f"{self._site(site)}:pages"

    def raw(self, site: str) -> str:
        return f"{self._site(site)}:raw"

    def totals(self, site: str) -> str:
        return f"{self._site(site)}:totals"

    def day(self, site: str, day: str) -> str:
        return f"{self._site(site)}:day:{day}"

    def page_day(self, site: str, day: str) -> str:
        return f"{self._site(site)}:pday:{day}"

    def visitors(self, site: str, day: str) -> str:
        return f"{self._site(site)}:uv:{day}"

    def referrers(self, site: str, day: str) -> str:
        return f"{self._site(site)}:ref:{day}"

    def seen(self, site: str, visitor: str, path: str) -> str:
        # A digest keeps the key short and bounded whatever the path's length.
        digest = hashlib.blake2b(path.encode(), digest_size=8).hexdigest()
        return f"{self._site(site)}:seen:{visitor}:{digest}"

    def rate(self, site: str, visitor: str, minute: int) -> str:
        return f"{self._site(site)}:rate:{visitor}:{minute}"

    def all_of_site(self, site: str) -> str:
        """A SCAN pattern matching every key of one site."""
        return f"{self._site(site)}:*"


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class HitCounts:
    counted: bool
    reason: str  # "" counted, "duplicate", or "rate_limited"
    page_hits: int
    site_hits: int
    path: str


def wrap_redis_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn any Redis connection trouble into StoreUnavailable, once, at the boundary."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except redis.exceptions.ResponseError:
            raise
        except redis.exceptions.RedisError as exc:
            raise StoreUnavailable(f"the store cannot be reached: {exc}") from exc

    return wrapper


def _lua(name: str) -> str:
    return resources.files("hitcounter").joinpath("lua", name).read_text(encoding="utf-8")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Store:
    """Site data in Redis (or fakeredis, or Redis Cluster), behind plain methods."""

    def __init__(self, client: Any, *, prefix: str = "hc") -> None:
        self.redis = client
        self.keys = Keys(prefix)
        self.is_cluster = isinstance(client, RedisCluster)
        # register_script sends EVALSHA and loads the script once if the server lacks it;
        # a NOSCRIPT answer means nothing ran, so that retry cannot count twice.
        self._hit_script = client.register_script(_lua("hit.lua"))
        self._drop_script = client.register_script(_lua("drop.lua"))

    # -- the hit path -------------------------------------------------------------------

    @wrap_redis_errors
    def record_hit(self, write: HitWrite) -> HitCounts:
        """Apply one hit with one script call: counters, buckets, dedupe, rate, cap."""
        k = self.keys
        keys = [
            k.pages(write.site),
            k.raw(write.site),
            k.totals(write.site),
            k.day(write.site, write.day),
            k.page_day(write.site, write.day),
            k.visitors(write.site, write.day),
            k.referrers(write.site, write.day),
            k.seen(write.site, write.visitor, write.path),
            k.rate(write.site, write.visitor, write.minute),
        ]
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
        ]
        counted, reason, page_hits, site_hits, path = self._hit_script(keys=keys, args=args)
        return HitCounts(
            counted=bool(counted),
            reason=_text(reason),
            page_hits=int(page_hits),
            site_hits=int(site_hits),
            path=_text(path),
        )

    @wrap_redis_errors
    def record_drop(self, site: str, day: str, reason: str, retention_seconds: int) -> None:
        """Tally one dropped request of a known site."""
        self._drop_script(keys=[self.keys.day(site, day)], args=[reason, retention_seconds])

    @wrap_redis_errors
    def daily_salt(self, utc_date: str) -> bytes:
        """Return the salt of one UTC day, creating it if this is the day's first call."""
        key = self.keys.salt(utc_date)
        salt = self.redis.get(key)
        if salt is None:
            # NX: when two workers race, both end up with the first one's salt.
            self.redis.set(key, secrets.token_bytes(32), nx=True, ex=SALT_TTL_SECONDS)
            salt = self.redis.get(key)
        return bytes(salt)

    # -- reads --------------------------------------------------------------------------

    @wrap_redis_errors
    def page_count(self, site: str, path: str) -> tuple[int, int, int]:
        """Return (counted hits, raw hits) of one page and the site's counted total."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zscore(self.keys.pages(site), path)
        pipe.hget(self.keys.raw(site), path)
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

    # -- operations ---------------------------------------------------------------------

    @wrap_redis_errors
    def ping(self) -> bool:
        return bool(self.redis.ping())


def connect(url: str, *, timeout: float = 0.5) -> Any:
    """Build a Redis client from a URL: redis://, rediss://, unix:// or redis+cluster://."""
    # No retries: a retried script after an ambiguous timeout could count a hit twice.
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 30,
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


def _connect_cluster(url: str, options: dict[str, Any]) -> RedisCluster:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    nodes = []
    for hostport in netloc.split(","):
        host, _, port = hostport.strip().rpartition(":")
        nodes.append(ClusterNode(host or "127.0.0.1", int(port or 6379)))
    password = parts.password
    options.pop("health_check_interval")
    return RedisCluster(
        startup_nodes=nodes,
        password=password,
        username=parts.username or None,
        cluster_error_retry_attempts=0,
        **options,
    )
