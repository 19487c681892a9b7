"""The spool in one process, on fakeredis: outage answers, replay, idempotency, adoption."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
from flask import Flask
from prometheus_client import REGISTRY

from hitcounter.spool import Replayer, Spool, SpoolFile, SpoolFull, encode
from hitcounter.store import HitWrite, Keys, Store, connect
from tests.conftest import ADMIN, BROWSER, add_site, make_app

SITE = "blog"


def write(path: str = "/a", seq_site: str = SITE) -> HitWrite:
    return HitWrite(
        site=seq_site, path=path, referrer_host="", visitor="v1", day="2026-01-02", hour=3,
        minute=1, dedupe_seconds=0, rate_limit=0, max_pages=100, retention_seconds=3600,
    )  # fmt: skip


def spooled_store(directory: Path, max_bytes: int = 1 << 20) -> tuple[Store, fakeredis.FakeServer]:
    server = fakeredis.FakeServer()
    store = Store(fakeredis.FakeRedis(server=server))
    store.use_spool(Spool(directory, max_bytes))
    return store, server


def totals(store: Store, site: str = SITE) -> int:
    return int(store.redis.hget(Keys().totals(site), "hits") or 0)


def drained(store: Store, seconds: float = 10) -> None:
    assert store._replayer is not None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if store._replayer.idle.wait(0.05) and not store._spool.waiting():  # type: ignore[union-attr]
            return
    raise AssertionError("the spool did not drain")


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_hit_sent_again_with_its_number_is_not_counted_again(tmp_path: Path) -> None:
    store, _ = spooled_store(tmp_path)
    assert store.record_hit(write()).counted
    k = Keys()
    writer = store._spool.writer  # type: ignore[union-attr]
    applied = store.redis.hgetall(k.applied(SITE, writer.split(".")[0]))
    assert applied == {writer.encode(): b"1"}
    assert store.redis.ttl(k.applied(SITE, writer.split(".")[0])) > 29 * 86400
    assert store.record_hit(write()).counted  # a new hit has a new number
    assert totals(store) == 2


def test_replaying_the_same_hits_twice_counts_them_once(tmp_path: Path) -> None:
    store, server = spooled_store(tmp_path)
    # Recording while Redis is away spools the hits, numbered.
    server.connected = False
    outcomes = [store.record_hit(write(p)) for p in ["/a", "/b", "/a"]]
    assert [o.reason for o in outcomes] == ["spooled"] * 3
    spool_file = store._spool.own  # type: ignore[union-attr]
    assert spool_file is not None
    taken = [call for call, _ in spool_file.take(10)]
    server.connected = True
    drained(store)
    assert totals(store) == 3
    # The same hits once more, as a second replay after an ambiguous timeout would.
    again = store._replay_hits([c for c in taken if c is not None])
    assert [r[1] for r in again] == [b"replayed"] * 3
    assert totals(store) == 3


def test_an_outage_is_answered_from_the_spool_until_it_is_full(tmp_path: Path) -> None:
    store, server = spooled_store(tmp_path / "spool", max_bytes=12_000)
    app: Flask = make_app(store, tmp_path)
    client = app.test_client()
    token = add_site(client, SITE, dedupe_seconds=0)
    assert client.get(f"/hit/{SITE}.gif?path=/warm", headers=BROWSER).status_code == 200
    spooled_before = metric("hitcounter_hits_total", outcome="spooled")
    full_before = metric("hitcounter_hits_dropped_total", reason="spool_full")

    server.connected = False
    answers = []
    for i in range(60):
        response = client.get(f"/hit/{SITE}.gif?path=/p{i % 7}", headers=BROWSER)
        answers.append((response.status_code, response.headers.get("X-Hitcounter")))
    accepted = answers.count((200, "spooled"))
    assert accepted > 5
    assert answers[:accepted] == [(200, "spooled")] * accepted
    # Full: refused, never a 200 for a hit that is not kept.
    assert set(answers[accepted:]) == {(503, "unavailable")}
    beacon = client.post(
        "/api/v1/hit", data=f'{{"site":"{SITE}","path":"/b"}}', headers=BROWSER,
        content_type="text/plain",
    )  # fmt: skip
    assert beacon.status_code == 503
    assert beacon.get_json()["error"]["code"] == "spool_full"
    # Reads and admin need Redis: 503 JSON; readiness fails.
    for url, headers in [
        (f"/api/v1/sites/{SITE}/stats", {"Authorization": f"Bearer {token}"}),
        (f"/api/v1/sites/{SITE}/count?path=/p1", {}),
        ("/api/v1/sites", ADMIN),
        (f"/api/v1/sites/{SITE}", ADMIN),
    ]:
        response = client.get(url, headers=headers)
        assert response.status_code == 503, url
        assert response.get_json()["error"]["code"] == "store_unavailable", url
    assert client.get("/readyz").status_code == 503
    exposition = client.get("/metrics").get_data(as_text=True)
    assert 'hitcounter_hits_total{outcome="spooled"}' in exposition
    assert 'hitcounter_hits_dropped_total{reason="spool_full"}' in exposition
    assert metric("hitcounter_hits_total", outcome="spooled") - spooled_before == accepted
    assert (
        metric("hitcounter_hits_dropped_total", reason="spool_full") - full_before == 61 - accepted
    )

    replayed_before = metric("hitcounter_spool_replayed_total", result="applied")
    server.connected = True
    drained(store)
    assert totals(store) == 1 + accepted
    assert metric("hitcounter_spool_replayed_total", result="applied") - replayed_before == accepted
    assert not list((tmp_path / "spool").glob("*.spool"))
    # Back to normal: counted at once, with counts.
    hit = client.post(
        "/api/v1/hit", data=f'{{"site":"{SITE}","path":"/b"}}', headers=BROWSER,
        content_type="text/plain",
    )  # fmt: skip
    assert (hit.status_code, hit.get_json()["site_hits"]) == (200, accepted + 2)


def test_a_spooled_beacon_answers_without_counts(tmp_path: Path) -> None:
    store, server = spooled_store(tmp_path / "spool")
    client = make_app(store, tmp_path).test_client()
    add_site(client, SITE, dedupe_seconds=0)
    assert client.get(f"/hit/{SITE}.gif?path=/", headers=BROWSER).status_code == 200
    server.connected = False
    response = client.post(
        "/api/v1/hit", data=f'{{"site":"{SITE}","path":"/x"}}', headers=BROWSER,
        content_type="text/plain",
    )  # fmt: skip
    assert response.status_code == 200
    assert response.get_json() == {"path": "/x", "hits": None, "site_hits": None}
    assert response.headers["X-Hitcounter"] == "spooled"
    server.connected = True
    drained(store)
    assert totals(store) == 2


def test_a_dead_workers_spool_is_adopted_and_replayed(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    dead, dead_server = spooled_store(directory)
    dead_server.connected = False
    for path in ["/a", "/b", "/c"]:
        assert dead.record_hit(write(path)).reason == "spooled"
    own = dead._spool.own  # type: ignore[union-attr]
    assert own is not None
    # A live writer's file cannot be taken.
    alive = Spool(directory, 1 << 20)
    assert alive.adopt_orphans() == 0
    # The process dies: its lock goes with it.
    os.close(own.fd)
    server = fakeredis.FakeServer()
    heir = Store(fakeredis.FakeRedis(server=server))
    heir.use_spool(Spool(directory, 1 << 20))
    drained(heir)
    assert totals(heir) == 3
    assert not list(directory.glob("*.spool"))
    # Replayed under the dead writer's id: its numbers are recorded against it.
    applied = heir.redis.hgetall(Keys().applied(SITE, dead._spool.writer.split(".")[0]))  # type: ignore[union-attr]
    assert applied == {dead._spool.writer.encode(): b"3"}  # type: ignore[union-attr]


def test_a_cut_short_or_damaged_line_is_skipped(tmp_path: Path) -> None:
    good = [(["k1"], ["/a", 1]), (["k2"], ["/b", 2]), (["k3"], ["/c", 3])]
    lines = [encode(call) for call in good]
    damaged = lines[1].replace(b"/b", b"/X")  # checksum no longer matches
    path = tmp_path / "x.spool"
    path.write_bytes(lines[0] + damaged + lines[2] + lines[0][:10])  # torn tail
    fd = os.open(path, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    spool_file = SpoolFile(path, fd, path.stat().st_size)
    taken = spool_file.take(10)
    assert [call for call, _ in taken] == [good[0], None, good[2], None]
    assert taken[-1][1] == spool_file.size
    sent: list[object] = []
    spool = Spool(tmp_path, 1 << 20)
    spool.adopted.append(spool_file)
    replayer = Replayer(
        spool, lambda calls: sent.extend(calls) or [[1, b"", 1, 1, "/"]] * len(calls)
    )
    replayer.replay_some(spool_file)
    assert sent == [good[0], good[2]]
    assert not path.exists()


def test_the_spool_refuses_what_it_has_no_room_for(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 100)
    with pytest.raises(SpoolFull):
        spool.append([(["k" * 100], ["/a", 1])])
    spool.append([(["k"], ["/a", 1])])
    assert spool.pending


def test_a_badge_counted_into_the_spool_shows_no_count(tmp_path: Path) -> None:
    store, server = spooled_store(tmp_path / "spool")
    client = make_app(store, tmp_path).test_client()
    add_site(client, SITE, dedupe_seconds=0)
    assert client.get(f"/badge/{SITE}.svg?path=/", headers=BROWSER).status_code == 200
    server.connected = False
    response = client.get(f"/badge/{SITE}.svg?path=/", headers=BROWSER)
    assert (response.status_code, response.headers["X-Hitcounter"]) == (200, "spooled")
    assert "unavailable" in response.get_data(as_text=True)
    server.connected = True
    drained(store)
    assert totals(store) == 2


def test_a_spool_that_cannot_be_written_refuses_instead_of_failing(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    spool = Spool(blocker / "spool", 1 << 20)
    with pytest.raises(SpoolFull, match="cannot be created"):
        spool.append([(["k"], ["/a", 1])])
    assert not spool.pending


@pytest.mark.integration
def test_spooled_hits_replay_once_on_every_backend(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Redis and on Redis Cluster (one script call per hit there)."""
    store = Store(connect(redis_url, timeout=5))
    store.use_spool(Spool(tmp_path, 1 << 20))
    assert store.record_hit(write("/first")).counted
    send = store._send_batch
    replayer = store._replayer
    assert replayer is not None
    # The replayer stays asleep until /c is spooled: on a single Redis it replays on a
    # connection of its own, and could otherwise empty the spool before /c came.
    wake = replayer.wake
    monkeypatch.setattr(replayer, "wake", lambda: None)

    def timed_out(calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        send(calls)  # applied, but the answer is lost
        raise redis.exceptions.TimeoutError("Timeout reading from socket")

    monkeypatch.setattr(store, "_send_batch", timed_out)
    assert [store.record_hit(write(p)).reason for p in ["/a", "/b"]] == ["spooled"] * 2
    monkeypatch.setattr(store, "_send_batch", send)
    assert store.record_hit(write("/c")).reason == "spooled"  # queued behind the others
    monkeypatch.setattr(replayer, "wake", wake)
    wake()
    drained(store)
    assert totals(store) == 4
    assert store.record_hit(write("/d")).counted  # sent directly again
    assert totals(store) == 5


def test_a_hit_spooled_in_another_layout_is_skipped_not_stuck(tmp_path: Path) -> None:
    # What an older version spooled (ten keys), then a hit of this version, both waiting.
    store, _ = spooled_store(tmp_path)
    assert store._spool is not None and store._replayer is not None
    old_layout = (["hc:{blog}:pages"] * 10, ["/old", "", "v1", 0, 0, 100, 3600, "03"])
    keys, args = store._hit_call(write("/new"))
    failed = metric("hitcounter_spool_replayed_total", result="failed")
    applied = metric("hitcounter_spool_replayed_total", result="applied")
    store._spool.append([old_layout, (keys, [*args, 1])])
    store._replayer.wake()
    drained(store)
    assert totals(store) == 1
    assert metric("hitcounter_spool_replayed_total", result="failed") == failed + 1
    assert metric("hitcounter_spool_replayed_total", result="applied") == applied + 1
