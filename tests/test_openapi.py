"""The OpenAPI document: valid 3.1, complete, and true to what the service answers."""

from __future__ import annotations

import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from hitcounter.hits import HitRequest
from hitcounter.services import get_services
from hitcounter.store import Store
from tests.conftest import ADMIN, BROWSER_UA, add_site, make_app

# What SPEC lists, so the document cannot lose an endpoint even before it is built.
SPEC_SURFACE = [
    ("get", "/counter.js"),
    ("get", "/hit/{site}.gif"),
    ("post", "/api/v1/hit"),
    ("get", "/badge/{site}.svg"),
    ("get", "/counter/{site}.svg"),
    ("get", "/api/v1/sites/{site}/count"),
    ("get", "/api/v1/sites/{site}/stats"),
    ("get", "/api/v1/sites/{site}/pages"),
    ("get", "/api/v1/sites/{site}/timeseries"),
    ("get", "/api/v1/sites/{site}/referrers"),
    ("get", "/api/v1/sites/{site}/export"),
    ("get", "/sites/{site}/"),
    ("post", "/api/v1/sites"),
    ("get", "/api/v1/sites"),
    ("get", "/api/v1/sites/{site}"),
    ("patch", "/api/v1/sites/{site}"),
    ("delete", "/api/v1/sites/{site}"),
    ("post", "/api/v1/sites/{site}/token"),
    ("post", "/api/v1/sites/{site}/import"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/"),
]
SPEC_PARAMETERS = {
    "/hit/{site}.gif": {"path", "ref"},
    "/badge/{site}.svg": {"path", "label", "color", "label_color", "style", "count"},
    "/counter/{site}.svg": {"path", "digits", "theme", "fg", "bg", "f", "b", "count"},
    "/api/v1/sites/{site}/stats": {"from", "to"},
    "/api/v1/sites/{site}/pages": {"from", "to", "limit", "offset"},
    "/api/v1/sites/{site}/timeseries": {"from", "to", "interval", "path"},
    "/api/v1/sites/{site}/referrers": {"from", "to", "limit"},
    "/api/v1/sites/{site}/export": {"format"},
}


def served_document(app: Flask) -> dict[str, Any]:
    response = app.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.get_json()
    return document


def test_document_is_valid_openapi_3_1(app: Flask) -> None:
    document = served_document(app)
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises on any error


def test_every_url_rule_is_documented(app: Flask) -> None:
    paths = served_document(app)["paths"]
    missing = []
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD"}):
            if method == "OPTIONS" and rule.endpoint != "embed.beacon_preflight":
                continue  # Flask answers OPTIONS for every rule by itself
            if method.lower() not in paths.get(path, {}):
                missing.append(f"{method} {path}")
    assert missing == []


@pytest.mark.parametrize(("method", "path"), SPEC_SURFACE)
def test_spec_surface_is_documented(app: Flask, method: str, path: str) -> None:
    paths = served_document(app)["paths"]
    assert method in paths.get(path, {}), f"{method.upper()} {path}"
    wanted = SPEC_PARAMETERS.get(path, set())
    documented = {p["name"] for p in paths[path][method].get("parameters", [])}
    assert wanted <= documented


# -- Schemathesis ------------------------------------------------------------------------


def app_with_traffic(tmp_path: Path) -> Flask:
    """An app with an admin token, a public site and a little traffic."""
    app = make_app(Store(fakeredis.FakeRedis(server=fakeredis.FakeServer())), tmp_path)
    add_site(app.test_client(), "blog", public=True)
    with app.app_context():
        recorder = get_services().recorder
        for path in ("/", "/a", "/b"):
            hit = HitRequest("blog", path, "https://news.example/", None, "10.0.0.1", BROWSER_UA)
            recorder.record(hit, now=datetime.now(UTC))
    return app


def served_paths(app: Flask) -> set[str]:
    return {
        re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule) for rule in app.url_map.iter_rules()
    }


# Schemathesis builds its tests when this module is collected, so the app is built then too
# (on fakeredis, in a directory of its own).
LIVE_APP = app_with_traffic(Path(tempfile.mkdtemp(prefix="hitcounter-openapi-")))
# Only what the app serves: an endpoint another part of the service has yet to add is held
# to the document by the tests above, and checked here once it exists.
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", LIVE_APP).include(
    path_regex="|".join(f"^{re.escape(p)}$" for p in served_paths(LIVE_APP))
)


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_answers_conform_to_the_document(case: Any) -> None:
    """No 5xx, and every answer's status, type and body are as documented."""
    if "site" in (case.path_parameters or {}) and case.method.lower() != "delete":
        # Name the site with traffic, so the cases reach the real code; deletes keep a
        # generated name (and get a 404), so the site stays for the other cases.
        case.path_parameters["site"] = "blog"
    case.call_and_validate(
        headers=ADMIN,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
