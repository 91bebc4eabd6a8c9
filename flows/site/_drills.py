"""One page per drill: its figures, metric chart, regressions and every execution.

What the drill checks and which metric it reports come from :mod:`flows.registry`.
"""

from __future__ import annotations

import pandas as pd

from flows import registry
from flows.evidence.layout import drill_log_name
from flows.site._html import (
    SEARCH_EXCLUDE,
    a,
    age,
    badge,
    gaps_cell,
    h,
    html_table,
    records,
    run_href,
    streak,
    tr,
)
from flows.trends.formatting import rate


def _intro(drill: str) -> str:
    if drill not in registry.KEY_METRICS:  # an old run may hold a drill since removed
        return f"Passes when its log ends with a PASS line. Log file `{drill_log_name(drill)}`."
    info = registry.info(drill)
    return (
        f"Passes when {info.passes_when}. "
        f"Log file `{drill_log_name(drill)}`; key metric `{info.metric}` ({info.unit})."
    )


def _figures(row: pd.Series) -> list[str]:
    return [
        "| Latest | Pass 7 | Pass 30 | All time | Streak | Flips | Regressions "
        "| Last verified pass | Gaps |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | --- | ---: |",
        f"| {badge(row['latest_status'])} | {rate(row['pass_7'])} | {rate(row['pass_30'])} "
        f"| {rate(row['pass_all'])} | {streak(row)} | {int(row['flips'])} "
        f"| {int(row['regressions'])} | {age(row['freshness'])} "
        f"| {gaps_cell(int(row['gaps']))} |",
    ]


def _regressions(drill: str, regressions: pd.DataFrame) -> list[str]:
    mine = regressions[regressions["drill"].eq(drill)]
    if mine.empty:
        return ["None.", ""]
    rows = [
        tr(
            [
                a(run_href(r.last_pass_run, "../../"), r.last_pass_run),
                a(run_href(r.first_fail_run, "../../"), r.first_fail_run),
                badge(r.status),
            ]
        )
        for r in records(mine.iloc[::-1])
    ]
    return [html_table(["Last pass", "First non-pass", "Status"], rows)]


def _history_rows(drill: str, rows: pd.DataFrame, found: pd.DataFrame) -> list[str]:
    """Every execution, plus red rows for nights that have none of this drill, newest first."""
    lines = [
        (
            r.started_at,
            tr(
                [
                    f"{r.night:%Y-%m-%d}",
                    a(run_href(r.run_id, "../../"), r.run_id),
                    badge(r.status),
                    "" if pd.isna(r.metric) else f"{r.metric:g}",
                    "" if r.status == "pass" else h(r.summary),
                ]
            ),
        )
        for r in records(rows)
    ]
    holes = found[
        (found["kind"].eq("missing_night") | found["drill"].eq(drill))
        & ~found["night"].isin(set(rows["night"]))
    ]
    for g in records(holes):
        what = (
            badge("gap", "no run")
            if g.kind == "missing_night"
            else f"{a(run_href(g.run_id, '../../'), g.run_id)} {badge('gap', 'not run')}"
        )
        lines.append((g.night, tr([f"{g.night:%Y-%m-%d}", what, "", "", ""])))
    lines.sort(key=lambda x: x[0], reverse=True)
    return [text for _, text in lines]


def drill_page(
    drill: str,
    row: pd.Series,
    drills: pd.DataFrame,
    found: pd.DataFrame,
    regressions: pd.DataFrame,
) -> str:
    """One drill's figures, chart, regressions and every execution (search skips it)."""
    rows = drills[drills["drill"].eq(drill)].sort_values(["started_at", "run_id"])
    metric = registry.KEY_METRICS.get(drill, "metric")
    out = [
        SEARCH_EXCLUDE + f"# Drill {drill}",
        "",
        _intro(drill),
        "",
        *_figures(row),
        "",
        f"![{metric} per run](../charts/metric-{drill}.svg)",
        "",
        "## Regressions",
        "",
        *_regressions(drill, regressions),
        "## History",
        "",
        f"{len(rows)} execution(s), newest first; the log's last line is shown when the "
        "drill did not pass.",
        "",
        html_table(
            ["Night", "Run", "Status", metric, "Log's last line"],
            _history_rows(drill, rows, found),
            right=(3,),
        ),
    ]
    return "\n".join(out)
