"""Many sites on a Redis Cluster: spread over every shard, each site whole on one slot.

Asked of the cluster itself (`CLUSTER KEYSLOT`, each primary's own SCAN), not of the
client's slot map.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

import pytest
from flask import Flask

from hitcounter.store import Keys
from tests.cluster.nodes import RedisClusterNodes
from tests.conftest import ADMIN, BROWSER, add_site

pytestmark = pytest.mark.cluster

SITES = 60
CLUSTER_ONLY = pytest.mark.parametrize("redis_url", ["cluster"], indirect=True)


def keys_by_primary(cluster: RedisClusterNodes) -> dict[int, list[str]]:
    """Every key, by the port of the primary that holds it (each primary scanned alone)."""
    found: dict[int, list[str]] = {}
    for node in cluster.primaries():
        found[node.port] = [key.decode() for key in node.client().scan_iter(count=1000)]
    return found


def site_of(key: str) -> str:
    return key[key.index("{") + 1 : key.index("}")]


@CLUSTER_ONLY
def test_sites_spread_over_every_shard(redis_app: Flask, redis_cluster: RedisClusterNodes) -> None:
    client = redis_app.test_client()
    names = [f"site-{i:02d}" for i in range(SITES)]
    for name in names:
        add_site(client, name, dedupe_seconds=0)
        for page in ("/", "/about"):
            response = client.get(f"/hit/{name}.gif?path={page}", headers=BROWSER)
            assert response.status_code == 200, response.headers

    held = keys_by_primary(redis_cluster)
    any_node = redis_cluster.primaries()[0].client()
    sites_on: dict[int, set[str]] = defaultdict(set)
    slots_of: dict[str, set[int]] = defaultdict(set)
    for port, keys in held.items():
        for key in keys:
            if "{" not in key:
                continue  # a global key
            sites_on[port].add(site_of(key))
            slots_of[site_of(key)].add(int(any_node.execute_command("CLUSTER KEYSLOT", key)))

    assert all(sites_on[port] for port in held), {p: len(s) for p, s in sites_on.items()}
    assert sorted(s for sites in sites_on.values() for s in sites) == names  # one shard each
    # Every key of a site (settings, counters, day buckets, dedupe and rate markers)
    # sits in the slot of its hash tag: one hit is one script on one shard.
    for name in names:
        tag_slot = int(any_node.execute_command("CLUSTER KEYSLOT", f"{{{name}}}"))
        assert slots_of[name] == {tag_slot}, name
    print(f"\nsites per primary: {sorted(len(s) for s in sites_on.values())}")


@CLUSTER_ONLY
def test_global_keys_and_site_admin_on_a_cluster(
    redis_app: Flask, redis_cluster: RedisClusterNodes
) -> None:
    client = redis_app.test_client()
    keys = Keys()
    names = [f"shop-{i:02d}" for i in range(12)]
    tokens = {name: add_site(client, name, dedupe_seconds=0) for name in names}
    for name in names:
        assert client.get(f"/hit/{name}.gif?path=/cart", headers=BROWSER).status_code == 200

    listed = client.get("/api/v1/sites", headers=ADMIN).get_json()["sites"]
    assert sorted(site["name"] for site in listed) == names
    # The site list and the day's salt are single keys on their own slots.
    today = datetime.now(UTC).date().isoformat()
    held = keys_by_primary(redis_cluster)
    for global_key in (keys.sites(), keys.salt(today)):
        holders = [port for port, found in held.items() if global_key in found]
        assert len(holders) == 1, (global_key, holders)

    changed = client.patch(f"/api/v1/sites/{names[0]}", json={"public": True}, headers=ADMIN)
    assert changed.get_json()["public"] is True
    rotated = client.post(f"/api/v1/sites/{names[1]}/token", headers=ADMIN).get_json()
    assert rotated["token"] != tokens[names[1]]

    # Deleting a site scans every primary; only that site's keys go.
    doomed, kept = names[::2], names[1::2]
    for name in doomed:
        assert client.delete(f"/api/v1/sites/{name}", headers=ADMIN).status_code == 204
    left = {
        site_of(k) for found in keys_by_primary(redis_cluster).values() for k in found if "{" in k
    }
    assert left == set(kept)
    listed = client.get("/api/v1/sites", headers=ADMIN).get_json()["sites"]
    assert sorted(site["name"] for site in listed) == kept
    for name in kept:
        count = client.get(f"/api/v1/sites/{name}/count?path=/cart", headers=ADMIN).get_json()
        assert (count["hits"], count["site_hits"]) == (1, 1), name
    for name in doomed:
        assert client.get(f"/hit/{name}.gif?path=/cart", headers=BROWSER).status_code == 404
