"""The `hitcounter` command, on a real Redis and on the embedded store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from hitcounter.cli import main
from tests.conftest import free_port
from tests.servers import request, wait_until_up

HITCOUNTER = str(Path(sys.executable).parent / "hitcounter")


@pytest.mark.integration
def test_site_commands_on_redis(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HITCOUNTER_REDIS_URL", redis_url)
    monkeypatch.setenv("HITCOUNTER_PUBLIC_URL", "https://count.example")
    cli = CliRunner()

    added = cli.invoke(main, ["site", "add", "blog", "--domain", "blog.example", "--public"])
    assert added.exit_code == 0, added.output
    assert "Read token" in added.output
    assert 'src="https://count.example/counter.js" data-site="blog"' in added.output

    again = cli.invoke(main, ["site", "add", "blog"])
    assert again.exit_code == 1 and "exists already" in again.output

    listed = cli.invoke(main, ["site", "list"])
    assert listed.output.split() == ["blog", "public", "UTC", "blog.example"]

    updated = cli.invoke(
        main, ["site", "update", "blog", "--timezone", "Europe/Paris", "--private"]
    )
    assert updated.exit_code == 0, updated.output
    shown = json.loads(cli.invoke(main, ["site", "show", "blog"]).output)
    assert (shown["timezone"], shown["public"]) == ("Europe/Paris", False)

    bad = cli.invoke(main, ["site", "update", "blog", "--timezone", "Nowhere/Land"])
    assert bad.exit_code == 1 and "unknown timezone" in bad.output

    token = cli.invoke(main, ["site", "token", "blog"])
    assert token.exit_code == 0 and "New read token" in token.output

    checked = cli.invoke(main, ["check"])
    assert checked.exit_code == 0 and "store: answers" in checked.output

    removed = cli.invoke(main, ["site", "remove", "blog", "--yes"])
    assert removed.exit_code == 0
    assert "No sites yet" in cli.invoke(main, ["site", "list"]).output
    assert cli.invoke(main, ["site", "show", "blog"]).exit_code == 1


def test_check_fails_when_redis_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HITCOUNTER_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 1 and "store unreachable" in result.output


def run_cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [HITCOUNTER, *args], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


@pytest.mark.slow
def test_embedded_store_is_shared_and_kept_across_restarts(tmp_path: Path) -> None:
    """`serve` and the CLI reach one embedded store; its data survives a restart."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HITCOUNTER_")}
    env |= {"HITCOUNTER_DATA_DIR": str(tmp_path / "data"), "HITCOUNTER_SAVE_INTERVAL": "1"}
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def serve() -> subprocess.Popen[bytes]:
        command = [HITCOUNTER, "serve", "--port", str(port), "--workers", "2"]
        process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
        wait_until_up(url, process)
        return process

    def stop(process: subprocess.Popen[bytes]) -> bytes:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
        return stderr

    server = serve()
    try:
        assert "Registered site 'blog'" in run_cli(env, "site", "add", "blog", "--dedupe", "0")
        for _ in range(3):
            status, _ = request(f"{url}/hit/blog.gif?path=/kept")
            assert status == 200
        assert run_cli(env, "site", "list").split()[0] == "blog"
    finally:
        stderr = stop(server)
    assert b"embedded store" in stderr  # it says so at start-up
    assert (tmp_path / "data" / "store.snapshot").exists()

    # Stopped: the CLI reads and writes the snapshot itself.
    assert "Registered site 'news'" in run_cli(env, "site", "add", "news")

    server = serve()
    try:
        status, count = request(f"{url}/api/v1/sites/blog/count?path=/kept")
        assert (status, count["hits"]) == (200, 3)
        names = [line.split("\t")[0] for line in run_cli(env, "site", "list").splitlines()]
        assert names == ["blog", "news"]
    finally:
        stop(server)
