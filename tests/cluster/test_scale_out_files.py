"""deploy/scale-out/: valid Compose, and it keeps the scale-out promises (offline checks).

Six Redis Cluster nodes (3 primaries + 3 replicas by `--cluster create`), none published;
several stateless app replicas on a redis+cluster:// URL naming those nodes, reachable
only through the load balancer; the balancer never sends a counting request twice.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.ops.compose import interpolate, venv_tool

SCALE_OUT = Path(__file__).resolve().parents[2] / "deploy" / "scale-out"
COMPOSE_FILE = SCALE_OUT / "docker-compose.cluster.yml"
NGINX_CONF = SCALE_OUT / "nginx.conf"
SECRETS = {"REDIS_PASSWORD": "0123456789abcdef", "HITCOUNTER_ADMIN_TOKEN": "t" * 40}


def services() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return dict(loaded["services"])


def redis_nodes() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services().items() if re.fullmatch(r"redis-\d", name)}


def address(service: dict[str, Any]) -> str:
    return str(service["networks"]["backend"]["ipv4_address"])


def test_compose_file_follows_the_compose_specification() -> None:
    result = subprocess.run(
        [venv_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
         str(COMPOSE_FILE)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_six_private_cluster_nodes_joined_as_three_primaries_with_replicas() -> None:
    nodes = redis_nodes()
    assert len(nodes) == 6
    for node in nodes.values():
        command = [str(part) for part in node["command"]]
        assert command[command.index("--cluster-enabled") + 1] == "yes"
        assert command[command.index("--cluster-require-full-coverage") + 1] == "no"
        assert command[command.index("--appendonly") + 1] == "yes"
        assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
        assert command[command.index("--requirepass") + 1].startswith("${REDIS_PASSWORD:?")
        assert command[command.index("--masterauth") + 1].startswith("${REDIS_PASSWORD:?")
        assert "ports" not in node, "Redis must never be published"
        assert any(volume.endswith(":/data") for volume in node["volumes"])
    assert len({address(node) for node in nodes.values()}) == 6

    init = services()["redis-init"]
    script = " ".join(init["command"])
    created = re.search(r"--cluster create (.*?) --cluster-replicas 1 --cluster-yes", script)
    assert created, script
    assert created.group(1).split() == [f"{address(n)}:6379" for n in nodes.values()]
    assert set(init["depends_on"]) == set(nodes)
    assert init["restart"] == "no"


def test_stateless_app_replicas_on_the_cluster_behind_the_balancer() -> None:
    all_services = services()
    app, lb = all_services["app"], all_services["lb"]
    assert app["deploy"]["replicas"] >= 2
    assert "ports" not in app, "app servers are reached through the load balancer only"
    assert app["depends_on"] == {"redis-init": {"condition": "service_completed_successfully"}}
    assert "app-data:/var/lib/hitcounter" in app["volumes"]  # the spools, writable

    url = interpolate(app["environment"]["HITCOUNTER_REDIS_URL"], SECRETS)
    scheme, _, rest = url.partition("://")
    assert scheme == "redis+cluster"
    credentials, _, hosts = rest.rpartition("@")
    assert credentials == ":" + SECRETS["REDIS_PASSWORD"]
    node_addresses = {f"{address(n)}:6379" for n in redis_nodes().values()}
    assert set(hosts.split(",")) <= node_addresses

    trusted = app["environment"]["HITCOUNTER_TRUSTED_PROXIES"].split(",")
    assert address(lb) in trusted
    assert [interpolate(port, {}) for port in lb["ports"]] == ["127.0.0.1:8080:8080"]
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in lb["volumes"]


def test_balancer_spreads_requests_and_never_repeats_a_counting_one() -> None:
    conf = NGINX_CONF.read_text(encoding="utf-8")
    assert re.search(r"server app:8080 resolve;", conf)  # every replica, as they change
    assert "access_log off;" in conf  # no visitor addresses in logs
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in conf
    counting = re.search(r"location ~ \^/\((.*?)\) \{(.*?)\}", conf, re.S)
    assert counting, "a location for the counting endpoints"
    assert set(counting.group(1).split("|")) == {"hit/", "api/v1/hit$", "badge/", "counter/"}
    assert "proxy_next_upstream off;" in counting.group(2)
    assert conf.count("{") == conf.count("}")
