"""Static SVG line charts of the drill history, written by hand (no plotting library).

Every chart has a transparent background and mid-grey text and axes, so the same
file reads on the light and the dark palette of the site; the x axis is time;
the legend sits in its own row under the plot, so it never covers a line; an
aggregate point (a month's p50) carries its run count as a label, and a rolling
rate is drawn only from ``MIN_WINDOW`` outcomes on. Same data, same bytes. A
chart costs microseconds: publish draws them all on every run.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from flows.trends import maths as trends

__all__ = ["MIN_WINDOW", "latency_chart", "metric_chart", "pass_rate_chart"]

GREY = "#8a8a8a"
_LINES = ["#3b82c4", "#2e9d4b", "#d93f3f", "#e08a1e", "#8e5cc4", "#1ea5a5", "#c45c8e"]
W, LEFT, RIGHT, TOP, PLOT_H = 800, 56, 16, 26, 190
MIN_WINDOW = 10  # a rolling pass rate from fewer outcomes is not plotted


@dataclass(frozen=True)
class Series:
    label: str
    x: Sequence[pd.Timestamp]
    y: Sequence[float]
    counts: Sequence[int] | None = None  # runs behind each point, shown beside it
    dashed: bool = False
    colour: str = GREY


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _svg(title: str, ylabel: str, series: list[Series], ylim: tuple[float, float] | None) -> str:
    drawn = [s for s in series if len(s.x)]
    H = TOP + PLOT_H + 40 + 14 * ((len(drawn) + 1) // 2)  # the legend's rows below the plot
    head = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" '
        f'height="{H}" font-family="sans-serif" font-size="11" fill="{GREY}">\n'
        f'<text x="{LEFT}" y="14" fill="{GREY}">{_esc(title)}</text>\n'
    )
    if not drawn:
        return (
            head
            + f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no data yet</text>\n</svg>\n'
        )
    xs = [pd.Timestamp(x) for s in drawn for x in s.x]
    ys = [float(y) for s in drawn for y in s.y]
    x0, x1 = min(xs), max(xs)
    span = max((x1 - x0).total_seconds(), 86400.0)
    lo, hi = ylim if ylim else (min(0.0, min(ys)), max(ys) * 1.1 or 1.0)
    plot_w = W - LEFT - RIGHT

    def px(x: pd.Timestamp) -> float:
        return LEFT + plot_w * (pd.Timestamp(x) - x0).total_seconds() / span

    def pxs(x: Sequence[pd.Timestamp]) -> list[float]:
        """:func:`px` of every point at once (a line can hold years of nights): the same
        floats, the subtraction done by pandas in one go."""
        seconds = (pd.DatetimeIndex(list(x)) - x0).total_seconds().tolist()
        return [LEFT + plot_w * s / span for s in seconds]

    def py(y: float) -> float:
        return TOP + PLOT_H * (1 - (float(y) - lo) / ((hi - lo) or 1.0))

    out = [head]
    for i in range(5):  # y grid and labels
        v = lo + (hi - lo) * i / 4
        out.append(
            f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{py(v):.1f}" y2="{py(v):.1f}" '
            f'stroke="{GREY}" stroke-opacity="0.25"/>'
            f'<text x="{LEFT - 4}" y="{py(v) + 4:.1f}" text-anchor="end">{v:.4g}</text>\n'
        )
    out.append(
        f'<text transform="translate(12,{TOP + PLOT_H / 2}) rotate(-90)" '
        f'text-anchor="middle">{_esc(ylabel)}</text>\n'
    )
    for i in range(6):  # x axis: dates; the outer two kept inside the chart's width
        t = x0 + (x1 - x0) * i / 5
        anchor = "start" if i == 0 else "end" if i == 5 else "middle"
        out.append(
            f'<text x="{px(t):.1f}" y="{TOP + PLOT_H + 16}" text-anchor="{anchor}">'
            f"{t:%Y-%m-%d}</text>\n"
        )
    for s in drawn:
        at = pxs(s.x)
        points = " ".join(f"{x:.1f},{py(y):.1f}" for x, y in zip(at, s.y, strict=True))
        dash = ' stroke-dasharray="5,3"' if s.dashed else ""
        out.append(
            f'<polyline points="{points}" fill="none" stroke="{s.colour}" stroke-width="1.5"{dash}/>\n'
        )
        if s.counts is not None:
            for x, cx, y, n in zip(s.x, at, s.y, s.counts, strict=True):
                out.append(
                    f'<circle cx="{cx:.1f}" cy="{py(y):.1f}" r="2.5" fill="{s.colour}">'
                    f"<title>{_esc(s.label)} {x:%Y-%m-%d}: {y:.4g} from {n} run(s)</title></circle>"
                )
                if len(s.x) <= 30:
                    out.append(
                        f'<text x="{cx:.1f}" y="{py(y) - 5:.1f}" text-anchor="middle" '
                        f'font-size="8">{n}</text>'
                    )
            out.append("\n")
    legend_y = TOP + PLOT_H + 36
    for i, s in enumerate(drawn):  # the legend: its own rows under the plot
        col, row = i % 2, i // 2
        lx, ly = LEFT + col * 370, legend_y + row * 14
        dash = ' stroke-dasharray="5,3"' if s.dashed else ""
        out.append(
            f'<line x1="{lx}" x2="{lx + 18}" y1="{ly - 4}" y2="{ly - 4}" stroke="{s.colour}" '
            f'stroke-width="2"{dash}/><text x="{lx + 22}" y="{ly}">{_esc(s.label)}</text>\n'
        )
    out.append("</svg>\n")
    return "".join(out)


def _save(text: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def pass_rate_chart(rates: pd.DataFrame, path: Path) -> Path:
    """Rolling pass rate per drill over time, from :func:`trends.pass_rate_over_time`;
    points from fewer than ``MIN_WINDOW`` outcomes are left out."""
    series = []
    ok = rates[rates["outcomes"].ge(MIN_WINDOW)] if "outcomes" in rates else rates
    for i, (drill, part) in enumerate(ok.groupby("drill", sort=True)):
        series.append(
            Series(
                str(drill),
                list(part["started_at"]),
                list(part["pass_rate"] * 100),
                colour=_LINES[i % len(_LINES)],
            )
        )
    title = f"Pass rate over the last 30 outcomes (from {MIN_WINDOW} outcomes on), %"
    return _save(_svg(title, "pass rate (%)", series, (0.0, 100.0)), path)


def latency_chart(pct: pd.DataFrame, path: Path, title: str, ylabel: str = "ms") -> Path:
    """p50 (solid, labelled with its run count) and p95 (dashed) per period and drill."""
    series = []
    for i, (drill, part) in enumerate(pct.groupby("drill", sort=True)):
        colour = _LINES[i % len(_LINES)]
        label = f"{drill} ({trends.KEY_METRICS.get(str(drill), 'metric')})"
        x = list(part["period"])
        series.append(Series(f"{label} p50", x, list(part["p50"]), list(part["n"]), colour=colour))
        series.append(Series(f"{label} p95", x, list(part["p95"]), dashed=True, colour=colour))
    return _save(_svg(title, ylabel, series, None), path)


def metric_chart(drills: pd.DataFrame, drill: str, path: Path) -> Path:
    """One drill's key metric: p50 and p95 per month (per week for short histories)."""
    rows = drills[drills["drill"].eq(drill)]
    span = rows["started_at"].max() - rows["started_at"].min() if len(rows) else pd.Timedelta(0)
    freq = "W" if span < pd.Timedelta(days=120) else "MS"
    pct = trends.metric_percentiles(rows, (drill,), freq=freq)
    name = trends.KEY_METRICS.get(drill, "metric")
    every = "week" if freq == "W" else "month"
    return latency_chart(
        pct, path, f"{name} per {every}: p50 solid (runs beside it), p95 dashed", ylabel=name
    )
