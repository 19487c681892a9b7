"""Logs: one JSON object per line, with no client address or User-Agent in them."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from hitcounter.logs import HideClientAddress, JsonFormatter, configure_logging
from hitcounter.store import Store
from tests.conftest import BROWSER_UA, make_app

ADDRESS = "203.0.113.77"


def record(name: str, msg: str, args: object = None, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)  # type: ignore[arg-type]
    made.__dict__.update(extra)
    return made


def test_a_record_is_one_line_of_json_with_its_extras() -> None:
    try:
        raise ValueError("broken\nacross lines")
    except ValueError:
        failed = record("hitcounter", "saving %s failed", ("snapshot",), site="blog")
        failed.exc_info = sys.exc_info()
    line = JsonFormatter().format(failed)
    assert "\n" not in line
    event = json.loads(line)
    assert event["message"] == "saving snapshot failed"
    assert event["level"] == "INFO" and event["logger"] == "hitcounter"
    assert event["site"] == "blog"
    assert "ValueError: broken\nacross lines" in event["exception"]
    assert event["time"].endswith("+00:00")


def test_access_lines_keep_only_the_allowed_fields() -> None:
    # What gunicorn's access log hands to the formatter: every "atom" of the request.
    atoms = {
        "h": ADDRESS,
        "a": BROWSER_UA,
        "f": "https://blog.example/private",
        "r": "GET /api/v1/sites/blog/stats?token=SECRET HTTP/1.1",
        "q": "token=SECRET",
        "m": "GET",
        "U": "/api/v1/sites/blog/stats",
        "s": "200",
        "B": 512,
        "M": 3,
        "{x-forwarded-for}i": ADDRESS,
        "{user-agent}i": BROWSER_UA,
    }
    line = JsonFormatter().format(record("gunicorn.access", "%(r)s %(h)s", atoms))
    event = json.loads(line)
    for secret in (ADDRESS, BROWSER_UA, "SECRET", "blog.example"):
        assert secret not in line
    assert {k: event[k] for k in ("method", "path", "status", "bytes", "duration_ms")} == {
        "method": "GET",
        "path": "/api/v1/sites/blog/stats",
        "status": "200",
        "bytes": 512,
        "duration_ms": 3,
    }


@pytest.mark.parametrize("address", [ADDRESS, "2001:db8::7"])
def test_gunicorn_warnings_do_not_carry_the_client_address(address: str) -> None:
    message = f"Invalid request from ip={address}: Invalid HTTP method: 'BAD'"
    event = json.loads(JsonFormatter().format(record("gunicorn.error", message)))
    assert event["message"] == "Invalid request from ip=-: Invalid HTTP method: 'BAD'"


def test_the_development_server_does_not_log_addresses() -> None:
    # werkzeug inlines the address into the message before logging it.
    line = record(
        "werkzeug",
        f'{ADDRESS} - - [28/Nov/2026 01:00:00] "%s" %s %s',
        ("GET / HTTP/1.1", "200", "-"),
    )
    assert HideClientAddress().filter(line)
    assert ADDRESS not in line.getMessage()
    assert '"GET / HTTP/1.1" 200 -' in line.getMessage()


def test_log_level_comes_from_the_configuration(fake_store: Store, tmp_path: Path) -> None:
    make_app(fake_store, tmp_path, LOG_LEVEL="warning")
    assert logging.getLogger("hitcounter").level == logging.WARNING
    make_app(fake_store, tmp_path, LOG_LEVEL="DEBUG")
    assert logging.getLogger("hitcounter").level == logging.DEBUG


def test_without_other_logging_the_app_logs_json(
    fake_store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # As under `flask run`: nothing configured logging before the app.
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    logger = logging.getLogger("hitcounter")
    monkeypatch.setattr(logger, "handlers", [])
    app = make_app(fake_store, tmp_path)
    configure_logging(app)  # twice: still one handler
    assert len(logger.handlers) == 1
    app.logger.warning("snapshot saved", extra={"keys": 3})
    event = json.loads(capsys.readouterr().err.strip())
    assert event["message"] == "snapshot saved" and event["keys"] == 3


@pytest.mark.parametrize(
    ("accesslog", "level", "written"),
    [("-", logging.INFO, True), (None, logging.INFO, False), ("-", logging.WARNING, False)],
)
def test_access_lines_are_built_only_when_written(
    accesslog: str | None, level: int, written: bool
) -> None:
    from gunicorn.config import Config

    from hitcounter.logs import GunicornLogger

    config = Config()
    config.set("accesslog", accesslog)
    logger = GunicornLogger(config)
    logger.access_log.setLevel(level)
    built: list[object] = []
    logger.atoms = lambda *args: built.append(args) or {}  # type: ignore[method-assign]
    logger.access(object(), object(), {}, 0.001)
    assert bool(built) is written
    assert logger.access_log_enabled is written
