"""The archive: an index of months (a MkDocs page) and one plain page per month listing
its nights, runs and gaps; "not passed" drill names link to their section on the run
page, a rerun links to the run of the night it retried. A synthetic run (``"synthetic": true`` in its results,
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
    run_anchor,
    run_href,
    tr,
)
from flows.site._shell import plain_page


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
        "| Month | Runs | Passed | Failed | Incomplete | Not verified | Gaps (nights or drills) |",
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
            f'| <a href="{m}/">{m}</a> | {int(s["runs"])} | {int(s["passed"])} '
            f"| {badge('fail', str(int(s['failed']))) if s['failed'] else 0} "
            f"| {int(s['incomplete'])} | {badge('broken', str(broken)) if broken else 0} "
            f"| {gaps_cell(int(s['gaps']))} |"
        )
    out.append("")
    if stats.empty:
        out += ["No runs yet.", ""]
    return "\n".join(out)


def _not_passed(r: Any) -> str:
    return ", ".join(a(run_anchor(r.run_id, "../../", d), h(d)) for d in r.failed.split(",") if d)


def _fewer(scope: str, than: str) -> bool:
    mine, theirs = set(scope.split(",")) - {""}, set(than.split(",")) - {""}
    return bool(mine) and mine < theirs


def archive_month(
    month: str, runs: pd.DataFrame, found: pd.DataFrame, gen: str = "generated/"
) -> str:
    """Every night of one month as a plain page: its runs, verdicts and gaps."""
    nightly = runs.sort_values(["started_at", "run_id"])
    first_of_night = nightly.groupby("night")["run_id"].first().to_dict()
    scope_of = dict(zip(runs["run_id"], runs["scope"], strict=True))
    lines = []
    for r in records(runs):
        label = a(run_href(r.run_id, "../../"), r.run_id)
        origin = first_of_night.get(r.night)
        # a later run of the same night with fewer drills retried some of them
        if origin and origin != r.run_id and _fewer(r.scope, scope_of.get(origin, "")):
            label += f" rerun of {a(run_href(origin, '../../'), origin)}"
        lines.append(
            (
                r.started_at,
                tr(
                    [
                        f'<span id="{h(r.run_id)}">{r.night:%Y-%m-%d}</span>',
                        label,
                        f"{r.started_at:%H:%M:%S}",
                        _verdict(r),
                        _not_passed(r),
                        evidence_badge(r.status, r.verified, r.problems),
                    ]
                ),
            )
        )
    for g in records(found):
        what = (
            badge("gap", "no run")
            if g.kind == "missing_night"
            else f"{badge('gap', 'gap')} no result for {h(g.drill)}"
        )
        lines.append((g.night, tr([f"{g.night:%Y-%m-%d}", what, "", "", "", ""])))
    lines.sort(key=lambda x: x[0], reverse=True)
    body = f"<p>{a('../', 'All months')} · times in UTC</p>\n" + html_table(
        ["Night (UTC)", "Run", "Started (UTC)", "Verdict", "Not passed", "Evidence"],
        [text for _, text in lines],
    )
    up = "../" * (gen.count("/") + 2)
    return plain_page(f"Runs in {month}", body, up, gen)
