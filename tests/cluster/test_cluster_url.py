"""The redis+cluster:// form of HITCOUNTER_REDIS_URL: nodes parsed, bad ones refused."""

from __future__ import annotations

import pytest

from hitcounter.errors import InvalidInput, StoreUnavailable
from hitcounter.store import _cluster_node, connect
from tests.conftest import free_port

NODES = [
    ("10.0.0.11:6379", ("10.0.0.11", 6379)),
    (" redis-1:7000", ("redis-1", 7000)),
    ("redis-2", ("redis-2", 6379)),
    ("[fd00::11]:6380", ("fd00::11", 6380)),
]
BAD_URLS = [
    "redis+cluster://",
    "redis+cluster://host:port",
    "redis+cluster://a:6379,,b:6379",
    "redis+cluster://:secret@a:99999",
]


@pytest.mark.parametrize(("text", "expected"), NODES)
def test_a_node_is_host_and_port(text: str, expected: tuple[str, int]) -> None:
    node = _cluster_node(text)
    assert (node.host, node.port) == expected


@pytest.mark.parametrize("url", BAD_URLS)
def test_a_bad_cluster_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(InvalidInput, match="is not a host:port"):
        connect(url)


def test_no_reachable_node_is_the_store_unavailable() -> None:
    with pytest.raises(StoreUnavailable, match="no node of the Redis Cluster answers"):
        connect(f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}")
