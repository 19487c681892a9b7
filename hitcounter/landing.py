"""The landing page at /."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("landing", __name__)
