"""Logging: one JSON object per line, never a client's IP address or User-Agent.

The app's own records, gunicorn's error log and its access log all go through
`JsonFormatter` (see `hitcounter.gunicorn_conf`), so a log shipper parses every line the
same way. Access lines keep only an allow-list of fields: method, path without its query
string (which can carry a read token), status, bytes and duration.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from gunicorn.glogging import Logger as _GunicornLogger

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# gunicorn's access log passes its "atoms" as a dict; these are the ones worth keeping.
# Left out on purpose: h (client address), a (User-Agent), f (Referer), q (query),
# r (request line with the query), and every {header}i.
ACCESS_FIELDS = {"m": "method", "U": "path", "s": "status", "B": "bytes", "M": "duration_ms"}

# werkzeug writes "<address> - - [<date>] <request line> ..." with the address inlined.
_WERKZEUG_ADDRESS = re.compile(r"^\S+ - - \[")
# gunicorn warns "Invalid request from ip=<address>: <error>" (an IPv6 address has
# colons, but never a colon and a space).
_GUNICORN_ADDRESS = re.compile(r"\bip=\S*?: ")


class JsonFormatter(logging.Formatter):
    """Format a record as one line of JSON: time, level, logger, message, and extras."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
        }
        if record.name == "gunicorn.access" and isinstance(record.args, dict):
            atoms = record.args
            event["message"] = "request"
            event.update({name: atoms.get(atom) for atom, name in ACCESS_FIELDS.items()})
        else:
            event["message"] = _GUNICORN_ADDRESS.sub("ip=-: ", record.getMessage())
        event.update(
            (key, value) for key, value in vars(record).items() if key not in _RECORD_ATTRIBUTES
        )
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            event["stack"] = self.formatStack(record.stack_info)
        # json.dumps escapes newlines, so a traceback stays on its line.
        return json.dumps(event, default=str, ensure_ascii=False)


class GunicornLogger(_GunicornLogger):
    """gunicorn's logger, building an access line only when one will be written.

    gunicorn gathers a request's "atoms" whenever any logging configuration is set, even
    when the access log is off or its level drops the line: a cost on every hit for
    nothing. Access lines are written when HITCOUNTER_ACCESS_LOG turns on `accesslog`.
    """

    @property
    def access_log_enabled(self) -> bool:
        return bool(self.cfg.accesslog) and self.access_log.isEnabledFor(logging.INFO)


class HideClientAddress(logging.Filter):
    """Blank the client address werkzeug's development server puts first in its lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _WERKZEUG_ADDRESS.sub("- - - [", record.msg, count=1)
        return True


def configure_logging(app: Flask) -> None:
    """Log at LOG_LEVEL, as JSON unless the process has configured logging already."""
    level = str(app.config.get("LOG_LEVEL") or "INFO").upper()
    logger = logging.getLogger("hitcounter")
    logger.setLevel(level)
    # Under gunicorn the root logger already has the JSON handler (gunicorn_conf), and
    # under pytest it has the capture handler: adding ours there would print twice.
    if not logging.getLogger().handlers and not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
    werkzeug = logging.getLogger("werkzeug")
    if not any(isinstance(f, HideClientAddress) for f in werkzeug.filters):
        werkzeug.addFilter(HideClientAddress())
