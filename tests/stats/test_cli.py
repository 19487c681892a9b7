"""`hitcounter stats`, `export` and `import`, on a real Redis."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from hitcounter import create_app
from hitcounter.cli import main
from tests.stats.conftest import hit


@pytest.mark.integration
def test_stats_export_import_commands(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HITCOUNTER_REDIS_URL", redis_url)
    monkeypatch.setenv("HITCOUNTER_DATA_DIR", str(tmp_path / "data"))
    cli = CliRunner()
    for name in ("blog", "copy"):
        assert cli.invoke(main, ["site", "add", name, "--timezone", "Europe/Paris"]).exit_code == 0
    app = create_app({"SITE_CACHE_SECONDS": 0})
    now = datetime.now(UTC)
    for n in range(12):
        hit(app, "blog", f"/post/{n % 3}", now - timedelta(days=n % 4), ip=f"10.0.0.{n}",
            referrer="https://news.example/")  # fmt: skip

    shown = cli.invoke(main, ["stats", "blog"])
    assert shown.exit_code == 0, shown.output
    assert "hits 12" in shown.output and "/post/0" in shown.output
    assert "news.example" in shown.output

    dump = tmp_path / "blog.json"
    exported = cli.invoke(main, ["export", "blog", "--output", str(dump)])
    assert exported.exit_code == 0, exported.output
    assert "4 days" in exported.output
    imported = cli.invoke(main, ["import", "copy", str(dump)])
    assert imported.exit_code == 0, imported.output
    assert json.loads(imported.output.splitlines()[-1])["days"] == 4

    def answers(site: str) -> dict[str, object]:
        result = cli.invoke(main, ["stats", site, "--json", "--limit", "50"])
        assert result.exit_code == 0, result.output
        body: dict[str, dict[str, object]] = json.loads(result.output)
        return {
            part: {k: v for k, v in answer.items() if k != "site"} for part, answer in body.items()
        }

    assert answers("copy") == answers("blog")

    csv_out = cli.invoke(main, ["export", "blog", "--format", "csv"])
    assert csv_out.output.startswith("section,date,key,value\n")

    counts = tmp_path / "counts.json"
    counts.write_text(json.dumps({"pages": {"/old": 500}}))
    added = cli.invoke(main, ["import", "copy", str(counts)])
    assert added.exit_code == 0, added.output
    assert json.loads(added.output.splitlines()[-1])["hits"] == 500

    bad = tmp_path / "bad.json"
    bad.write_text('{"pages": {"/x": -1}}')
    refused = cli.invoke(main, ["import", "copy", str(bad)])
    assert refused.exit_code == 1 and "whole number" in refused.output
    assert cli.invoke(main, ["stats", "nosuch"]).exit_code == 1
