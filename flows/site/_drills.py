"""One page per drill: its figures, metric chart, regressions and every execution."""

from __future__ import annotations

import pandas as pd

from flows.site._html import (
    SEARCH_EXCLUDE,
    a,
    age,
    badge,
    gaps_cell,
    h,
    html_table,
    rate,
    run_href,
    streak,
    tr,
)
from flows.trends import maths as trends

_DESCRIPTIONS = {
    "sigterm": "supervisor exits after SIGTERM and no workload process survives",
    "api_kill": "`POST /process/kill` answers 200 with a valid body, the tree is gone, "
    "the supervisor stays healthy",
    "sigkill": "after SIGKILL no workload process survives 2 s; a restart on the same DB "
    "comes up healthy and reconciles",
    "crash_restart": "a worker killed from outside is restarted within its backoff, "
    "with a new pid and an event",
    "legacy_db": "the supervisor starts on a v0 DB, logs no DB error, keeps every row",
    "bad_input": "every malformed or unauthorised request gets its documented 4xx; "
    "the worker is untouched",
    "kill_under_load": "concurrent kills under concurrent status polling all answer 200; "
    "the tree is gone",
}


def drill_page(
    drill: str,
    row: pd.Series,
    drills: pd.DataFrame,
    found: pd.DataFrame,
    regressions: pd.DataFrame,
) -> str:
    """One drill's figures, chart, regressions and every execution (search skips it)."""
    rows = drills[drills["drill"].eq(drill)].sort_values(["started_at", "run_id"])
    metric = trends.KEY_METRICS.get(drill, "metric")
    out = [
        SEARCH_EXCLUDE + f"# Drill {drill}",
        "",
        f"Passes when {_DESCRIPTIONS.get(drill, 'its log ends with a PASS line')}. "
        f"Log file `drill_{drill}.log`; key metric `{metric}`.",
        "",
        "| Latest | Pass 7 | Pass 30 | All time | Streak | Flips | Regressions "
        "| Last verified pass | Gaps |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | --- | ---: |",
        f"| {badge(row['latest_status'])} | {rate(row['pass_7'])} | {rate(row['pass_30'])} "
        f"| {rate(row['pass_all'])} | {streak(row)} | {int(row['flips'])} "
        f"| {int(row['regressions'])} | {age(row['freshness'])} "
        f"| {gaps_cell(int(row['gaps']))} |",
        "",
        f"![{metric} per run](../charts/metric-{drill}.svg)",
        "",
        "## Regressions",
        "",
    ]
    mine = regressions[regressions["drill"].eq(drill)]
    if mine.empty:
        out += ["None.", ""]
    else:
        out.append(
            html_table(
                ["Last pass", "First non-pass", "Status"],
                [
                    tr(
                        [
                            a(run_href(r.last_pass_run, "../../"), r.last_pass_run),
                            a(run_href(r.first_fail_run, "../../"), r.first_fail_run),
                            badge(r.status),
                        ]
                    )
                    for r in mine.iloc[::-1].itertuples(index=False)
                ],
            )
        )
    # Every execution, plus red rows for nights that have none of this drill.
    has = set(rows["night"])
    holes = found[
        (found["kind"].eq("missing_night") | found["drill"].eq(drill)) & ~found["night"].isin(has)
    ]
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
        for r in rows.itertuples(index=False)
    ]
    lines += [
        (
            g.night,
            tr(
                [
                    f"{g.night:%Y-%m-%d}",
                    badge("gap", "no run")
                    if g.kind == "missing_night"
                    else f"{a(run_href(g.run_id, '../../'), g.run_id)} {badge('gap', 'not run')}",
                    "",
                    "",
                    "",
                ]
            ),
        )
        for g in holes.itertuples(index=False)
    ]
    lines.sort(key=lambda x: x[0], reverse=True)
    out += [
        "## History",
        "",
        f"{len(rows)} execution(s), newest first; the log's last line is shown when the "
        "drill did not pass.",
        "",
        html_table(
            ["Night", "Run", "Status", metric, "Log's last line"],
            [text for _, text in lines],
            right=(3,),
        ),
    ]
    return "\n".join(out)
