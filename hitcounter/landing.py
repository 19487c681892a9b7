"""The landing page at /: what hitcounter is, how to embed it, and a live demo counter."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, render_template, request

from hitcounter.errors import Conflict, HitcounterError
from hitcounter.services import get_services

bp = Blueprint("landing", __name__)
log = logging.getLogger(__name__)

# The site name the pasted examples use; owners replace it with their own.
EXAMPLE_SITE = "your-site"


@bp.get("/")
def landing() -> str:
    """Explain the service with snippets for this host; the page counts its own views."""
    demo = str(current_app.config.get("DEMO_SITE", "demo"))
    ensure_demo_site(demo)
    # Werkzeug empties a Host header that is not a valid host name; fall back to ours.
    host = (request.host_url if request.host else str(current_app.config["PUBLIC_URL"])).rstrip("/")
    return render_template(
        "landing.html", host=host, demo=demo, embed=embed_codes(host, EXAMPLE_SITE)
    )


def embed_codes(host: str, site: str) -> dict[str, str]:
    """The codes to paste, as plain text (the template escapes them once)."""
    # Without ?path= the images count the page the Referer names; browsers send only the
    # origin to another host unless the image asks for more.
    full_referrer = 'referrerpolicy="no-referrer-when-downgrade"'
    return {
        "script": (
            f'<script async src="{host}/counter.js" data-site="{site}"></script>\n'
            "<span data-hitcounter></span> views"
        ),
        "pixel": f'<img src="{host}/hit/{site}.gif" alt="" width="1" height="1" {full_referrer}>',
        "badge_markdown": f"![views]({host}/badge/{site}.svg?path=/)",
        "badge_html": f'<img src="{host}/badge/{site}.svg?path=/" alt="views">',
        "counter": f'<img src="{host}/counter/{site}.svg" alt="visitor counter" {full_referrer}>',
    }


def ensure_demo_site(name: str) -> None:
    """Create the public demo site on first use, so the demo counter works out of the box."""
    sites = get_services().sites
    try:
        if sites.get(name) is None:
            sites.create({"name": name, "public": True})
    except Conflict:
        pass  # another worker created it a moment ago
    except HitcounterError as exc:
        # A bad DEMO_SITE or an unreachable store: the page still explains the service,
        # only its demo counter stays empty.
        log.warning("demo site %r is not available: %s", name, exc.message)
