"""Helpers for the stats tests: record hits at a chosen moment, read JSON answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from hitcounter.hits import HitOutcome, HitRequest
from hitcounter.services import get_services
from tests.conftest import BROWSER_UA


def hit(
    app: Flask,
    site: str,
    path: str,
    when: datetime,
    *,
    ip: str = "192.0.2.1",
    referrer: str | None = None,
    user_agent: str = BROWSER_UA,
) -> HitOutcome:
    """Send one hit through the real hit pipeline, as if it arrived at `when`."""
    request = HitRequest(
        site=site, path=path, referrer=referrer, source=None, ip=ip, user_agent=user_agent
    )
    with app.app_context():
        return get_services().recorder.record(request, now=when)


def get_json(client: FlaskClient, url: str, status: int = 200, **kwargs: Any) -> Any:
    """GET a URL and return its JSON, checking the status first."""
    response = client.get(url, **kwargs)
    assert response.status_code == status, (url, response.get_data(as_text=True)[:500])
    return response.get_json()
