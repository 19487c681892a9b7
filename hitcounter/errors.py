"""Errors the service raises on purpose, and the one place they become HTTP answers."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask, Response


class HitcounterError(Exception):
    """Base of every error a client can cause; `status` and `code` say how it is answered."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidInput(HitcounterError):
    """The request is malformed: a bad path, site name, colour, date or body."""

    status = 400
    code = "invalid"


class Unauthorized(HitcounterError):
    """A token is missing or wrong."""

    status = 401
    code = "unauthorized"


class Forbidden(HitcounterError):
    """The request is understood but not allowed (for example the admin API is off)."""

    status = 403
    code = "forbidden"


class NotFound(HitcounterError):
    """The site (or another named thing) does not exist."""

    status = 404
    code = "not_found"


class Conflict(HitcounterError):
    """The thing to create exists already."""

    status = 409
    code = "conflict"


class PayloadTooLarge(HitcounterError):
    status = 413
    code = "too_large"


class UnsupportedMediaType(HitcounterError):
    status = 415
    code = "unsupported_media_type"


class TooManyRequests(HitcounterError):
    status = 429
    code = "rate_limited"


class StoreUnavailable(HitcounterError):
    """Redis cannot be reached or did not answer in time."""

    status = 503
    code = "store_unavailable"


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    """Build the JSON error body every API answer uses."""
    return {"error": {"code": code, "message": message}}


def register_error_handlers(app: Flask) -> None:
    """Map our errors and Werkzeug's HTTP errors to JSON; never let a client see a 500 page."""
    from flask import jsonify
    from werkzeug.exceptions import HTTPException

    def handle_ours(exc: HitcounterError) -> tuple[Response, int]:
        return jsonify(error_body(exc.code, exc.message)), exc.status

    def handle_http(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        code = (exc.name or "error").lower().replace(" ", "_")
        return jsonify(error_body(code, exc.description or exc.name)), status

    def handle_unexpected(exc: Exception) -> tuple[Response, int]:
        app.logger.exception("unhandled error")
        return jsonify(error_body("internal", "internal error")), 500

    app.register_error_handler(HitcounterError, handle_ours)
    app.register_error_handler(HTTPException, handle_http)
    app.register_error_handler(Exception, handle_unexpected)
