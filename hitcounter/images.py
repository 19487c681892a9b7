"""Visible counters: SVG badges and classic digit counters."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("images", __name__)
