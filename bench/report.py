"""Figures, their goals, and how a section's results are printed."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Figure:
    key: str                       # name in the final JSON line
    value: float | bool | None
    unit: str = ""
    goal: str = ""                 # e.g. ">= 0.5"; empty when the figure is informative only
    passed: bool | None = None     # None: no goal

    def line(self) -> str:
        shown = "n/a" if self.value is None else _fmt(self.value)
        verdict = "" if self.passed is None else ("  PASS" if self.passed else "  MISS")
        goal = f"  (goal {self.goal})" if self.goal else ""
        return f"  {self.key:<34} {shown:>12} {self.unit:<10}{goal}{verdict}"


def at_least(key: str, value: float, threshold: float, unit: str = "") -> Figure:
    return Figure(key, value, unit, f">= {threshold:g}", value >= threshold)


def at_most(key: str, value: float, threshold: float, unit: str = "") -> Figure:
    return Figure(key, value, unit, f"<= {threshold:g}", value <= threshold)


def check(key: str, ok: bool) -> Figure:
    return Figure(key, ok, "", "true", ok)


def info(key: str, value: float | None, unit: str = "") -> Figure:
    return Figure(key, value, unit)


@dataclass
class SectionResult:
    title: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unavailable: str | None = None   # why the section could not run
    extra: dict = field(default_factory=dict)   # more JSON-able detail (breakdowns)

    def print(self, out: Callable[[str], None] = print) -> None:
        out(f"\n== {self.title}")
        if self.unavailable:
            out(f"  unavailable: {self.unavailable}")
        for f in self.figures:
            out(f.line())
        for n in self.notes:
            out(f"  - {n}")


def _fmt(value: float) -> str:
    if isinstance(value, bool):
        return str(value)
    if value == 0 or not math.isfinite(value):
        return str(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.4f}"


def rounded(value: float | None) -> float | None:
    """Enough digits to compare runs, not more."""
    if value is None or isinstance(value, bool):
        return value
    return float(f"{value:.4g}")
