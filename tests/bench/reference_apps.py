"""The two reference apps the hit path is measured against, under the same gunicorn.

- `flask_incr`: the classic Flask + Redis counter: one INCR per request, answer the GIF.
- `noop`: a WSGI app that answers the GIF and does nothing else: the server's ceiling.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import redis
from flask import Flask, Response

GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00"
    b"\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


def flask_incr() -> Flask:
    app = Flask(__name__)
    client = redis.Redis.from_url(os.environ["HITCOUNTER_REDIS_URL"])

    @app.get("/hit/<site>.gif")
    def hit(site: str) -> Response:
        client.incr(f"ref:{site}")
        response = Response(GIF, mimetype="image/gif")
        response.headers["Cache-Control"] = "no-store"
        return response

    return app


def noop() -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    headers = [("Content-Type", "image/gif"), ("Content-Length", str(len(GIF)))]

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", headers)
        return [GIF]

    return app
