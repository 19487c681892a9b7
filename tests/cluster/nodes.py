"""Spawn a throwaway Redis Cluster on loopback: three primaries with a replica each.

Used by the session fixture in tests/conftest.py, by the failover test (which needs a
cluster of its own, as it kills a node) and by tests/bench/bench_cluster.py.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster

from tests.spawn import wait_for_ping

PRIMARIES = 3
NODE_TIMEOUT_MS = 2000


def free_ports(count: int) -> list[int]:
    """Reserve `count` distinct free loopback ports (held open together, then released)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


@dataclass
class ClusterNodeProcess:
    """One redis-server of the cluster; its bus port is set apart (port + 10000 may not exist)."""

    port: int
    bus_port: int
    directory: Path
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, socket_connect_timeout=1)

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            shutil.which("redis-server") or "redis-server",
            "--port", str(self.port),
            "--cluster-port", str(self.bus_port),
            "--cluster-enabled", "yes",
            "--cluster-config-file", f"nodes-{self.port}.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--appendonly", "no",
            "--save", "",
            "--dir", str(self.directory),
            "--bind", "127.0.0.1",
            *self.extra_args,
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_for_ping(self, seconds: float = 10) -> None:
        wait_for_ping(self.client, self.port, self.process, seconds)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no chance to tell anyone, as when a machine dies."""
        if self.alive():
            assert self.process is not None
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def info(self, section: str) -> dict[str, Any]:
        return dict(self.client().info(section))

    def cluster_info(self) -> dict[str, str]:
        # redis-py parses the reply into a dict of strings.
        info = self.client().execute_command("CLUSTER INFO")
        return {str(key): str(value) for key, value in dict(info).items()}

    def role(self) -> str:
        return str(self.info("replication")["role"])


@dataclass
class RedisClusterNodes:
    """Six redis-server processes joined into one cluster with `redis-cli --cluster create`."""

    directory: Path
    extra_args: list[str] = field(default_factory=list)
    nodes: list[ClusterNodeProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The app's form: two seed nodes are enough, the rest are discovered."""
        return "redis+cluster://" + ",".join(node.address for node in self.nodes[:2])

    def client(self) -> RedisCluster:
        seeds = [ClusterNode("127.0.0.1", node.port) for node in self.nodes if node.alive()]
        return RedisCluster(startup_nodes=seeds, socket_timeout=5, socket_connect_timeout=1)

    def start(self) -> None:
        ports = free_ports(4 * PRIMARIES)
        for i in range(2 * PRIMARIES):
            port, bus_port = ports[2 * i], ports[2 * i + 1]
            directory = self.directory / str(port)
            self.nodes.append(ClusterNodeProcess(port, bus_port, directory, self.extra_args))
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait_for_ping()
        create = [shutil.which("redis-cli") or "redis-cli", "--cluster", "create"]
        create += [node.address for node in self.nodes]
        create += ["--cluster-replicas", "1", "--cluster-yes"]
        joined = subprocess.run(create, capture_output=True, text=True, timeout=60, check=False)
        if joined.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{joined.stdout}")
        self.wait_until_healthy(30)

    def wait_until_healthy(self, seconds: float) -> None:
        """Wait until every live node sees a whole cluster and every replica is in sync."""
        deadline = time.monotonic() + seconds
        problem = "not checked"
        while time.monotonic() < deadline:
            problem = self._health_problem()
            if not problem:
                return
            time.sleep(0.1)
        raise RuntimeError(f"the Redis Cluster did not become healthy: {problem}")

    def _health_problem(self) -> str:
        live = [node for node in self.nodes if node.alive()]
        try:
            for node in live:
                info = node.cluster_info()
                if info.get("cluster_state") != "ok":
                    return f"{node.address}: cluster_state {info.get('cluster_state')}"
                if info.get("cluster_slots_ok") != "16384":
                    return f"{node.address}: {info.get('cluster_slots_ok')} slots ok"
            primaries = [node for node in live if node.role() == "master"]
            if len(primaries) != PRIMARIES:
                return f"{len(primaries)} primaries"
            for node in live:
                replication = node.info("replication")
                if replication["role"] == "slave" and replication["master_link_status"] != "up":
                    return f"{node.address}: replica link {replication['master_link_status']}"
        except redis.RedisError as exc:
            return str(exc)
        return ""

    def primaries(self) -> list[ClusterNodeProcess]:
        return [node for node in self.nodes if node.alive() and node.role() == "master"]

    def primary_port_of(self, key: str) -> int:
        """The port of the primary serving `key`, asked of the cluster itself."""
        live = next(node for node in self.nodes if node.alive()).client()
        slot = int(live.execute_command("CLUSTER KEYSLOT", key))
        for start, end, primary, *_replicas in live.execute_command("CLUSTER SLOTS"):
            if int(start) <= slot <= int(end):
                return int(primary[1])
        raise LookupError(f"no node serves slot {slot}")

    def node_for_port(self, port: int) -> ClusterNodeProcess:
        return next(node for node in self.nodes if node.port == port)

    def flushall(self) -> None:
        """Empty every primary (each replica follows its primary)."""
        for node in self.primaries():
            node.client().flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@contextmanager
def spawn_redis_cluster(directory: Path, *extra_args: str) -> Iterator[RedisClusterNodes]:
    """A started cluster in `directory` (each node given `extra_args`), stopped on exit."""
    cluster = RedisClusterNodes(Path(directory), list(extra_args))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def redis_cluster_available() -> bool:
    return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None
