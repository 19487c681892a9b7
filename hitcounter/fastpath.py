"""The hit fast path: the pixel and the beacon answered straight from WSGI.

They run on every page view of every site, so they skip Flask's request context, URL
routing and response objects, and send answers whose headers are built once. They go
through the same `HitRecorder` as every other embed endpoint, so the rules are the same.
Every other request passes on to Flask untouched.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from json.encoder import encode_basestring_ascii
from typing import Any
from urllib.parse import unquote

from hitcounter import metrics
from hitcounter.errors import (
    HitcounterError,
    InvalidInput,
    PayloadTooLarge,
    StoreUnavailable,
    UnsupportedMediaType,
    error_body,
)
from hitcounter.hits import HitOutcome, HitRecorder
from hitcounter.httputil import cors_headers, hit_request, referer_path, trusted_proxies

log = logging.getLogger("hitcounter.fastpath")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Answer = tuple[int, list[tuple[str, str]], bytes]

# A transparent 1x1 GIF: the smallest valid image, 43 bytes.
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00"
    b"\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
GIF_HEADERS = [
    ("Content-Type", "image/gif"),
    ("Content-Length", str(len(GIF))),
    ("Cache-Control", "no-store"),
    ("Cross-Origin-Resource-Policy", "cross-origin"),
]
BEACON_TYPES = ("text/plain", "application/json", "")
# json.dumps with any option builds a new encoder per call; the beacon answers every hit.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))
STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


def query(environ: dict[str, Any]) -> dict[str, str]:
    """The query string's first values, decoded as `parse_qsl(keep_blank_values=True)`
    would. Bytes that are not UTF-8 become surrogates, which the path rules refuse."""
    # WSGI hands the raw bytes over as latin-1 text: get them back, then decode as UTF-8.
    raw = environ.get("QUERY_STRING", "").encode("latin-1").decode("utf-8", "surrogateescape")
    out: dict[str, str] = {}
    # parse_qsl's own loop, without its per-call checks: a pixel's query is parsed per hit.
    for field in raw.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        out.setdefault(_unquote_plus(name), _unquote_plus(value))
    return out


def _unquote_plus(text: str) -> str:
    if "+" in text:
        text = text.replace("+", " ")
    return unquote(text, errors="surrogateescape") if "%" in text else text


def counts_json(path: str, hits: int | None, site_hits: int | None) -> bytes:
    """The beacon's answer, {"path", "hits", "site_hits"}, as json.dumps writes it
    compactly; built directly, as it is once per hit."""
    return b'{"path":%s,"hits":%s,"site_hits":%s}' % (
        encode_basestring_ascii(path).encode(),
        b"null" if hits is None else b"%d" % hits,
        b"null" if site_hits is None else b"%d" % site_hits,
    )


class HitEndpoints:
    """WSGI middleware that answers the pixel and the beacon before Flask sees them."""

    def __init__(self, flask_wsgi: WSGIApp, recorder: HitRecorder, config: dict[str, Any]) -> None:
        self.flask_wsgi = flask_wsgi
        self.recorder = recorder
        self.trusted = trusted_proxies(str(config.get("TRUSTED_PROXIES") or ""))
        self.max_body = int(config["MAX_HIT_BODY"])

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "")
        if path.startswith("/hit/") and path.endswith(".gif") and method in ("GET", "HEAD"):
            endpoint, handler = "embed.pixel", self.pixel
        elif path == "/api/v1/hit" and method == "POST":
            endpoint, handler = "embed.beacon", self.beacon
        elif path == "/api/v1/hit" and method == "OPTIONS":
            endpoint, handler = "embed.beacon_preflight", self.preflight
        elif path == "/api/v1/hit":
            endpoint, handler = "embed.beacon", self.not_allowed
        else:
            return self.flask_wsgi(environ, start_response)
        started = time.perf_counter()
        try:
            status, headers, body = handler(environ)
        except Exception:
            log.exception("the hit fast path failed")
            status, headers, body = self._json(500, error_body("internal", "internal error"))
        start_response(STATUS_LINES[status], headers)
        metrics.observe_request(endpoint, status, time.perf_counter() - started)
        return [b""] if method == "HEAD" else [body]

    def pixel(self, environ: dict[str, Any]) -> Answer:
        """Count a view and answer the GIF; a hit not counted gets a 4xx and the reason.

        200 means the hit is kept: applied, or spooled on disk for Redis
        (`X-Hitcounter: spooled`). 503 (`unavailable`) means it was not kept.
        """
        args = query(environ)
        site = environ["PATH_INFO"][5:-4]
        path = args.get("path") or referer_path(environ.get("HTTP_REFERER"))
        outcome: HitOutcome | None = None
        try:
            outcome = self.recorder.record(
                hit_request(environ, self.trusted, site, path, args.get("ref"))
            )
            status, reason = outcome.status, outcome.reason
        except StoreUnavailable:
            status, reason = 503, "unavailable"
        headers = list(GIF_HEADERS)
        if reason:
            headers.append(("X-Hitcounter", reason))
        headers += cors_headers(
            environ.get("HTTP_ORIGIN"), outcome.site if outcome else None, error=status >= 400
        )
        return status, headers, GIF

    def beacon(self, environ: dict[str, Any]) -> Answer:
        """Count a view sent by the snippet as text/plain JSON (no CORS preflight)."""
        origin = environ.get("HTTP_ORIGIN")
        try:
            body = self._beacon_body(environ)
            outcome = self.recorder.record(
                hit_request(
                    environ, self.trusted, body["site"], body.get("path"), body.get("referrer")
                )
            )
        except HitcounterError as exc:
            status, headers, data = self._json(exc.status, error_body(exc.code, exc.message))
            return status, headers + cors_headers(origin, None, error=True), data
        if outcome.accepted:
            # A spooled hit is kept, but Redis could not say the counts: null, which the
            # snippet leaves unshown (it shows no count rather than a wrong one).
            spooled = outcome.spooled
            status, headers, data = self._json_bytes(
                outcome.status,
                counts_json(
                    outcome.path,
                    None if spooled else outcome.hits,
                    None if spooled else outcome.site_hits,
                ),
            )
        else:
            answer = error_body(outcome.reason, outcome.message)
            status, headers, data = self._json(outcome.status, answer)
        if outcome.reason:
            headers.append(("X-Hitcounter", outcome.reason))
        return status, headers + cors_headers(origin, outcome.site, error=status >= 400), data

    def preflight(self, environ: dict[str, Any]) -> Answer:
        """Answer the preflight a client sending application/json triggers."""
        return (
            204,
            [
                ("Access-Control-Allow-Origin", "*"),
                ("Access-Control-Allow-Methods", "POST"),
                ("Access-Control-Allow-Headers", "Content-Type"),
                ("Access-Control-Max-Age", "86400"),
            ],
            b"",
        )

    def not_allowed(self, environ: dict[str, Any]) -> Answer:
        status, headers, data = self._json(
            405, error_body("method_not_allowed", "send hits with POST")
        )
        return status, [*headers, ("Allow", "POST, OPTIONS")], data

    def _beacon_body(self, environ: dict[str, Any]) -> dict[str, Any]:
        limit = self.max_body
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError as exc:
            raise InvalidInput("bad Content-Length") from exc
        if length > limit:
            raise PayloadTooLarge(f"the body must be at most {limit} bytes")
        mimetype = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        if mimetype not in BEACON_TYPES:
            raise UnsupportedMediaType("send the hit as text/plain or application/json")
        stream = environ["wsgi.input"]
        data = stream.read(length) if length >= 0 else stream.read(limit + 1)
        if len(data) > limit:
            raise PayloadTooLarge(f"the body must be at most {limit} bytes")
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInput("the body must be JSON: {site, path, referrer}") from exc
        if not isinstance(body, dict) or not isinstance(body.get("site"), str):
            raise InvalidInput("the body must be a JSON object with a string 'site'")
        for field in ("path", "referrer"):
            if body.get(field) is not None and not isinstance(body[field], str):
                raise InvalidInput(f"{field} must be a string")
        return body

    @classmethod
    def _json(cls, status: int, answer: dict[str, Any]) -> Answer:
        return cls._json_bytes(status, _COMPACT_JSON.encode(answer).encode())

    @staticmethod
    def _json_bytes(status: int, data: bytes) -> Answer:
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
        ]
        return status, headers, data
