"""Logging: one line per event, never a client's IP or User-Agent."""

from __future__ import annotations

import logging

from flask import Flask


def configure_logging(app: Flask) -> None:
    level = str(app.config.get("LOG_LEVEL") or "INFO").upper()
    logger = logging.getLogger("hitcounter")
    logger.setLevel(level)
    if not logging.getLogger().handlers and not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
