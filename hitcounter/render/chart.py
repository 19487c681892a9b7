"""A server-rendered chart of hits (bars) and visitors (a line) per day.

The plot is an SVG that stretches to its box (`preserveAspectRatio="none"`, strokes that
do not scale), and its labels are HTML beside it: on a phone the chart keeps its height
and its text stays readable instead of shrinking with the drawing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 720
HEIGHT = 220
TOP = 10  # room above the highest bar
HITS_COLOUR = "#4c78a8"
VISITORS_COLOUR = "#e45756"
GRID_COLOUR = "#e3e6ea"


@dataclass(frozen=True)
class ChartPoint:
    label: str  # a date, YYYY-MM-DD
    hits: int
    visitors: int


def nice_ceiling(value: int) -> int:
    """Round a chart's top up to 1, 2 or 5 times a power of ten."""
    if value <= 0:
        return 1
    step = 1
    while True:
        for factor in (1, 2, 5):
            if value <= step * factor:
                return step * factor
        step *= 10


def render_chart(points: Sequence[ChartPoint], *, title: str = "Hits and visitors per day") -> str:
    """Return the chart as an HTML fragment: the SVG plot and its scale and dates."""
    top = nice_ceiling(max((max(p.hits, p.visitors) for p in points), default=0))
    plot_h = HEIGHT - TOP
    slot = WIDTH / max(len(points), 1)
    bar = max(slot * 0.7, 1.0)

    def y(value: int) -> float:
        return TOP + plot_h - plot_h * value / top

    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'preserveAspectRatio="none" role="img" aria-label="{escape(title)}" class="chart">',
        f"<title>{escape(title)}</title>",
    ]
    labels = []
    for fraction in (0, 0.5, 1):
        value = round(top * fraction)
        gy = y(value)
        svg.append(
            f'<line x1="0" x2="{WIDTH}" y1="{gy:.1f}" y2="{gy:.1f}" stroke="{GRID_COLOUR}" '
            f'stroke-width="1" vector-effect="non-scaling-stroke"/>'
        )
        labels.append(
            f'<span class="chart-y" style="top:{100 * gy / HEIGHT:.2f}%">{value:,}</span>'
        )
    for n, point in enumerate(points):
        x = n * slot + (slot - bar) / 2
        by = y(point.hits)
        tip = escape(f"{point.label}: {point.hits:,} hits, {point.visitors:,} visitors")
        svg.append(
            f'<rect class="bar" x="{x:.2f}" y="{by:.2f}" width="{bar:.2f}" '
            f'height="{TOP + plot_h - by:.2f}" fill="{HITS_COLOUR}"><title>{tip}</title></rect>'
        )
    if points:
        line = " ".join(f"{(n + 0.5) * slot:.2f},{y(p.visitors):.2f}" for n, p in enumerate(points))
        svg.append(
            f'<polyline class="visitors" points="{line}" fill="none" stroke="{VISITORS_COLOUR}" '
            f'stroke-width="2" stroke-linejoin="round" vector-effect="non-scaling-stroke"/>'
        )
    svg.append("</svg>")
    dates = ""
    if points:
        dates = (
            f'<div class="chart-x"><span>{escape(points[0].label)}</span>'
            f"<span>{escape(points[-1].label)}</span></div>"
        )
    return f'<div class="chart-box">{"".join(svg)}{"".join(labels)}</div>{dates}'
