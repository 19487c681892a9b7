"""SVG and chart rendering, kept apart from the views."""
