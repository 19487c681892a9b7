"""Tokens from requests: the admin token and the sites' read tokens."""

from __future__ import annotations

import hmac

from flask import current_app, request

from hitcounter.errors import Forbidden, Unauthorized
from hitcounter.sites import Site


def presented_token() -> str | None:
    """The token a request carries: `Authorization: Bearer T`, else `?token=T`."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.args.get("token") or None


def is_admin(token: str | None) -> bool:
    admin = current_app.config.get("ADMIN_TOKEN")
    if not admin or not token:
        return False
    return hmac.compare_digest(token.encode(), str(admin).encode())


def require_admin() -> None:
    """Allow only the admin token; the admin API is off while none is configured."""
    if not current_app.config.get("ADMIN_TOKEN"):
        raise Forbidden("the admin API is off: set HITCOUNTER_ADMIN_TOKEN to turn it on")
    if not is_admin(presented_token()):
        raise Unauthorized("a valid admin token is required")


def require_reader(site: Site) -> None:
    """Allow a public site to all; a private one to its read token or the admin token."""
    if site.public:
        return
    token = presented_token()
    if not (site.token_matches(token) or is_admin(token)):
        raise Unauthorized("this site's stats need its read token")
