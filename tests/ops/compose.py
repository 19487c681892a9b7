"""Run deploy/docker-compose.yml's services outside containers, as the file describes them.

Redis gets the redis service's own command-line options and the app the image's own
command and the app service's environment; only what a container changes is translated:
ports become free loopback ports, the service name `redis` becomes 127.0.0.1, container
paths become temporary directories.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import yaml

from tests.conftest import free_port
from tests.spawn import wait_for_ping

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
ENV_EXAMPLE = DEPLOY / ".env.example"
VENV_BIN = Path(sys.executable).parent

REDIS_PASSWORD = "0123456789abcdef0123456789abcdef"
ADMIN_TOKEN = "ops-admin-token-0123456789abcdef0123456789"

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, innermost
# first (a default may hold another ${...}).
_VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^${}]*))?\}")


def venv_tool(name: str) -> str:
    """A command installed in the test environment (next to this interpreter)."""
    path = VENV_BIN / name
    return str(path) if path.exists() else (shutil.which(name) or name)


def compose() -> dict[str, Any]:
    with COMPOSE_FILE.open(encoding="utf-8") as f:
        loaded: dict[str, Any] = yaml.safe_load(f)
    return loaded


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a compose .env file; comments and blank lines skipped."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def operator_env() -> dict[str, str]:
    """.env.example with its two secrets filled in, as an operator would."""
    values = read_env_file(ENV_EXAMPLE)
    assert values["REDIS_PASSWORD"] == "" and values["HITCOUNTER_ADMIN_TOKEN"] == ""
    return values | {"REDIS_PASSWORD": REDIS_PASSWORD, "HITCOUNTER_ADMIN_TOKEN": ADMIN_TOKEN}


def interpolate(text: str, variables: dict[str, str]) -> str:
    """Fill ${...} the way docker compose does."""

    def one(match: re.Match[str]) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3) or ""
        value = variables.get(name)
        missing = value is None or (value == "" and operator and operator.startswith(":"))
        if operator and operator.endswith("?") and missing:
            raise ValueError(f"{name}: {argument}")
        if operator and operator.endswith("-") and missing:
            return argument
        return value or ""

    previous = None
    while previous != text:
        previous, text = text, _VARIABLE.sub(one, text)
    return text.replace("$$", "$")


def image_command() -> list[str]:
    """The exec-form CMD of deploy/Dockerfile."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith("CMD ")]
    assert len(lines) == 1, lines
    command: list[str] = json.loads(lines[0].removeprefix("CMD "))
    return command


def image_env() -> dict[str, str]:
    """The ENV of the Dockerfile's last stage (values without spaces or quotes)."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    last_stage = text.rsplit("\nFROM ", 1)[1]
    env: dict[str, str] = {}
    for line in last_stage.splitlines():
        if line.startswith("ENV "):
            for pair in line.removeprefix("ENV ").split():
                key, _, value = pair.partition("=")
                env[key] = value
    env.pop("PATH")  # the image's own layout
    return env


# -- Redis -----------------------------------------------------------------------------


@dataclass
class ComposeRedis:
    """redis-server with the compose service's options, on a free loopback port."""

    directory: Path
    variables: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def options(self) -> list[str]:
        service = compose()["services"]["redis"]
        command = [interpolate(str(part), self.variables) for part in service["command"]]
        assert command[0] == "redis-server"
        return command[1:]

    def start(self) -> None:
        local = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
        argv = [shutil.which("redis-server") or "redis-server", *self.options(), *local]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for_ping(self.client, self.port, self.process)
        except RuntimeError as exc:
            self.stop()
            errors = self.process.stderr.read().decode()  # type: ignore[union-attr]
            raise RuntimeError(f"{exc}: {errors}") from None

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=REDIS_PASSWORD, socket_timeout=5)

    def healthcheck(self) -> int:
        """Run the service's health check command against this server; its exit status."""
        test = compose()["services"]["redis"]["healthcheck"]["test"]
        assert test[0] == "CMD-SHELL"
        shell = test[1].replace("redis-cli", f"redis-cli -p {self.port}")
        env = os.environ | dict(
            (k, interpolate(str(v), self.variables))
            for k, v in compose()["services"]["redis"]["environment"].items()
        )
        quiet = subprocess.DEVNULL
        return subprocess.run(
            ["sh", "-c", shell], env=env, stdout=quiet, stderr=quiet, timeout=10
        ).returncode


# -- the app ---------------------------------------------------------------------------


@dataclass
class ComposeApp:
    """gunicorn with the image's command and the app service's environment."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    metrics_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()

    def terminate(self, timeout: float = 40) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def healthcheck(self) -> int:
        """Run the service's health check command against this server; its exit status."""
        test = compose()["services"]["app"]["healthcheck"]["test"]
        assert test[0] == "CMD"
        argv = [part.replace("127.0.0.1:8080", f"127.0.0.1:{self.port}") for part in test[1:]]
        argv[0] = sys.executable if argv[0] == "python" else argv[0]
        return subprocess.run(argv, timeout=10).returncode


def app_environment(
    variables: dict[str, str], redis_port: int, metrics_dir: Path
) -> dict[str, str]:
    """The app container's environment, translated to this machine."""
    service = compose()["services"]["app"]
    assert service["env_file"] == ".env"
    env = image_env()
    env |= {k: interpolate(v, variables) for k, v in variables.items()}
    env |= {k: interpolate(str(v), variables) for k, v in service["environment"].items()}
    env["HITCOUNTER_REDIS_URL"] = env["HITCOUNTER_REDIS_URL"].replace(
        "@redis:6379/", f"@127.0.0.1:{redis_port}/"
    )
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    env["HITCOUNTER_DATA_DIR"] = str(metrics_dir.parent / "data")
    return env


def start_app(
    variables: dict[str, str], redis_port: int, directory: Path, *, workers: int = 2
) -> ComposeApp:
    """Start gunicorn as the container would, on a free loopback port; wait until ready."""
    service = compose()["services"]["app"]
    command = service.get("command") or image_command()
    assert command[0] == "gunicorn"
    port = free_port()
    metrics_dir = directory / "metrics"
    env = app_environment(variables, redis_port, metrics_dir)
    env["HITCOUNTER_BIND"] = f"127.0.0.1:{port}"
    env["HITCOUNTER_WORKERS"] = str(workers)
    # The host's own environment, minus anything that would change the service.
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HITCOUNTER_", "PROMETHEUS_"))}
    base["PATH"] = f"{VENV_BIN}{os.pathsep}{base.get('PATH', '')}"
    log_path = directory / "app.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [venv_tool("gunicorn"), *command[1:]],
            env=base | env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    app = ComposeApp(process, port, log_path, metrics_dir)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("gunicorn exited:\n" + "\n".join(app.log_lines()[-20:]))
        # Each worker writes its metrics files once it has built the app: wait for all
        # of them, or the first one up would serve everything sent early.
        built = len(list(metrics_dir.glob("gauge_*.db")))
        if built >= workers and get(app.url + "/readyz")[0] == 200:
            return app
        time.sleep(0.1)
    app.terminate()
    raise RuntimeError("gunicorn did not become ready:\n" + "\n".join(app.log_lines()[-20:]))


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """GET over a fresh connection; (status, body), or (0, b"") if nothing answered."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def post_json(url: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
    data = json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json"} | headers
    request = urllib.request.Request(url, data=data, method="POST", headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
