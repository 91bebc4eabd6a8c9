"""The site-wide summaries: the generated part of the home page and the trends page."""

from __future__ import annotations

import pandas as pd

from flows.site._html import (
    age,
    badge,
    code,
    esc,
    evidence_badge,
    gap_lines,
    gaps_cell,
    indent,
    rate,
    run_link,
    streak,
    when,
)
from flows.site._paths import GENERATED
from flows.trends.history import History


def home_page(history: History, table: pd.DataFrame, found: pd.DataFrame, now: pd.Timestamp) -> str:
    """The generated part of the home page (included by docs/index.md, so links start at docs/)."""
    p = f"{GENERATED}/"
    runs = history.runs
    out: list[str] = []
    placed = runs[runs["started_at"].notna()].sort_values(["started_at", "run_id"])
    if placed.empty:
        out += [
            '!!! warning "No runs yet"',
            f"    No run folders under {code(str(history.root))}. Run `make drill` or "
            "`python -m flows run`, then `python -m flows publish`.",
            "",
        ]
    else:
        last = placed.iloc[-1]
        verdict = last["verdict"] or last["status"]
        scope = len(last["scope"].split(",")) if last["scope"] else 0
        out += [
            "## Latest run",
            "",
            f"{badge(verdict)} {evidence_badge(last['status'], last['verified'], last['problems'])}"
            f" {run_link(last['run_id'], p)}, started {when(last['started_at'])}, "
            f"{scope} drill(s) in scope. Published {when(now)}.",
            "",
        ]
    out += [
        "## Drills",
        "",
        "| Drill | Latest | Last verified pass | Pass 7 | Pass 30 | All time | Streak | Gaps |",
        "| --- | --- | --- | ---: | ---: | ---: | --- | ---: |",
    ]
    for drill, row in table.iterrows():
        latest = badge(row["latest_status"])
        if isinstance(row["latest_run"], str):
            latest += f" {run_link(row['latest_run'], p)}"
        out.append(
            f"| [{drill}]({p}drills/{drill}.md) | {latest} | {age(row['freshness'])} "
            f"| {rate(row['pass_7'])} | {rate(row['pass_30'])} | {rate(row['pass_all'])} "
            f"| {streak(row)} | {gaps_cell(int(row['gaps']))} |"
        )
    out.append("")
    recent = found[found["night"] >= now.normalize() - pd.Timedelta(days=30)]
    out += ["## Completeness", ""]
    if recent.empty:
        out += [
            '!!! success "No gaps in the last 30 nights"',
            "    Every night had a run with a result for every drill.",
            "",
        ]
    else:
        out += [f'!!! danger "{len(recent)} gap(s) in the last 30 nights"', ""]
        out += indent(gap_lines(recent, p)) + [""]
    out += [
        f"{len(found)} gap(s) in the whole history; see the [archive]({p}archive/index.md).",
        "",
    ]
    broken = runs[runs["problems"].ne("") & ~runs["verified"]]
    unfinished = runs[runs["status"].ne("complete") & runs["problems"].eq("")]
    out += ["## Evidence integrity", ""]
    if broken.empty:
        out += [
            '!!! success "Every sealed run verifies intact"',
            "    The manifests and the hash chain match the files on disk.",
            "",
        ]
    else:
        out += [f'!!! danger "{len(broken)} run(s) fail verification"', ""]
        lines = [
            f"- {run_link(r.run_id, p)}: {esc(r.problems.splitlines()[0])}"
            for r in broken.tail(20).itertuples(index=False)
        ]
        out += indent(lines) + [""]
    if not unfinished.empty:
        out += [f'!!! warning "{len(unfinished)} incomplete run(s)"', ""]
        lines = [
            f"- {run_link(r.run_id, p)}: {r.status}"
            for r in unfinished.tail(10).itertuples(index=False)
        ]
        out += indent(lines) + [""]
    out += [
        "## Charts",
        "",
        f"![Pass/fail timeline of the last 60 runs]({p}charts/timeline-recent.svg)",
        "",
        f"![Pass rate over the last 30 runs of each drill]({p}charts/pass-rate.svg)",
        "",
        f"![Kill latency p50 and p95 per month]({p}charts/kill-latency.svg)",
        "",
        f"![Restart delay p50 and p95 per month]({p}charts/restart-delay.svg)",
        "",
    ]
    return "\n".join(out)


def trends_page(
    table: pd.DataFrame,
    regressions: pd.DataFrame,
    kill: pd.DataFrame,
    restart: pd.DataFrame,
    found: pd.DataFrame,
) -> str:
    out = [
        "# Trends",
        "",
        "Pass rates count finished outcomes (pass, fail, error) newest first; a *flip* is a "
        "change between passing and not passing; a *regression* is the first non-passing "
        "outcome after a pass; freshness is the time since the newest pass in a run that "
        "verified intact.",
        "",
        "| Drill | Latest | Outcomes | Pass 7 | Pass 30 | All time | Streak | Flips | "
        "Flip rate | Regressions | Last verified pass | Gaps |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- | ---: |",
    ]
    for drill, row in table.iterrows():
        out.append(
            f"| [{drill}](drills/{drill}.md) | {badge(row['latest_status'])} "
            f"| {int(row['outcomes'])} | {rate(row['pass_7'])} | {rate(row['pass_30'])} "
            f"| {rate(row['pass_all'])} | {streak(row)} | {int(row['flips'])} "
            f"| {rate(row['flip_rate'])} | {int(row['regressions'])} "
            f"| {age(row['freshness'])} | {gaps_cell(int(row['gaps']))} |"
        )
    out += [
        "",
        "## Charts",
        "",
        "![Pass/fail timeline of every run](charts/timeline.svg)",
        "",
        "![Pass rate over the last 30 runs of each drill](charts/pass-rate.svg)",
        "",
        "![Kill latency p50 and p95 per month](charts/kill-latency.svg)",
        "",
        "![Restart delay p50 and p95 per month](charts/restart-delay.svg)",
        "",
        "## Kill latency and restart delay per month (last 24)",
        "",
    ]
    both = pd.concat([kill, restart], ignore_index=True)
    if both.empty:
        out += ["No measurements yet.", ""]
    else:
        wide = both.pivot_table(index="period", columns="drill", values=["p50", "p95"])
        wide = wide.sort_index(ascending=False).head(24)
        names = sorted(both["drill"].unique())
        out.append("| Month | " + " | ".join(f"{d} p50 | {d} p95" for d in names) + " |")
        out.append("| --- |" + " ---: | ---: |" * len(names))
        for period, row in wide.iterrows():
            cells = []
            for d in names:
                for q in ("p50", "p95"):
                    v = row.get((q, d))
                    cells.append("—" if v is None or pd.isna(v) else f"{v:.1f} ms")
            out.append(f"| {period:%Y-%m} | " + " | ".join(cells) + " |")
        out.append("")
    out += ["## Regressions", ""]
    if regressions.empty:
        out += ["None: no drill has gone from passing to not passing.", ""]
    else:
        out += ["| Drill | Last pass | First non-pass | Status |", "| --- | --- | --- | --- |"]
        for r in regressions.iloc[::-1].itertuples(index=False):
            out.append(
                f"| [{r.drill}](drills/{r.drill}.md) | {run_link(r.last_pass_run, '')} "
                f"| {run_link(r.first_fail_run, '')} | {badge(r.status)} |"
            )
        out.append("")
    out += ["## Gaps", "", f"{len(found)} gap(s); newest first:", ""]
    out += gap_lines(found.tail(200), "") + [""]
    return "\n".join(out)
