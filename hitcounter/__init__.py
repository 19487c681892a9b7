"""hitcounter: a self-hosted page hit counter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flask import Flask

if TYPE_CHECKING:
    from hitcounter.store import Store


def create_app(config: Mapping[str, Any] | None = None, *, store: Store | None = None) -> Flask:
    """Build the app: defaults, then HITCOUNTER_* variables, then `config`."""
    from hitcounter import admin_api, dashboard, embed, images, landing, ops, stats_api
    from hitcounter.config import DEFAULTS
    from hitcounter.errors import register_error_handlers
    from hitcounter.logs import configure_logging
    from hitcounter.services import init_services

    app = Flask(__name__)
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env("HITCOUNTER")
    if config:
        app.config.from_mapping(config)
    configure_logging(app)
    register_error_handlers(app)
    init_services(app, store)
    for blueprint in (
        embed.bp,
        images.bp,
        stats_api.bp,
        admin_api.bp,
        dashboard.bp,
        landing.bp,
        ops.bp,
    ):
        app.register_blueprint(blueprint)
    return app
