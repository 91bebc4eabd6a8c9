"""The archive: an index of months and one page per month listing its nights, runs and gaps.

The month pages are searchable, which is how a run id is found: run pages opt
out of the search index. A synthetic run (``"synthetic": true`` in its results,
the ``synthetic`` column of the runs frame) carries a SYNTHETIC badge beside its
verdict.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from flows.site._html import (
    a,
    badge,
    evidence_badge,
    gaps_cell,
    h,
    html_table,
    records,
    run_href,
    tr,
)


def _verdict(run: Any) -> str:
    """The verdict badge, and SYNTHETIC for a made-up run."""
    text = badge(run.verdict or run.status)
    # A runs frame without the column (built by hand, or by an older loader) has none.
    return f"{text} {badge('synthetic')}" if bool(getattr(run, "synthetic", False)) else text


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
                    _verdict(r),
                    h(r.failed.replace(",", ", ")),
                    evidence_badge(r.status, r.verified, r.problems),
                ]
            ),
        )
        for r in records(runs)
    ]
    for g in records(found):
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
