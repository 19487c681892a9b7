"""Operations endpoints: liveness and readiness."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from hitcounter.errors import StoreUnavailable
from hitcounter.services import get_services

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up (it says nothing of Redis)."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready when Redis answers a PING."""
    try:
        get_services().store.ping()
    except StoreUnavailable as exc:
        return jsonify(status="unavailable", error=exc.message), 503
    return jsonify(status="ok"), 200
