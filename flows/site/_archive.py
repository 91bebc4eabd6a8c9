"""The archive: an index of months and one page per month listing its nights, runs and gaps.

The month pages are searchable, which is how a run id is found: run pages opt
out of the search index.
"""

from __future__ import annotations

import pandas as pd

from flows.site._html import a, badge, evidence_badge, gaps_cell, h, html_table, run_href, tr


def archive_index(runs: pd.DataFrame, found: pd.DataFrame) -> str:
    out = [
        "# Archive",
        "",
        "Every run by month, newest first. Each month lists its nights, runs and gaps.",
        "",
        "| Month | Runs | Passed | Failed | Incomplete | Not verified | Gaps |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    placed = runs[runs["night"].notna()]
    month = placed["night"].dt.strftime("%Y-%m")
    stats = pd.DataFrame(
        {
            "runs": placed.groupby(month).size(),
            "passed": placed["verdict"].eq("pass").groupby(month).sum(),
            "failed": placed["verdict"].eq("fail").groupby(month).sum(),
            "incomplete": placed["status"].ne("complete").groupby(month).sum(),
            "broken": placed["problems"].ne("").groupby(month).sum(),
        }
    )
    gap_counts = (
        found.groupby(found["night"].dt.strftime("%Y-%m")).size() if not found.empty else None
    )
    if gap_counts is not None:
        stats = stats.reindex(stats.index.union(gap_counts.index)).fillna(0)
        stats["gaps"] = gap_counts.reindex(stats.index).fillna(0)
    else:
        stats["gaps"] = 0
    for m, s in stats.sort_index(ascending=False).iterrows():
        broken = int(s["broken"])
        out.append(
            f"| [{m}]({m}.md) | {int(s['runs'])} | {int(s['passed'])} "
            f"| {badge('fail', str(int(s['failed']))) if s['failed'] else 0} "
            f"| {int(s['incomplete'])} | {badge('broken', str(broken)) if broken else 0} "
            f"| {gaps_cell(int(s['gaps']))} |"
        )
    out.append("")
    if stats.empty:
        out += ["No runs yet.", ""]
    return "\n".join(out)


def archive_month(month: str, runs: pd.DataFrame, found: pd.DataFrame) -> str:
    """Every night of one month: its runs, verdicts and gaps; search finds runs by id here."""
    out = [f"# Runs in {month}", "", "[All months](index.md)", ""]
    lines = [
        (
            r.started_at,
            tr(
                [
                    f"{r.night:%Y-%m-%d}",
                    a(run_href(r.run_id, "../../"), r.run_id),
                    f"{r.started_at:%H:%M:%S}",
                    badge(r.verdict or r.status),
                    h(r.failed.replace(",", ", ")),
                    evidence_badge(r.status, r.verified, r.problems),
                ]
            ),
        )
        for r in runs.itertuples(index=False)
    ]
    for g in found.itertuples(index=False):
        what = (
            badge("gap", "no run")
            if g.kind == "missing_night"
            else f"{badge('gap', 'gap')} no result for {h(g.drill)}"
        )
        lines.append((g.night, tr([f"{g.night:%Y-%m-%d}", what, "", "", "", ""])))
    lines.sort(key=lambda x: x[0], reverse=True)
    out.append(
        html_table(
            ["Night", "Run", "Started", "Verdict", "Not passed", "Evidence"],
            [text for _, text in lines],
        )
    )
    return "\n".join(out)
