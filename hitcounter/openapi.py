"""The OpenAPI 3.1 document of every endpoint of the service.

Written by hand, kept true by tests: it is validated as OpenAPI 3.1, every URL rule of
the app must appear in it, and Schemathesis checks the served answers against it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from hitcounter.stats import (
    DEFAULT_LIMIT,
    DROP_REASONS,
    MAX_HOUR_RANGE_DAYS,
    MAX_LIMIT,
    MAX_OFFSET,
    MAX_RANGE_DAYS,
)

Schema = dict[str, Any]

JSON = "application/json"
ERROR_REF = {"$ref": "#/components/schemas/Error"}
COUNT = {"type": "integer", "minimum": 0}
# A hit kept in the spool (Redis away) is answered before anyone knows the count.
SPOOLED_COUNT = {"type": ["integer", "null"], "minimum": 0}
SITE_NAME = "^[a-z0-9][a-z0-9._-]{0,62}$"
ERROR_TEXT = {
    400: "Bad input: the message says what is wrong.",
    401: "A token is missing or wrong.",
    403: "Not allowed (for example the admin API is off).",
    404: "No such site.",
    409: "The site exists already.",
    413: "The body is too large.",
    415: "Unsupported content type.",
    429: "Too many failed token attempts from this client: wait a minute.",
    503: "Redis cannot be reached.",
}


def _error(status: int) -> Schema:
    return {"description": ERROR_TEXT[status], "content": {JSON: {"schema": ERROR_REF}}}


def _errors(*statuses: int) -> dict[str, Schema]:
    return {str(status): _error(status) for status in statuses}


def _json(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _query(name: str, description: str, schema: Schema | None = None) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _object(properties: dict[str, Schema], *, required: list[str] | None = None) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
    }


SITE_PARAM = {
    "name": "site",
    "in": "path",
    "required": True,
    "description": "The site's name.",
    "schema": {"type": "string"},
}
FROM = _query(
    "from",
    "First day, YYYY-MM-DD in the site's timezone (default: 29 days before `to`).",
    {"type": "string", "format": "date"},
)
TO = _query(
    "to",
    "Last day, YYYY-MM-DD in the site's timezone (default: today there).",
    {"type": "string", "format": "date"},
)
LIMIT = _query(
    "limit",
    f"How many rows (default {DEFAULT_LIMIT}).",
    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
)
TOKEN = _query("token", "A read token or the admin token, instead of the Authorization header.")
PATH = _query("path", "The page: a path or full URL (default: the Referer's path, else /).")
COUNT_FLAG = _query(
    "count",
    "`0` (or false/no/off) shows the count without counting this view.",
    {"type": "string"},
)

READER_SECURITY: list[dict[str, list[str]]] = [{}, {"bearer": []}, {"token": []}]
ADMIN_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"token": []}]

RANGE_FIELDS: dict[str, Schema] = {
    "site": {"type": "string"},
    "from": {"type": "string", "format": "date"},
    "to": {"type": "string", "format": "date"},
}

SCHEMAS: dict[str, Schema] = {
    "Error": _object(
        {
            "error": _object(
                {"code": {"type": "string"}, "message": {"type": "string"}},
            )
        }
    ),
    "Settings": _object(
        {
            "name": {"type": "string", "pattern": SITE_NAME},
            "domains": {"type": "array", "items": {"type": "string"}},
            "public": {"type": "boolean"},
            "timezone": {"type": "string", "description": "IANA name"},
            "dedupe_seconds": {"type": "integer", "minimum": 0},
            "created": {"type": "string"},
        }
    ),
    "SettingsInput": {
        "type": "object",
        "properties": {
            "domains": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Allowed hostnames; `*.example.com` allowed; empty allows any.",
            },
            "public": {"type": "boolean"},
            "timezone": {"type": "string", "default": "UTC"},
            "dedupe_seconds": {"type": "integer", "minimum": 0, "default": 1800},
        },
        "additionalProperties": False,
    },
    "Stats": _object(
        {
            **RANGE_FIELDS,
            "timezone": {"type": "string"},
            "hits": {**COUNT, "description": "Counted hits in the range."},
            "raw_hits": {**COUNT, "description": "Raw hits: counted plus deduplicated repeats."},
            "visitors": {**COUNT, "description": "Unique visitors (HyperLogLog estimate)."},
            "pages": {**COUNT, "description": "Distinct pages with counted hits in the range."},
            "dropped": {
                **_object({reason: COUNT for reason in DROP_REASONS}),
                "description": "Requests not counted, by reason (unknown_site is always 0: "
                "such requests belong to no site).",
            },
            "all_time": _object({"hits": COUNT, "raw_hits": COUNT, "pages": COUNT}),
        }
    ),
    "Pages": _object(
        {
            **RANGE_FIELDS,
            "total": {**COUNT, "description": "Distinct pages with hits in the range."},
            "limit": COUNT,
            "offset": COUNT,
            "pages": {
                "type": "array",
                "items": _object({"path": {"type": "string"}, "hits": COUNT}),
            },
        }
    ),
    "Referrers": _object(
        {
            **RANGE_FIELDS,
            "total": {**COUNT, "description": "Distinct referring hosts in the range."},
            "limit": COUNT,
            "referrers": {
                "type": "array",
                "items": _object({"host": {"type": "string"}, "hits": COUNT}),
            },
        }
    ),
    "Timeseries": _object(
        {
            **RANGE_FIELDS,
            "timezone": {"type": "string"},
            "interval": {"enum": ["day", "hour"]},
            "path": {"type": ["string", "null"]},
            "points": {
                "type": "array",
                "items": {
                    "oneOf": [
                        _object(
                            {
                                "date": {"type": "string", "format": "date"},
                                "hits": COUNT,
                                "visitors": COUNT,
                            },
                            required=["date", "hits"],
                        ),
                        _object(
                            {
                                "time": {
                                    "type": "string",
                                    "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:00$",
                                    "description": "Local hour in the site's timezone.",
                                },
                                "hits": COUNT,
                            }
                        ),
                    ]
                },
            },
        }
    ),
    "Export": {
        "type": "object",
        "description": "Everything kept for a site (version 1).",
        "required": ["format", "version"],
        "properties": {
            "format": {"const": "hitcounter-export"},
            "version": {"const": 1},
            "exported_at": {"type": "string"},
            "site": {"$ref": "#/components/schemas/Settings"},
            "totals": _object({"hits": COUNT, "raw_hits": COUNT}),
            "pages": {
                "type": "array",
                "items": _object({"path": {"type": "string"}, "hits": COUNT, "raw_hits": COUNT}),
            },
            "days": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["date"],
                    "properties": {
                        "date": {"type": "string", "format": "date"},
                        "hits": COUNT,
                        "raw_hits": COUNT,
                        "hours": {"type": "object", "additionalProperties": COUNT},
                        "dropped": {"type": "object", "additionalProperties": COUNT},
                        "visitors": COUNT,
                        "visitors_hll": {
                            "type": "string",
                            "description": "The day's Redis HyperLogLog, base64 (Redis only).",
                        },
                        "pages": {"type": "object", "additionalProperties": COUNT},
                        "referrers": {"type": "object", "additionalProperties": COUNT},
                    },
                },
            },
        },
    },
    "StartingCounts": {
        "type": "object",
        "required": ["pages"],
        "additionalProperties": False,
        "properties": {
            "pages": {
                "type": "object",
                "description": "path: hits to add (as counted and raw hits, all time).",
                "additionalProperties": COUNT,
            }
        },
    },
    "ImportResult": {
        "type": "object",
        "required": ["site", "form", "pages"],
        "properties": {
            "site": {"type": "string"},
            "form": {"enum": ["export", "pages"]},
            "pages": COUNT,
            "hits": COUNT,
            "other": COUNT,
            "days": COUNT,
            "expired_days": COUNT,
        },
    },
    "PageCount": _object(
        {"path": {"type": "string"}, "hits": COUNT, "raw_hits": COUNT, "site_hits": COUNT}
    ),
}

SCHEMAS["SiteInput"] = {
    **SCHEMAS["SettingsInput"],
    "properties": {
        "name": {"type": "string", "pattern": SITE_NAME},
        **SCHEMAS["SettingsInput"]["properties"],
    },
    "required": ["name"],
}

IMAGE_RESPONSE_TEXT = (
    "Every answer is an image; one that is not counted says why, with a 4xx or 503 status "
    "and an `X-Hitcounter` header naming the reason."
)


def _image(media: str, *statuses: int) -> dict[str, Schema]:
    x_reason = {
        "X-Hitcounter": {
            "description": "Why the view was not counted.",
            "schema": {"type": "string"},
        }
    }
    out: dict[str, Schema] = {}
    for status in statuses:
        entry: Schema = {
            "description": "The image." if status < 300 else IMAGE_RESPONSE_TEXT,
            "content": {media: {"schema": {"type": "string"}}},
        }
        if status >= 400:
            entry["headers"] = x_reason
        out[str(status)] = entry
    if media == "image/svg+xml":
        out["304"] = {"description": "Not modified (only when not counting)."}
    return out


def _stats_op(summary: str, ref: str, params: list[Schema], description: str = "") -> Schema:
    return {
        "get": {
            "tags": ["stats"],
            "summary": summary,
            "description": description or summary,
            "security": READER_SECURITY,
            "parameters": [SITE_PARAM, *params, TOKEN],
            "responses": {
                "200": _json(summary, {"$ref": f"#/components/schemas/{ref}"}),
                **_errors(400, 401, 404, 429, 503),
            },
        }
    }


def _admin(summary: str, responses: dict[str, Schema], **extra: Any) -> Schema:
    return {
        "tags": ["admin"],
        "summary": summary,
        "security": ADMIN_SECURITY,
        "responses": {**responses, **_errors(400, 401, 403, 429, 503)},
        **extra,
    }


def _plain(summary: str, media: str, *statuses: int, tag: str = "operations") -> Schema:
    responses: dict[str, Schema] = {
        str(status): {
            "description": summary if status < 300 else "Not available.",
            "content": {media: {"schema": {"type": "string"}}},
        }
        for status in statuses
    }
    return {"get": {"tags": [tag], "summary": summary, "responses": responses}}


def _paths() -> dict[str, Schema]:
    settings_ref = {"$ref": "#/components/schemas/Settings"}
    settings_in = {"$ref": "#/components/schemas/SettingsInput"}
    return {
        "/": _plain("Landing page: what this is, how to embed, a live demo.", "text/html", 200),
        "/counter.js": {
            "get": {
                "tags": ["embedding"],
                "summary": "The snippet; cacheable, revalidated by ETag.",
                "responses": {
                    "200": {
                        "description": "The script.",
                        "content": {"text/javascript": {"schema": {"type": "string"}}},
                    },
                    "304": {"description": "Not modified."},
                },
            }
        },
        "/hit/{site}.gif": {
            "get": {
                "tags": ["embedding"],
                "summary": "Count a view; answer a 43-byte transparent GIF.",
                "parameters": [
                    SITE_PARAM,
                    PATH,
                    _query("ref", "The referring URL (document.referrer)."),
                ],
                "responses": _image("image/gif", 200, 400, 403, 404, 429, 503),
            }
        },
        "/api/v1/hit": {
            "post": {
                "tags": ["embedding"],
                "summary": "Count a view sent by the snippet (text/plain: no CORS preflight).",
                "requestBody": {
                    "required": True,
                    "content": {
                        media: {
                            "schema": _object(
                                {
                                    "site": {"type": "string"},
                                    "path": {"type": "string"},
                                    "referrer": {"type": "string"},
                                },
                                required=["site"],
                            )
                        }
                        for media in ("text/plain", JSON)
                    },
                },
                "responses": {
                    "200": _json(
                        "Counted (or a repeat inside the dedupe window), or kept in the "
                        "spool while Redis is away: then `hits` and `site_hits` are null "
                        "and `X-Hitcounter` says `spooled`.",
                        _object(
                            {
                                "path": {"type": "string"},
                                "hits": SPOOLED_COUNT,
                                "site_hits": SPOOLED_COUNT,
                            }
                        ),
                    ),
                    **_errors(400, 403, 404, 413, 415, 429, 503),
                },
            },
            "options": {
                "tags": ["embedding"],
                "summary": "CORS preflight for clients sending application/json.",
                "responses": {"204": {"description": "Allowed."}},
            },
        },
        "/badge/{site}.svg": {
            "get": {
                "tags": ["embedding"],
                "summary": "Count a view; answer a shields-style SVG badge with the page's hits.",
                "parameters": [
                    SITE_PARAM,
                    PATH,
                    _query("label", "Left-hand text (default `views`)."),
                    _query("color", "Right-hand colour: #hex or a named colour."),
                    _query("label_color", "Left-hand colour: #hex or a named colour."),
                    _query(
                        "style",
                        "Badge style.",
                        {"enum": ["flat", "flat-square", "plastic", "for-the-badge"]},
                    ),
                    _query("abbreviate", "`1` shows 12.3K instead of 12345."),
                    COUNT_FLAG,
                ],
                "responses": _image("image/svg+xml", 200, 400, 403, 404, 429, 503),
            }
        },
        "/counter/{site}.svg": {
            "get": {
                "tags": ["embedding"],
                "summary": "Count a view; answer a classic digit counter.",
                "parameters": [
                    SITE_PARAM,
                    PATH,
                    _query(
                        "digits",
                        "Digits shown, zero-padded (default 6).",
                        {"type": "integer", "minimum": 1, "maximum": 12},
                    ),
                    _query("theme", "Look.", {"enum": ["odometer", "led", "plain", "lcd"]}),
                    _query("fg", "Digit colour: #hex or a named colour."),
                    _query("bg", "Background colour: #hex or a named colour."),
                    _query("f", "Digit colour as decimal 24-bit RGB (SimpleHitCounter)."),
                    _query("b", "Background colour as decimal 24-bit RGB (SimpleHitCounter)."),
                    COUNT_FLAG,
                ],
                "responses": _image("image/svg+xml", 200, 400, 403, 404, 429, 503),
            }
        },
        "/api/v1/sites/{site}/count": {
            "get": {
                "tags": ["embedding"],
                "summary": "Read one page's counts without counting.",
                "parameters": [SITE_PARAM, PATH],
                "responses": {
                    "200": _json("The counts.", {"$ref": "#/components/schemas/PageCount"}),
                    **_errors(400, 404, 503),
                },
            }
        },
        "/api/v1/sites/{site}/stats": _stats_op(
            "Totals over a range, and all time.",
            "Stats",
            [FROM, TO],
            f"Counted and raw hits, visitors, distinct pages and drops by reason over "
            f"the range (at most {MAX_RANGE_DAYS} days), with all-time totals.",
        ),
        "/api/v1/sites/{site}/pages": _stats_op(
            "Pages by counted hits in the range, descending.",
            "Pages",
            [
                FROM,
                TO,
                LIMIT,
                _query(
                    "offset",
                    "Rows to skip (default 0).",
                    {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
                ),
            ],
        ),
        "/api/v1/sites/{site}/timeseries": _stats_op(
            "Zero-filled points by day or local hour.",
            "Timeseries",
            [
                FROM,
                TO,
                _query("interval", "day (default) or hour.", {"enum": ["day", "hour"]}),
                _query("path", "Only this page's hits (interval=day only)."),
            ],
            f"Day points carry hits and (for the whole site) visitors; hour points carry "
            f"hits, by the hour in the site's timezone. At most {MAX_RANGE_DAYS} days by "
            f"day, {MAX_HOUR_RANGE_DAYS} by hour. Hours are kept per site, not per page: "
            f"`interval=hour` with `path` is a 400.",
        ),
        "/api/v1/sites/{site}/referrers": _stats_op(
            "Referring hosts by counted hits in the range.", "Referrers", [FROM, TO, LIMIT]
        ),
        "/api/v1/sites/{site}/export": {
            "get": {
                "tags": ["stats"],
                "summary": "Everything kept for the site, streamed.",
                "description": "JSON (the import format) or CSV rows `section,date,key,value`.",
                "security": READER_SECURITY,
                "parameters": [
                    SITE_PARAM,
                    _query("format", "json (default) or csv.", {"enum": ["json", "csv"]}),
                    TOKEN,
                ],
                "responses": {
                    "200": {
                        "description": "The export, as an attachment.",
                        "content": {
                            JSON: {"schema": {"$ref": "#/components/schemas/Export"}},
                            "text/csv": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors(400, 401, 404, 429, 503),
                },
            }
        },
        "/api/v1/sites/{site}/import": {
            "post": _admin(
                "Restore an export, or add starting counts.",
                {
                    "200": _json(
                        "What was imported.", {"$ref": "#/components/schemas/ImportResult"}
                    ),
                    **_errors(404),
                },
                description=(
                    "An export restores what it holds (its values replace the store's, "
                    "including the site's settings but not its token). "
                    '`{"pages": {path: hits}}` adds all-time counts; past the page cap new '
                    "paths count as `(other)`."
                ),
                parameters=[SITE_PARAM],
                requestBody={
                    "required": True,
                    "content": {
                        JSON: {
                            "schema": {
                                "oneOf": [
                                    {"$ref": "#/components/schemas/Export"},
                                    {"$ref": "#/components/schemas/StartingCounts"},
                                ]
                            }
                        }
                    },
                },
            )
        },
        "/api/v1/sites": {
            "get": _admin(
                "List sites.",
                {
                    "200": _json(
                        "All sites.", _object({"sites": {"type": "array", "items": settings_ref}})
                    )
                },
            ),
            "post": _admin(
                "Register a site; the answer holds its read token, shown this once.",
                {
                    "201": _json(
                        "Created.",
                        {
                            "allOf": [
                                settings_ref,
                                _object({"token": {"type": "string"}}),
                            ]
                        },
                    ),
                    **_errors(409),
                },
                requestBody={
                    "required": True,
                    "content": {JSON: {"schema": {"$ref": "#/components/schemas/SiteInput"}}},
                },
            ),
        },
        "/api/v1/sites/{site}": {
            "parameters": [SITE_PARAM],
            "get": _admin(
                "A site's settings.", {"200": _json("Settings.", settings_ref), **_errors(404)}
            ),
            "patch": _admin(
                "Change a site's settings.",
                {"200": _json("Settings.", settings_ref), **_errors(404)},
                requestBody={"required": True, "content": {JSON: {"schema": settings_in}}},
            ),
            "delete": _admin(
                "Remove a site and all of its data.",
                {"204": {"description": "Removed."}, **_errors(404)},
            ),
        },
        "/api/v1/sites/{site}/token": {
            "post": _admin(
                "Issue a new read token; the old one stops working.",
                {
                    "200": _json(
                        "The new token.",
                        _object({"name": {"type": "string"}, "token": {"type": "string"}}),
                    ),
                    **_errors(404),
                },
                parameters=[SITE_PARAM],
            )
        },
        "/sites/{site}/": {
            "get": {
                "tags": ["stats"],
                "summary": "The HTML dashboard: totals, chart, top pages, referrers, drops.",
                "security": READER_SECURITY,
                "parameters": [SITE_PARAM, FROM, TO, TOKEN],
                "responses": {
                    str(status): {
                        "description": "The dashboard." if status == 200 else ERROR_TEXT[status],
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                    for status in (200, 400, 401, 404, 429, 503)
                },
            }
        },
        "/healthz": {
            "get": {
                "tags": ["operations"],
                "summary": "The process is up.",
                "responses": {"200": _json("Up.", _object({"status": {"const": "ok"}}))},
            }
        },
        "/readyz": {
            "get": {
                "tags": ["operations"],
                "summary": "Redis answers.",
                "responses": {
                    "200": _json("Ready.", _object({"status": {"const": "ok"}})),
                    "503": _json(
                        "Redis cannot be reached.",
                        _object(
                            {"status": {"type": "string"}, "error": {"type": "string"}},
                            required=["status"],
                        ),
                    ),
                },
            }
        },
        "/metrics": _plain("Prometheus metrics.", "text/plain", 200),
        "/api/v1/openapi.json": {
            "get": {
                "tags": ["operations"],
                "summary": "This document.",
                "responses": {"200": _json("OpenAPI 3.1.", {"type": "object"})},
            }
        },
        "/static/{filename}": {
            "get": {
                "tags": ["embedding"],
                "summary": "Static files (the snippet's source).",
                "parameters": [
                    {
                        "name": "filename",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": {"description": "The file."},
                    "304": {"description": "Not modified."},
                    **_errors(404),
                },
            }
        },
    }


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    """Build the document (once per process)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hitcounter",
            "version": "1",
            "description": (
                "A self-hosted page hit counter. Dates are YYYY-MM-DD in the site's "
                "timezone; stats ranges default to the last 30 days. Errors are "
                '`{"error": {"code", "message"}}`.'
            ),
        },
        "tags": [
            {"name": "embedding", "description": "No auth; CORS for the site's domains."},
            {"name": "stats", "description": "Public sites: open. Private: read or admin token."},
            {"name": "admin", "description": "The admin token (HITCOUNTER_ADMIN_TOKEN)."},
            {"name": "operations"},
        ],
        "paths": _paths(),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "token": {"type": "apiKey", "in": "query", "name": "token"},
            },
        },
    }
