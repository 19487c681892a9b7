"""Admin API: register, list, show, change and remove sites; issue read tokens."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from hitcounter.auth import require_admin
from hitcounter.errors import InvalidInput
from hitcounter.services import get_services

bp = Blueprint("admin", __name__, url_prefix="/api/v1/sites")


@bp.before_request
def admin_only() -> None:
    require_admin()


def json_body() -> Any:
    body = request.get_json(silent=True)
    if body is None:
        raise InvalidInput("the body must be JSON")
    return body


@bp.post("")
def create_site() -> tuple[Response, int]:
    site, token = get_services().sites.create(json_body())
    return jsonify(site.settings() | {"token": token}), 201


@bp.get("")
def list_sites() -> Response:
    return jsonify(sites=[site.settings() for site in get_services().sites.all()])


@bp.get("/<site>")
def show_site(site: str) -> Response:
    return jsonify(get_services().sites.fresh(site).settings())


@bp.patch("/<site>")
def update_site(site: str) -> Response:
    return jsonify(get_services().sites.update(site, json_body()).settings())


@bp.delete("/<site>")
def delete_site(site: str) -> tuple[str, int]:
    get_services().sites.delete(site)
    return "", 204


@bp.post("/<site>/token")
def new_token(site: str) -> Response:
    token = get_services().sites.rotate_token(site)
    return jsonify(name=site, token=token)
