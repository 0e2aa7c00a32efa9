"""Small server-side SVG charts for the dashboard: no JavaScript, no external assets.

Pure functions: data in, SVG markup out. Every text that reaches the markup is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH = 420
HEIGHT = 190
PAD_LEFT = 40
PAD_RIGHT = 12
PAD_TOP = 14
PAD_BOTTOM = 30


@dataclass(frozen=True)
class Point:
    label: str  # x-axis label, e.g. "27 Nov"
    value: float | None  # None: no data (drawn as a gap)


def _nice_max(value: float) -> float:
    """A round axis maximum at or above ``value`` (1, 2, 5 x 10^n)."""
    if value <= 0:
        return 1.0
    magnitude = 1.0
    while magnitude * 10 <= value:
        magnitude *= 10
    while magnitude > value:
        magnitude /= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def _format(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value:.0f}%"
    if value == int(value):
        return f"{int(value)}{unit}"
    return f"{value:.1f}{unit}"


def _frame(title: str, body: list[str], y_max: float, unit: str, labels: Sequence[str]) -> SafeString:
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'class="chart" aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for i in range(5):
        value = y_max * i / 4
        y = PAD_TOP + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="chart-grid"/>'
            f'<text x="{PAD_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="chart-axis">'
            f"{escape(_format(value, unit))}</text>"
        )
    count = max(len(labels), 1)
    step = max(1, math.ceil(count / 6))  # at most ~6 labels so they never overlap
    for i, label in enumerate(labels):
        if (count - 1 - i) % step:  # counted back from the newest day, which is always labelled
            continue
        x = PAD_LEFT + plot_w * (i + 0.5) / count
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - 10}" text-anchor="middle" class="chart-axis">{escape(label)}</text>'
        )
    parts.extend(body)
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 -- every interpolated text above is escaped


def bar_chart(points: Sequence[Point], *, title: str, unit: str = "", whole: bool = False) -> SafeString:
    """Vertical bars, one per point; each bar has a tooltip with its exact value.

    ``whole``: the values are counts, so the axis never shows fractions.
    """
    values = [p.value or 0 for p in points]
    y_max = _nice_max(max(values, default=0))
    if whole:
        y_max = max(4.0, float(math.ceil(y_max / 4) * 4))
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    slot = plot_w / max(len(points), 1)
    bar_w = max(2.0, slot * 0.7)
    body = []
    for i, point in enumerate(points):
        value = point.value or 0
        h = plot_h * value / y_max
        x = PAD_LEFT + slot * i + (slot - bar_w) / 2
        y = PAD_TOP + plot_h - h
        tip = escape(f"{point.label}: {_format(value, unit)}")
        body.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" rx="2" class="chart-bar" '
            f'data-value="{value:g}"><title>{tip}</title></rect>'
        )
    return _frame(title, body, y_max, unit, [p.label for p in points])


def line_chart(points: Sequence[Point], *, title: str, unit: str = "%", y_max: float | None = None) -> SafeString:
    """A line through the points that have a value; points without one break the line."""
    present = [p.value for p in points if p.value is not None]
    top = y_max if y_max is not None else _nice_max(max(present, default=0))
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    count = max(len(points), 1)
    segments: list[list[tuple[float, float]]] = [[]]
    body = []
    for i, point in enumerate(points):
        if point.value is None:
            segments.append([])
            continue
        x = PAD_LEFT + plot_w * (i + 0.5) / count
        y = PAD_TOP + plot_h - plot_h * min(point.value, top) / top
        segments[-1].append((x, y))
        tip = escape(f"{point.label}: {_format(point.value, unit)}")
        body.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" class="chart-dot" data-value="{point.value:g}">'
            f"<title>{tip}</title></circle>"
        )
    lines = [
        '<polyline fill="none" class="chart-line" points="{}"/>'.format(" ".join(f"{x:.1f},{y:.1f}" for x, y in seg))
        for seg in segments
        if len(seg) > 1
    ]
    return _frame(title, lines + body, top, unit, [p.label for p in points])
