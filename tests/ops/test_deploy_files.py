"""deploy/: the compose file is valid Compose, the Dockerfile passes hadolint, and both
keep the promises the README makes (Redis private and durable, the app on loopback,
graceful stops, a non-root user, every setting documented)."""

from __future__ import annotations

import re
import subprocess

import pytest

from hitcounter import gunicorn_conf
from hitcounter.config import DEFAULTS
from tests.ops.compose import (
    COMPOSE_FILE,
    DOCKERFILE,
    ENV_EXAMPLE,
    compose,
    image_command,
    interpolate,
    operator_env,
    venv_tool,
)


def run_tool(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_compose_file_follows_the_compose_specification() -> None:
    result = run_tool(
        venv_tool("check-jsonschema"),
        "--builtin-schema",
        "vendor.compose-spec",
        str(COMPOSE_FILE),
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_passes_hadolint() -> None:
    result = run_tool(venv_tool("hadolint"), str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr


def seconds(duration: str) -> float:
    """A compose duration such as "30s" or "1m30s" in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert "".join(number + unit for number, unit in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


def test_redis_is_durable_private_and_password_protected() -> None:
    redis = compose()["services"]["redis"]
    command = [str(part) for part in redis["command"]]
    assert re.fullmatch(r"redis:7\.\d+\.\d+(-\w+)?", redis["image"]), "pin a Redis 7 release"
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert command[command.index("--requirepass") + 1].startswith("${REDIS_PASSWORD:?")
    assert "ports" not in redis, "Redis must never be published"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    with pytest.raises(ValueError, match="REDIS_PASSWORD"):
        interpolate(command[command.index("--requirepass") + 1], {"REDIS_PASSWORD": ""})


def test_app_is_on_loopback_and_stops_gracefully() -> None:
    services = compose()["services"]
    app = services["app"]
    assert app["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert app["depends_on"] == {"redis": {"condition": "service_healthy"}}
    published = [interpolate(port, {}) for port in app["ports"]]
    assert published == ["127.0.0.1:8080:8080"]
    for service in services.values():
        assert service["restart"] == "unless-stopped"
        assert "test" in service["healthcheck"]
    assert seconds(app["stop_grace_period"]) > gunicorn_conf.graceful_timeout


def test_image_runs_gunicorn_as_an_unprivileged_user() -> None:
    text = DOCKERFILE.read_text()
    assert image_command() == [
        "gunicorn",
        "-c",
        "python:hitcounter.gunicorn_conf",
        "hitcounter:create_app()",
    ]
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert "HEALTHCHECK" in text
    bases = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert len(bases) == 2 and all(re.fullmatch(r"python:3\.11\.\d+-slim-\w+", b) for b in bases)


def test_env_example_documents_every_setting() -> None:
    text = ENV_EXAMPLE.read_text()
    documented = set(re.findall(r"^#? ?HITCOUNTER_(\w+)=", text, re.MULTILINE))
    # DATA_DIR and SAVE_INTERVAL belong to the embedded store, which compose does not use.
    missing = set(DEFAULTS) - documented - {"DATA_DIR", "SAVE_INTERVAL"}
    assert not missing, f"settings missing from .env.example: {sorted(missing)}"
    # The reverse proxy on the host reaches the app from the network's gateway.
    gateway = interpolate(compose()["networks"]["default"]["ipam"]["config"][0]["gateway"], {})
    assert operator_env()["HITCOUNTER_TRUSTED_PROXIES"] == gateway
