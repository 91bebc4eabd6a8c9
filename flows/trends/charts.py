"""Static SVG charts of the drill history, drawn with matplotlib's Agg/SVG backends.

Every chart has a transparent background and mid-grey text and axes, so the same
file reads on the light and the dark palette of the site. Text stays text
(``svg.fonttype: none``) and the files carry no date, so the same data gives the
same bytes. The inputs are the frames of :mod:`flows.trends`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display here; must precede the pyplot-adjacent imports below

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.typing import RcKeyType  # noqa: E402

from flows.trends import maths as trends  # noqa: E402

__all__ = ["latency_chart", "metric_chart", "pass_rate_chart", "timeline_chart"]

GREY = "#8a8a8a"
PASS, FAIL, ERROR, GAP = "#2e9d4b", "#d93f3f", "#e08a1e", "#9e9e9e"
# Cell codes of the timeline: 0 no row (drill not in that run), then by status.
_CODES = {"pass": 1, "fail": 2, "error": 3, "incomplete": 4}
_CMAP = ListedColormap(["#00000000", PASS, FAIL, ERROR, GAP])
_LINES = ["#3b82c4", "#2e9d4b", "#d93f3f", "#e08a1e", "#8e5cc4", "#1ea5a5", "#c45c8e"]

_STYLE: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "chaos-drills",
    "font.size": 9,
    "font.family": "sans-serif",
    "text.color": GREY,
    "axes.labelcolor": GREY,
    "axes.edgecolor": GREY,
    "xtick.color": GREY,
    "ytick.color": GREY,
    "axes.facecolor": "none",
    "figure.facecolor": "none",
    "savefig.transparent": True,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "grid.color": GREY,
    "grid.alpha": 0.25,
}


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="svg", metadata={"Date": None}, bbox_inches="tight")
    return path


def _figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(_STYLE):
        return Figure(figsize=(width, height))


def _empty(fig: Figure, message: str) -> None:
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", color=GREY)


def timeline_chart(drills: pd.DataFrame, path: Path, last: int | None = None) -> Path:
    """One row per drill, one cell per run (oldest left); green pass, red fail, orange error."""
    with matplotlib.rc_context(_STYLE):
        runs = (
            drills[["run_id", "started_at"]]
            .drop_duplicates("run_id")
            .sort_values(["started_at", "run_id"])["run_id"]
            .tolist()
        )
        if last is not None:
            runs = runs[-last:]
        names = list(trends.EXPECTED_DRILLS) + sorted(
            set(drills["drill"]) - set(trends.EXPECTED_DRILLS)
        )
        fig = _figure(8, 0.3 * len(names) + 0.9)
        if not runs:
            _empty(fig, "no runs yet")
            return _save(fig, path)
        rows = drills[drills["run_id"].isin(runs)]
        grid = np.zeros((len(names), len(runs)), dtype=np.int8)
        r = pd.Index(names).get_indexer(pd.Index(rows["drill"]))
        c = pd.Index(runs).get_indexer(pd.Index(rows["run_id"]))
        grid[r, c] = rows["status"].map(_CODES).fillna(4).to_numpy(dtype=np.int8)
        ax = fig.add_subplot()
        ax.imshow(grid, cmap=_CMAP, vmin=0, vmax=4, aspect="auto", interpolation="nearest")
        ax.set_yticks(range(len(names)), names)
        first = rows["started_at"].min().strftime("%Y-%m-%d")
        final = rows["started_at"].max().strftime("%Y-%m-%d")
        ax.set_xticks([0, len(runs) - 1], [first, final])
        ax.tick_params(length=0)
        for side in ("left", "bottom"):
            ax.spines[side].set_visible(False)
        ax.set_title(
            f"Last {len(runs)} runs: green pass, red fail, orange error, grey incomplete",
            loc="left",
            fontsize=9,
        )
        return _save(fig, path)


def pass_rate_chart(rates: pd.DataFrame, path: Path) -> Path:
    """Rolling pass rate per drill over time, from :func:`trends.pass_rate_over_time`."""
    with matplotlib.rc_context(_STYLE):
        fig = _figure(8, 3)
        if rates.empty:
            _empty(fig, "no outcomes yet")
            return _save(fig, path)
        ax = fig.add_subplot()
        for i, (drill, part) in enumerate(rates.groupby("drill", sort=True)):
            x = part["started_at"].dt.tz_localize(None)
            ax.plot(x, part["pass_rate"] * 100, lw=1.2, color=_LINES[i % len(_LINES)], label=drill)
        ax.set_ylim(-2, 102)
        ax.set_ylabel("pass rate, last 30 runs (%)")
        ax.grid(True, axis="y")
        ax.legend(loc="lower left", ncols=4, fontsize=8)
        fig.autofmt_xdate()
        return _save(fig, path)


def latency_chart(pct: pd.DataFrame, path: Path, title: str, ylabel: str = "ms") -> Path:
    """p50 (solid) and p95 (dashed) per period and drill, from :func:`trends.metric_percentiles`."""
    with matplotlib.rc_context(_STYLE):
        fig = _figure(8, 3)
        if pct.empty:
            _empty(fig, "no measurements yet")
            return _save(fig, path)
        ax = fig.add_subplot()
        for i, (drill, part) in enumerate(pct.groupby("drill", sort=True)):
            colour = _LINES[i % len(_LINES)]
            label = f"{drill} ({trends.KEY_METRICS.get(str(drill), 'metric')})"
            ax.plot(part["period"], part["p50"], color=colour, lw=1.4, label=f"{label} p50")
            ax.plot(part["period"], part["p95"], color=colour, lw=1.0, ls="--", label="p95")
        ax.set_ylabel(ylabel)
        ax.set_title(title, loc="left", fontsize=9)
        ax.grid(True, axis="y")
        ax.legend(loc="upper left", ncols=2, fontsize=8)
        fig.autofmt_xdate()
        return _save(fig, path)


def metric_chart(drills: pd.DataFrame, drill: str, path: Path) -> Path:
    """One drill's key metric: p50 and p95 per month (per week for short histories)."""
    rows = drills[drills["drill"].eq(drill)]
    span = rows["started_at"].max() - rows["started_at"].min() if len(rows) else pd.Timedelta(0)
    freq = "W" if span < pd.Timedelta(days=120) else "MS"
    pct = trends.metric_percentiles(rows, (drill,), freq=freq)
    name = trends.KEY_METRICS.get(drill, "metric")
    every = "week" if freq == "W" else "month"
    return latency_chart(pct, path, f"{name} per {every}: p50 solid, p95 dashed", ylabel=name)
