"""A check that nothing about a visitor (IP, User-Agent) is in Redis."""

from __future__ import annotations

from typing import Any


def everything_stored(client: Any) -> list[bytes]:
    """Every key and every value in a Redis, as bytes."""
    found: list[bytes] = []
    for key in client.scan_iter(count=1000):
        found.append(key)
        kind = client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "string":
            found.append(client.get(key))
        elif kind == "hash":
            for field, value in client.hgetall(key).items():
                found += [field, value]
        elif kind == "zset":
            found += [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "set":
            found += list(client.smembers(key))
        elif kind == "list":
            found += client.lrange(key, 0, -1)
        dumped = client.dump(key)
        if dumped:
            found.append(dumped)
    return found


def assert_nothing_about_visitors(client: Any, markers: list[str]) -> None:
    stored = everything_stored(client)
    assert stored, "expected some data to look through"
    for marker in markers:
        needle = marker.encode()
        holders = [item for item in stored if needle in item]
        assert not holders, f"{marker!r} is stored in Redis: {holders[:3]!r}"
