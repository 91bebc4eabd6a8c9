"""One page per drill: its figures, metric chart, regressions and every execution.

What the drill checks and which metric it reports come from :mod:`flows.registry`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from flows import registry
from flows.evidence.layout import drill_log_name
from flows.site._home import Section, categories_table, regression_rows
from flows.site._html import (
    SEARCH_EXCLUDE,
    a,
    ago,
    badge,
    gaps_cell,
    h,
    html_table,
    rate_cell,
    records,
    run_anchor,
    run_href,
    streak,
    tr,
)


def _intro(drill: str) -> str:
    if drill not in registry.KEY_METRICS:  # an old run may hold a drill since removed
        return f"Passes when its log ends with a PASS line. Log file `{drill_log_name(drill)}`."
    info = registry.info(drill)
    return (
        f"Passes when {info.passes_when}. "
        f"Log file `{drill_log_name(drill)}`; key metric `{info.metric}` ({info.unit})."
    )


HISTORY_ROWS = 60  # the newest executions on the page; the archive holds every run


def _figures(row: Any, now: pd.Timestamp, hours: float) -> list[str]:
    n = int(row["outcomes"])
    return [
        "| Latest | Runs | Pass 7 | Pass 30 | All time | Streak |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
        f"| {badge(row['latest_status'])} | {n} | {rate_cell(row['pass_7'], min(n, 7), 7)} "
        f"| {rate_cell(row['pass_30'], min(n, 30), 30)} | {rate_cell(row['pass_all'], n, 0)} "
        f"| {streak(row)} |",
        "",
        "| Flips | Regressions | Last verified pass | Missed nights |",
        "| ---: | ---: | --- | ---: |",
        f"| {int(row['flips'])} | {int(row['regressions'])} "
        f"| {ago(row['last_verified_pass'], now, hours)} | {gaps_cell(int(row['gaps']))} |",
    ]


def _marks(found: list[tuple[str, str]]) -> list[str]:
    if not found:
        return ["No marks: not flaky, regressed, drifting or stale.", ""]
    return [f'- <span class="mark mark-{k}">{k}</span> {h(why)}' for k, why in found] + [""]


def _history_rows(drill: str, rows: pd.DataFrame, found: pd.DataFrame) -> list[str]:
    """The newest executions, plus red rows for nights that have none of this drill."""
    rows = rows.tail(HISTORY_ROWS)
    lines = [
        (
            r.started_at,
            tr(
                [
                    f"{r.started_at:%Y-%m-%d %H:%M}",
                    a(run_anchor(r.run_id, "../../", drill), r.run_id),
                    badge(r.status),
                    "" if pd.isna(r.metric) else f"{r.metric:g}",
                    "" if r.status == "pass" else h(r.summary),
                ],
                right=(3,),
            ),
        )
        for r in records(rows)
    ]
    since = rows["night"].min() if len(rows) else None
    holes = found[
        (found["kind"].eq("missing_night") | found["drill"].eq(drill))
        & ~found["night"].isin(set(rows["night"]))
    ]
    if since is not None:
        holes = holes[holes["night"] >= since]
    for g in records(holes):
        what = (
            badge("gap", "no run")
            if g.kind == "missing_night"
            else f"{a(run_href(g.run_id, '../../'), g.run_id)} {badge('gap', 'not run')}"
        )
        lines.append((g.night, tr([f"{g.night:%Y-%m-%d}", what, "", "", ""])))
    lines.sort(key=lambda x: x[0], reverse=True)
    return [text for _, text in lines]


def drill_page(drill: str, s: Section, now: pd.Timestamp) -> str:
    """One drill's figures, marks, chart, regressions, categories and newest executions."""
    drills = s.history.drills
    rows = drills[drills["drill"].eq(drill)].sort_values(["started_at", "run_id"])
    metric = registry.KEY_METRICS.get(drill, "metric")
    where = f" on {s.host}" if s.host else ""
    regs = s.regressions[s.regressions["drill"].eq(drill)]
    cats = s.categories[s.categories["drill"].eq(drill)]
    shown = min(len(rows), HISTORY_ROWS)
    out = [
        SEARCH_EXCLUDE + f"# Drill {drill}{where}",
        "",
        _intro(drill),
        "",
        *_figures(s.table.loc[drill], now, s.hours),
        "",
        "## Marks",
        "",
        *_marks(s.marks.get(drill, [])),
        f"![{metric} per run](../charts/metric-{drill}.svg)",
        "",
        "## Regressions",
        "",
        regression_rows(regs, "../../", 10) if not regs.empty else "None.",
        "",
        "## Failure categories",
        "",
        categories_table(cats),
        "## History",
        "",
        f"The newest {shown} of {len(rows)} execution(s) (runs), newest first; every run is in "
        "the [archive](../archive/index.md). The log's last line is shown when the drill did not pass.",
        "",
        html_table(
            ["Started (UTC)", "Run", "Status", metric, "Log's last line"],
            _history_rows(drill, rows, s.found),
            right=(3,),
        ),
    ]
    return "\n".join(out)
