"""hitcounter: a self-hosted page hit counter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flask import Flask

if TYPE_CHECKING:
    from hitcounter.store import Store


def create_app(config: Mapping[str, Any] | None = None, *, store: Store | None = None) -> Flask:
    """Build the app: defaults, then HITCOUNTER_* variables, then `config`."""
    from hitcounter import admin_api, dashboard, embed, images, landing, metrics, ops, stats_api
    from hitcounter.config import DEFAULTS
    from hitcounter.errors import register_error_handlers
    from hitcounter.fastpath import HitEndpoints
    from hitcounter.logs import configure_logging
    from hitcounter.services import init_services

    app = Flask(__name__)
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env("HITCOUNTER")
    if config:
        app.config.from_mapping(config)
    configure_logging(app)
    register_error_handlers(app)
    services = init_services(app, store)
    metrics.init_app(app)
    for blueprint in (
        embed.bp,
        images.bp,
        stats_api.bp,
        admin_api.bp,
        dashboard.bp,
        landing.bp,
        ops.bp,
        metrics.bp,
    ):
        app.register_blueprint(blueprint)
    # The pixel and the beacon run on every page view: answer them before Flask.
    app.wsgi_app = HitEndpoints(app.wsgi_app, services.recorder, app.config)  # type: ignore[method-assign]
    return app
