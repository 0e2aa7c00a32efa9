from __future__ import annotations

import re

from virtual_numbers.charts import Point, _nice_max, bar_chart, line_chart


def test_bars_scale_to_a_round_maximum_and_escape_labels():
    svg = bar_chart([Point("<b>", 3), Point("b", 7)], title="Calls & more")
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([\d.]+)"', svg)]
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "Calls &amp; more" in svg
    assert 'data-value="7"' in svg
    assert heights[0] < heights[1]
    assert ">10<" in svg  # axis top rounded up from 7


def test_line_breaks_on_missing_values():
    svg = line_chart(
        [Point("a", 50), Point("b", 75), Point("c", None), Point("d", 100), Point("e", 20)],
        title="Answer rate",
        y_max=100,
    )
    assert svg.count("<polyline") == 2
    assert svg.count('class="chart-dot"') == 4
    assert ">100%<" in svg


def test_empty_data_still_draws():
    assert "<svg" in bar_chart([], title="Nothing")
    assert "<polyline" not in line_chart([Point("a", None)], title="Nothing")


def test_nice_max():
    assert [_nice_max(v) for v in (0, 0.3, 1, 7, 12, 99, 101)] == [1, 0.5, 1, 10, 20, 100, 200]


def test_counts_never_get_fractional_ticks():
    svg = bar_chart([Point("a", 1)], title="Calls", whole=True)
    assert ">0.5<" not in svg and ">4<" in svg and ">1<" in svg


def test_newest_label_always_shown_without_overlap():
    svg = bar_chart([Point(f"d{i}", i) for i in range(14)], title="Calls")
    labels = [t for t in svg.split('class="chart-axis">')[1:] if t.startswith("d")]
    assert labels[-1].startswith("d13<") and len(labels) <= 7
