"""Stats API: totals, pages, time series, referrers, export and import."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("stats_api", __name__)
