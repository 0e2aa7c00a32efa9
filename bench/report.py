"""Figures, each printed beside the baseline it is compared with, and a Markdown table."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    bench: str  # "1".."5"
    name: str
    value: float
    unit: str
    baseline_name: str = ""
    baseline: float | None = None
    comparison: str = ""  # e.g. "ratio 0.81" or "1.07x"
    target: str = ""
    met: bool | None = None  # None: no target for this figure

    @property
    def status(self) -> str:
        if self.met is None:
            return ""
        return "MET" if self.met else "MISSED"


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if unit in {"ms", "s", "us"}:
        text = f"{value:.3g}" if value < 100 else f"{value:,.0f}"
    elif float(value).is_integer():
        text = f"{int(value):,}"
    else:
        text = f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return f"{text} {unit}".strip()


class Report:
    def __init__(self) -> None:
        self.figures: list[Figure] = []
        self.notes: list[str] = []

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        line = (
            f"[{figure.bench}] {figure.name}: {fmt(figure.value, figure.unit)}"
            + (f" | {figure.baseline_name}: {fmt(figure.baseline, figure.unit)}" if figure.baseline_name else "")
            + (f" | {figure.comparison}" if figure.comparison else "")
            + (f" | target {figure.target}: {figure.status}" if figure.target else "")
        )
        print(line, flush=True)

    def note(self, bench: str, text: str) -> None:
        self.notes.append(f"[{bench}] {text}")
        print(f"[{bench}] note: {text}", flush=True)

    def markdown(self) -> str:
        rows = [
            "| # | figure | value | baseline | comparison | target | status |",
            "|---|---|---|---|---|---|---|",
        ]
        for f in self.figures:
            baseline = f"{f.baseline_name}: {fmt(f.baseline, f.unit)}" if f.baseline_name else ""
            rows.append(
                f"| {f.bench} | {f.name} | {fmt(f.value, f.unit)} | {baseline} | {f.comparison} "
                f"| {f.target} | {f.status} |"
            )
        if self.notes:
            rows += ["", *(f"- {note}" for note in self.notes)]
        return "\n".join(rows) + "\n"

    def summary(self) -> None:
        print("\n" + self.markdown(), file=sys.stdout, flush=True)
