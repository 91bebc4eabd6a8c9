"""The site-wide summaries: the generated part of the home page and each trends page.

The home page (included by ``index.md``) answers "is everything green?" and
says so in one word: ``<meta name="evidence-status">`` and the banner carry
``pass``, ``fail``, ``stale`` or ``incomplete`` (:func:`site_status`), and the
page's script turns a banner stale by itself when nobody republished. Below it,
one row per drill (one column per host when there are several), each status
cell linking to the drill's section on its run page, with the drill's marks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from flows.site._attest import checkpoint_block
from flows.site._html import (
    a,
    ago,
    badge,
    code,
    esc,
    evidence_badge,
    gap_lines,
    h,
    html_table,
    indent,
    mark_badges,
    rate_cell,
    records,
    run_anchor,
    run_href,
    tr,
    when,
)
from flows.site._timeline import timeline_svg
from flows.trends.formatting import WINDOW_HOURS, last_night
from flows.trends.history import History
from flows.trends.maths import OUTCOMES

STATES = ("stale", "fail", "incomplete", "pass")  # most urgent first
TIMELINE_NIGHTS = 60  # on the home page
TRENDS_NIGHTS = 366  # on a trends page; the archive has every night
REGRESSIONS_SHOWN = 30  # newest first; the count says how many there are in all


@dataclass(frozen=True)
class Section:
    """One host's part of the site (the only one, unnamed, for a plain root)."""

    host: str
    history: History
    table: pd.DataFrame
    found: pd.DataFrame
    marks: dict[str, list[tuple[str, str]]]
    regressions: pd.DataFrame
    categories: pd.DataFrame
    gen: str  # "generated/" or "generated/hosts/<host>/"
    hours: float  # the schedule's window every page of the section uses (publish --stale-hours)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.host or "this host"


def _newest_outcomes(s: Section) -> pd.Series:
    done = s.history.drills[s.history.drills["status"].isin(OUTCOMES)]
    return done.groupby("drill")["started_at"].max().reindex(s.table.index)


def section_status(s: Section, now: pd.Timestamp) -> tuple[str, list[str]]:
    """The state of one host and the reasons, most urgent state first. Evidence that does
    not verify as a whole (the log, its checkpoint) is ``fail``: nothing on it can pass."""
    reasons: dict[str, list[str]] = {k: [] for k in STATES}
    newest = _newest_outcomes(s)
    where = f" on {s.host}" if s.host else ""
    for drill, at in newest.items():
        if pd.isna(at):
            reasons["stale"].append(f"{drill} has no outcome{where}")
        elif now - at > pd.Timedelta(hours=s.hours):
            reasons["stale"].append(f"{drill}'s newest outcome{where} is from {when(at)}")
    problems = s.history.problems
    if problems:
        reasons["fail"].append(
            f"the evidence log{where} does not verify ({len(problems)} problem(s)): {problems[0]}"
        )
    bad = s.table[s.table["latest_status"].isin(("fail", "error"))]
    for drill, row in bad.iterrows():
        reasons["fail"].append(f"{drill} {row['latest_status']}s{where} ({row['latest_run']})")
    runs = s.history.runs[s.history.runs["started_at"].notna()]
    if not runs.empty:
        last = runs.sort_values(["started_at", "run_id"]).iloc[-1]
        if last["status"] != "complete":
            reasons["incomplete"].append(f"the newest run{where} {last['run_id']} is incomplete")
        nightly, missing = lacking(s)
        if missing:
            reasons["incomplete"].append(
                f"the newest night's run{where} {nightly} lacks {', '.join(sorted(missing))}"
            )
    else:
        reasons["stale"].append(f"no run{where} yet")
    state = next((k for k in STATES if reasons[k]), "pass")
    return state, [r for k in STATES for r in reasons[k]]


def lacking(s: Section) -> tuple[str, set[str]]:
    """The newest night's first run (a later run that night is a rerun) and the drills
    it has no entry for."""
    runs = s.history.runs[s.history.runs["started_at"].notna()]
    if runs.empty:
        return "", set()
    ordered = runs.sort_values(["started_at", "run_id"])
    first = ordered[ordered["night"].eq(ordered["night"].iloc[-1])].iloc[0]
    scope = set(str(first["scope"]).split(","))
    return str(first["run_id"]), {str(d) for d in s.table.index if d not in scope}


def site_status(
    sections: list[Section], now: pd.Timestamp
) -> tuple[str, list[str], pd.Timestamp | None]:
    """The site's one word, every reason, and the oldest of the drills' newest outcomes."""
    states, reasons = [], []
    oldest: pd.Timestamp | None = None
    for s in sections:
        state, why = section_status(s, now)
        states.append(state)
        reasons += why
        newest = _newest_outcomes(s)
        if newest.isna().any():
            oldest = None if oldest is None and not states[:-1] else oldest
            continue
        low = newest.min()
        oldest = low if oldest is None else min(oldest, low)
    state = next((k for k in STATES if k in states), "pass")
    return state, reasons, oldest


def _banner(sections: list[Section], now: pd.Timestamp) -> list[str]:
    state, reasons, oldest = site_status(sections, now)
    hours = sections[0].hours if sections else WINDOW_HOURS
    why = "; ".join(reasons) if reasons else "every drill passed its latest run within the window"
    stamp = "" if oldest is None else oldest.isoformat()
    return [
        f'<div id="evidence-status" class="evidence-status status-{state}" data-state="{state}" '
        f'data-window-hours="{hours:g}" data-oldest-newest="{stamp}" '
        f'data-published="{now.isoformat()}"><strong class="status-word">{state.upper()}</strong> '
        f'<span class="status-why">{h(why)}.</span> <span class="status-when">Published '
        f"{when(now)}; stale after {hours:g} h without an outcome.</span></div>",
        "",
    ]


def _latest_runs(sections: list[Section], p: str) -> list[str]:
    out = ["## Latest run", ""]
    for s in sections:
        runs = s.history.runs
        placed = runs[runs["started_at"].notna()].sort_values(["started_at", "run_id"])
        if placed.empty:
            out += [
                '!!! warning "No runs yet"',
                f"    No run folders under {code(str(s.history.root))}. Run `make drill` or "
                "`python -m flows run`, then `python -m flows publish`.",
                "",
            ]
            continue
        last = next(records(placed.tail(1)))
        scope = len(last.scope.split(",")) if last.scope else 0
        made_up = f" {badge('synthetic')}" if last.synthetic else ""
        host = f"**{esc(s.host)}**: " if s.host else ""
        out += [
            f"{host}{badge(last.verdict or last.status)}{made_up} "
            f"{evidence_badge(last.status, last.verified, last.problems)}"
            f" {a(run_href(last.run_id, p + s.gen.removeprefix('generated/')), last.run_id)}, "
            f"started {when(last.started_at)}, {scope} drill(s) in scope.",
            "",
        ]
    for s in sections:
        out += _synthetic_note(s.history.runs)
    return out


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


def status_cell(s: Section, drill: str, up: str) -> str:
    """The drill's latest status, linking to its section on that run's page, and its date."""
    row = s.table.loc[drill]
    if not isinstance(row["latest_run"], str):
        return badge("missing")
    nightly, missing = lacking(s)
    if drill in missing:  # the newest night's run has no result for it: not a pass
        gone = a(run_href(nightly, up), badge("missing", "NOT RUN"))
        return f"{gone} last: {badge(str(row['latest_status']))} {row['latest_at']:%m-%d}"
    link = a(run_anchor(row["latest_run"], up, drill), badge(str(row["latest_status"])))
    return f"{link} {row['latest_at']:%m-%d %H:%M}"


def _drill_table(sections: list[Section], now: pd.Timestamp, p: str) -> list[str]:
    names = list(sections[0].table.index)
    for s in sections[1:]:
        names += [d for d in s.table.index if d not in names]
    if len(sections) == 1:
        s = sections[0]
        up = p + s.gen.removeprefix("generated/")
        rows = []
        for drill in names:
            row = s.table.loc[drill]
            rows.append(
                tr(
                    [
                        a(f"{up}drills/{drill}/", drill),
                        status_cell(s, drill, up),
                        mark_badges(s.marks.get(drill, [])),
                        ago(row["last_verified_pass"], now, s.hours),
                        rate_cell(row["pass_30"], min(row["outcomes"], 30), 30),
                        str(int(row["gaps"])),
                    ]
                )
            )
        head = [
            "Drill",
            "Latest (UTC)",
            "Marks",
            "Last verified pass",
            "Pass rate, last 30 runs",
            "Missed nights",
        ]
        return ["## Drills", "", html_table(head, rows), ""]
    rows = []
    for drill in names:
        cells = [drill]
        for s in sections:
            up = p + s.gen.removeprefix("generated/")
            if drill not in s.table.index:
                cells.append(badge("missing"))
                continue
            cells.append(
                f"{status_cell(s, drill, up)} {mark_badges(s.marks.get(drill, []))} "
                f"{a(f'{up}drills/{drill}/', 'history')}"
            )
        rows.append(tr(cells))
    head = ["Drill", *(f"{h(s.host)} (latest, UTC)" for s in sections)]
    return ["## Drills per host", "", html_table(head, rows), ""]


def _mark_list(sections: list[Section]) -> list[str]:
    lines = []
    for s in sections:
        where = f" on {esc(s.host)}" if s.host else ""
        for drill, found in s.marks.items():
            for kind, why in found:
                lines.append(
                    f'- **{drill}**{where} <span class="mark mark-{kind}">{kind}</span> {esc(why)}'
                )
    if not lines:
        return ["No drill is flaky, regressed, drifting or stale.", ""]
    return [
        "### Marks and their evidence",
        "",
        *lines,
        "",
        "See [About](about.md#marks) for how each is computed.",
        "",
    ]


def _completeness(s: Section, now: pd.Timestamp, p: str) -> list[str]:
    found = s.found
    recent = found[found["night"] >= now.normalize() - pd.Timedelta(days=30)]
    where = f" on {s.host}" if s.host else ""
    prefix = p + s.gen.removeprefix("generated/")
    out = []
    if recent.empty:
        out += [
            f'!!! success "No gaps in the last 30 nights{where}"',
            "    Every night had a run with a result for every drill.",
            "",
        ]
    else:
        out += [f'!!! danger "{len(recent)} gap(s) in the last 30 nights{where}"', ""]
        out += [*indent(gap_lines(recent, prefix)), ""]
    return out


def _integrity(s: Section, p: str) -> list[str]:
    runs = s.history.runs
    prefix = p + s.gen.removeprefix("generated/")
    where = f" on {s.host}" if s.host else ""
    broken = runs[runs["problems"].ne("") & ~runs["verified"]]
    unfinished = runs[runs["status"].ne("complete") & runs["problems"].eq("")]
    out = []
    log_problems = s.history.problems
    if log_problems:
        out += [f'!!! danger "The evidence log{where} does not verify"', ""]
        lines = [f"- {esc(line)}" for line in log_problems[:20]]
        more = len(log_problems) - 20
        lines += [f"- … and {more} more: run `python -m flows verify`"] if more > 0 else []
        out += [*indent(lines), ""]
    if broken.empty and not log_problems:
        out += [
            f'!!! success "Every sealed run{where} verifies intact"',
            "    `python -m flows verify` found every sealed run's files matching its manifest, "
            "the chain unbroken and, for signed runs, each statement's signature and its place "
            "in the log under the signed checkpoint.",
            "",
        ]
    elif broken.empty:
        out += [
            f'!!! warning "Every run folder{where} matches its own manifest"',
            "    but the log above does not verify: a run may have been removed or rewritten.",
            "",
        ]
    else:
        out += [f'!!! danger "{len(broken)} run(s){where} fail verification"', ""]
        lines = [
            f"- {a(run_href(r.run_id, prefix), r.run_id)}: {esc(r.problems.splitlines()[0])}"
            for r in records(broken.tail(20))
        ]
        out += [*indent(lines), ""]
    if not unfinished.empty:
        out += [f'!!! warning "{len(unfinished)} incomplete run(s){where}"', ""]
        lines = [
            f"- {a(run_href(r.run_id, prefix), r.run_id)}: {r.status}"
            for r in records(unfinished.tail(10))
        ]
        out += [*indent(lines), ""]
    return out


def timeline(
    s: Section, now: pd.Timestamp, docs: Path, name: str, nights: int, page_up: str
) -> str:
    """Write the timeline SVG of the last ``nights`` nights into the section's charts and
    return the ``<object>`` that shows it; ``page_up`` leads from the page to ``generated/``."""
    drills = s.history.drills
    if drills.empty:
        return "<p>No runs yet.</p>"
    last = max(drills["night"].max(), last_night(now, s.hours))
    first = max(drills["night"].min(), last - pd.Timedelta(days=nights - 1))
    svg = timeline_svg(drills, list(s.table.index), first, last, "../")
    path = docs / s.gen / "charts" / f"{name}.svg"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(svg, encoding="utf-8")
    src = f"{page_up}{s.gen.removeprefix('generated/')}charts/{name}.svg"
    return (
        f'<div class="timeline-wrap"><object type="image/svg+xml" data="{src}">'
        f"Timeline of the last {nights} nights</object></div>"
    )


def home_page(sections: list[Section], now: pd.Timestamp, docs: Path) -> str:
    """The generated part of the home page (included by index.md, so links start at the root);
    each section's window is its ``hours``."""
    p = "generated/"
    out = [
        *_banner(sections, now),
        *_latest_runs(sections, p),
        *_drill_table(sections, now, p),
        *_mark_list(sections),
        "## Completeness",
        "",
    ]
    for s in sections:
        out += _completeness(s, now, p)
    out += ["## Evidence integrity", ""]
    for s in sections:
        out += _integrity(s, p)
    for s in sections:
        out += checkpoint_block(s.history.root, s.host)
    out += ["## Timeline", ""]
    for s in sections:
        title = f"### {esc(s.host)}\n\n" if s.host else ""
        out += [
            f"{title}The last {TIMELINE_NIGHTS} nights; each cell opens the drill on its run "
            f"page. [Trends]({s.gen}trends.md) has every night.",
            "",
            timeline(s, now, docs, "timeline-recent", TIMELINE_NIGHTS, "generated/"),
            "",
        ]
    return "\n".join(out)


def _trends_rows(s: Section) -> list[str]:
    rows = []
    for drill, row in s.table.iterrows():
        n = int(row["outcomes"])
        rows.append(
            tr(
                [
                    a(f"../drills/{drill}/", str(drill)),
                    badge(row["latest_status"]),
                    str(n),
                    rate_cell(row["pass_7"], min(n, 7), 7),
                    rate_cell(row["pass_30"], min(n, 30), 30),
                    rate_cell(row["pass_all"], n, 0),
                    str(int(row["flips"])),
                    str(int(row["regressions"])),
                    str(int(row["gaps"])),
                ],
                right=(2, 6, 7, 8),
            )
        )
    return rows


def _monthly_latency(kill: pd.DataFrame, restart: pd.DataFrame) -> list[str]:
    out = ["## Kill latency and restart delay per month (last 24)", ""]
    both = pd.concat([kill, restart], ignore_index=True)
    if both.empty:
        return [*out, "No measurements yet.", ""]
    wide = both.pivot_table(index="period", columns="drill", values=["p50", "p95", "n"])
    wide = wide.sort_index(ascending=False).head(24)
    names = sorted(both["drill"].unique())
    out.append("| Month | " + " | ".join(f"{d} p50 / p95 (runs)" for d in names) + " |")
    out.append("| --- |" + " ---: |" * len(names))
    for period, row in wide.iterrows():
        cells = []
        for d in names:
            p50, p95, n = row.get(("p50", d)), row.get(("p95", d)), row.get(("n", d))
            cells.append(
                "—" if p50 is None or pd.isna(p50) else f"{p50:.1f} / {p95:.1f} ms ({int(n or 0)})"
            )
        out.append(f"| {period:%Y-%m} | " + " | ".join(cells) + " |")
    return [*out, ""]


def regression_rows(regs: pd.DataFrame, up: str, shown: int = REGRESSIONS_SHOWN) -> str:
    """The newest ``shown`` regressions with what changed and when they recovered."""
    rows = []
    for r in records(regs.iloc[::-1].head(shown)):
        back = (
            f"{r.recovered_at:%Y-%m-%d} {a(run_anchor(r.recovered_run, up, r.drill), r.recovered_run)}"
            if isinstance(r.recovered_run, str)
            else badge("fail", "not yet")
        )
        rows.append(
            tr(
                [
                    a(f"{up}drills/{r.drill}/", r.drill),
                    f"{r.last_pass_at:%Y-%m-%d} {a(run_anchor(r.last_pass_run, up, r.drill), r.last_pass_run)}",
                    f"{r.first_fail_at:%Y-%m-%d} {a(run_anchor(r.first_fail_run, up, r.drill), r.first_fail_run)} {badge(r.status)}",
                    h(r.changed),
                    back,
                ]
            )
        )
    note = f"<p>The newest {shown} of {len(regs)} regressions.</p>\n" if len(regs) > shown else ""
    return note + html_table(
        ["Drill", "Last pass", "First failure", "What changed", "Recovered"], rows
    )


def categories_table(cats: pd.DataFrame) -> str:
    """Per category: how many failed runs, and how many of them per drill."""
    if cats.empty:
        return "<p>No failures to categorise.</p>\n"
    counts = cats.groupby(["category", "drill"]).size()
    rows = []
    for cat, part in counts.groupby(level=0, sort=False):
        ranked = part.sort_values(ascending=False)
        drills = ranked.index.get_level_values("drill")
        per = ", ".join(f"{d} {int(n)}" for d, n in zip(drills, ranked, strict=True))
        rows.append(tr([h(cat), str(int(part.sum())), h(per)], right=(1,)))
    return html_table(["Category", "Failed runs", "Per drill"], rows, right=(1,))


def trends_page(
    s: Section, kill: pd.DataFrame, restart: pd.DataFrame, now: pd.Timestamp, docs: Path
) -> str:
    """The trends page of one section: figures per drill, timeline, latencies, regressions."""
    where = f" on {s.host}" if s.host else ""
    out = [
        f"# Trends{where}",
        "",
        "Pass rates count finished outcomes (pass, fail, error), newest first, with the number "
        "of runs counted; a rate from fewer than 5 is not shown. A *flip* is a change "
        "between passing and not passing; a *regression* is the first non-passing outcome after a "
        "pass. *Missed nights* count nights (UTC) without a run or without this drill's result.",
        "",
        html_table(
            [
                "Drill",
                "Latest",
                "Runs",
                "Pass 7",
                "Pass 30",
                "All time",
                "Flips",
                "Regressions",
                "Missed nights",
            ],
            _trends_rows(s),
            right=(2, 6, 7, 8),
        ),
        "## Timeline",
        "",
        f"The last {TRENDS_NIGHTS} nights; each cell opens the drill on its run page.",
        "",
        timeline(s, now, docs, "timeline", TRENDS_NIGHTS, "../" * (s.gen.count("/"))),
        "",
        "## Pass rate",
        "",
        "![Pass rate over the last 30 outcomes of each drill, from 10 outcomes on](charts/pass-rate.svg)",
        "",
        "![Kill latency p50 and p95 per month](charts/kill-latency.svg)",
        "",
        "![Restart delay p50 and p95 per month](charts/restart-delay.svg)",
        "",
        *_monthly_latency(kill, restart),
        "## Regressions",
        "",
    ]
    if s.regressions.empty:
        out += ["None: no drill has gone from passing to not passing.", ""]
    else:
        out += [regression_rows(s.regressions, "../"), ""]
    out += [
        "## Failure categories",
        "",
        "FAIL lines grouped by the rules in `flows/site/categories.toml` (first match wins); "
        "counts are runs.",
        "",
        categories_table(s.categories),
        "## Gaps",
        "",
        f"{len(s.found)} gap(s); newest first:",
        "",
        *gap_lines(s.found.tail(200), "../"),
        "",
    ]
    return "\n".join(out)
