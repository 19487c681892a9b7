"""The HTML dashboard of one site."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("dashboard", __name__)
