"""The site-wide summaries: the generated part of the home page and the trends page.

The home page (included by ``docs/index.md``) answers "is everything green?":
the latest run, one row per drill, completeness, evidence integrity and the
charts. The trends page adds flips, regressions and the monthly latencies.
"""

from __future__ import annotations

import pandas as pd

from flows.site._attest import checkpoint_block
from flows.site._html import (
    age,
    badge,
    code,
    esc,
    evidence_badge,
    gap_lines,
    gaps_cell,
    indent,
    records,
    run_link,
    streak,
    when,
)
from flows.site._paths import GENERATED
from flows.trends.formatting import rate
from flows.trends.history import History


def _latest_run(history: History, now: pd.Timestamp, p: str) -> list[str]:
    runs = history.runs
    placed = runs[runs["started_at"].notna()].sort_values(["started_at", "run_id"])
    if placed.empty:
        return [
            '!!! warning "No runs yet"',
            f"    No run folders under {code(str(history.root))}. Run `make drill` or "
            "`python -m flows run`, then `python -m flows publish`.",
            "",
        ]
    last = next(records(placed.tail(1)))
    scope = len(last.scope.split(",")) if last.scope else 0
    made_up = f" {badge('synthetic')}" if last.synthetic else ""
    return [
        "## Latest run",
        "",
        f"{badge(last.verdict or last.status)}{made_up} "
        f"{evidence_badge(last.status, last.verified, last.problems)}"
        f" {run_link(last.run_id, p)}, started {when(last.started_at)}, "
        f"{scope} drill(s) in scope. Published {when(now)}.",
        "",
        *_synthetic_note(runs),
    ]


def _synthetic_note(runs: pd.DataFrame) -> list[str]:
    """A warning when the history holds synthetic runs: they prove nothing about the supervisor."""
    count = int(runs["synthetic"].sum())
    if not count:
        return []
    return [
        f'!!! warning "{count} of {len(runs)} run(s) are synthetic"',
        "    Written by `python -m flows synth` for demos and tests; they say nothing"
        " about the supervisor. Each is marked SYNTHETIC on its page and in the archive.",
        "",
    ]


def _drill_rows(table: pd.DataFrame, p: str) -> list[str]:
    out = [
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
    return [*out, ""]


def _completeness(found: pd.DataFrame, now: pd.Timestamp, p: str) -> list[str]:
    recent = found[found["night"] >= now.normalize() - pd.Timedelta(days=30)]
    out = ["## Completeness", ""]
    if recent.empty:
        out += [
            '!!! success "No gaps in the last 30 nights"',
            "    Every night had a run with a result for every drill.",
            "",
        ]
    else:
        out += [f'!!! danger "{len(recent)} gap(s) in the last 30 nights"', ""]
        out += [*indent(gap_lines(recent, p)), ""]
    return [
        *out,
        f"{len(found)} gap(s) in the whole history; see the [archive]({p}archive/index.md).",
        "",
    ]


def _integrity(runs: pd.DataFrame, p: str) -> list[str]:
    broken = runs[runs["problems"].ne("") & ~runs["verified"]]
    unfinished = runs[runs["status"].ne("complete") & runs["problems"].eq("")]
    out = ["## Evidence integrity", ""]
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
            for r in records(broken.tail(20))
        ]
        out += [*indent(lines), ""]
    if not unfinished.empty:
        out += [f'!!! warning "{len(unfinished)} incomplete run(s)"', ""]
        lines = [f"- {run_link(r.run_id, p)}: {r.status}" for r in records(unfinished.tail(10))]
        out += [*indent(lines), ""]
    return out


def _charts(p: str, timeline: str, what: str) -> list[str]:
    return [
        "## Charts",
        "",
        f"![Pass/fail timeline of {what}]({p}charts/{timeline}.svg)",
        "",
        f"![Pass rate over the last 30 runs of each drill]({p}charts/pass-rate.svg)",
        "",
        f"![Kill latency p50 and p95 per month]({p}charts/kill-latency.svg)",
        "",
        f"![Restart delay p50 and p95 per month]({p}charts/restart-delay.svg)",
        "",
    ]


def home_page(history: History, table: pd.DataFrame, found: pd.DataFrame, now: pd.Timestamp) -> str:
    """The generated part of the home page (included by docs/index.md, so links start at docs/)."""
    p = f"{GENERATED}/"
    out = [
        *_latest_run(history, now, p),
        *_drill_rows(table, p),
        *_completeness(found, now, p),
        *_integrity(history.runs, p),
        *checkpoint_block(history.root),
        *_charts(p, "timeline-recent", "the last 60 runs"),
    ]
    return "\n".join(out)


def _trends_rows(table: pd.DataFrame) -> list[str]:
    out = [
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
    return out


def _monthly_latency(kill: pd.DataFrame, restart: pd.DataFrame) -> list[str]:
    out = ["## Kill latency and restart delay per month (last 24)", ""]
    both = pd.concat([kill, restart], ignore_index=True)
    if both.empty:
        return [*out, "No measurements yet.", ""]
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
    return [*out, ""]


def _regression_rows(regressions: pd.DataFrame) -> list[str]:
    out = ["## Regressions", ""]
    if regressions.empty:
        return [*out, "None: no drill has gone from passing to not passing.", ""]
    out += ["| Drill | Last pass | First non-pass | Status |", "| --- | --- | --- | --- |"]
    for r in records(regressions.iloc[::-1]):
        out.append(
            f"| [{r.drill}](drills/{r.drill}.md) | {run_link(r.last_pass_run, '')} "
            f"| {run_link(r.first_fail_run, '')} | {badge(r.status)} |"
        )
    return [*out, ""]


def trends_page(
    table: pd.DataFrame,
    regressions: pd.DataFrame,
    kill: pd.DataFrame,
    restart: pd.DataFrame,
    found: pd.DataFrame,
) -> str:
    """The trends page: every figure per drill, charts, monthly latencies, regressions, gaps."""
    out = [
        "# Trends",
        "",
        "Pass rates count finished outcomes (pass, fail, error) newest first; a *flip* is a "
        "change between passing and not passing; a *regression* is the first non-passing "
        "outcome after a pass; freshness is the time since the newest pass in a run that "
        "verified intact.",
        "",
        *_trends_rows(table),
        "",
        *_charts("", "timeline", "every run"),
        *_monthly_latency(kill, restart),
        *_regression_rows(regressions),
        "## Gaps",
        "",
        f"{len(found)} gap(s); newest first:",
        "",
        *gap_lines(found.tail(200), ""),
        "",
    ]
    return "\n".join(out)
