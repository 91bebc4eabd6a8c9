"""The evidence site: generated Markdown and SVG charts, built by ``mkdocs build --strict``.

``publish(artifacts_root, site_dir)`` loads the history (:mod:`flows.history`),
writes the generated pages under ``<docs>/generated/`` (git ignores it), copies
each run's raw files beside its page so every evidence line links to its file,
and builds the site with the repository's ``mkdocs.yml``. Hand-written pages
stay in ``docs/``; ``docs/index.md`` includes the generated ``home.md``.

Run pages are kept out of the nav (``not_in_nav``): Material renders the whole
nav into every page, and thousands of runs in it would make every page, and the
build, slow. They are reached from the archive and the drill pages.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
import yaml

from flows import charts, trends
from flows.errors import EvidenceError
from flows.history import History, load_history, now_utc, trends_table

__all__ = ["GENERATED", "cmd_publish", "publish", "run_page_url"]

log = logging.getLogger("flows.site")

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
CONFIG = REPO / "mkdocs.yml"
GENERATED = "generated"


def run_page_url(run_id: str) -> str:
    """The URL of a run's page relative to the site root, e.g. ``generated/runs/<id>/``."""
    return f"{GENERATED}/runs/{run_id}/"


def _copy_handwritten(docs_dir: Path) -> None:
    """Give a scratch docs dir the repository's hand-written pages (everything but generated/)."""
    shutil.copytree(
        DOCS,
        docs_dir,
        ignore=lambda d, names: [GENERATED] if Path(d) == DOCS else [],
        dirs_exist_ok=True,
    )


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _link(src: str, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _copy_run(folder: Path, dest: Path) -> tuple[set[str], dict[str, bytes]]:
    """Put a run's flat files next to its page; return their names and the bytes of the
    logs and JSON files the page quotes.

    A hard link is one cheap syscall per file at 3,650 runs; the copy in the docs
    dir is only read (by MkDocs), and the next publish unlinks it. Another disk
    falls back to a copy.
    """
    dest.mkdir(parents=True, exist_ok=True)
    before = set(os.listdir(dest))
    copied: set[str] = set()
    texts: dict[str, bytes] = {}
    try:
        entries = [e for e in os.scandir(folder) if e.is_file() and not e.name.startswith(".")]
    except OSError as exc:
        log.warning("site.run_unlistable run=%s reason=%s", folder.name, exc)
        return copied, texts
    for entry in entries:
        if entry.name == "index.md":
            continue
        target = dest / entry.name
        try:
            if entry.name not in before or not os.path.samefile(entry.path, target):
                if entry.name in before:
                    os.unlink(target)
                _link(entry.path, target)
            if entry.name.endswith((".log", ".json")):
                texts[entry.name] = Path(entry.path).read_bytes()
        except OSError as exc:
            log.warning("site.file_unreadable path=%s reason=%s", entry.path, exc)
            continue
        copied.add(entry.name)
    for gone in before - copied - {"index.md"}:
        os.unlink(dest / gone)
    return copied, texts


def _parse(name: str, texts: dict[str, bytes]) -> tuple[dict[str, Any] | None, str | None]:
    if name not in texts:
        return None, None
    try:
        data = json.loads(texts[name])
    except ValueError as exc:
        return None, f"{name} unreadable: {exc}"
    return (data, None) if isinstance(data, dict) else (None, f"{name} is not an object")


# ---------------------------------------------------------------- page text

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
_BADGES = {"pass", "fail", "error", "incomplete", "missing", "gap", "ok", "broken", "unknown"}
_KEY_LINE = re.compile(
    r"->|process tree|survivor|exited|signal:|restarted|rows kept|kills:|error|refused",
    re.IGNORECASE,
)
_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]|#"})


def _esc(text: object) -> str:
    """Plain text for a Markdown table cell or paragraph."""
    return html.escape(str(text), quote=False).translate(_MD_SPECIAL)


def _code(text: str) -> str:
    """An inline code span that survives backticks in ``text``."""
    ticks = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or len(ticks) > 1 else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _badge(kind: str, text: str | None = None) -> str:
    cls = kind if kind in _BADGES else "unknown"
    return f'<span class="badge badge-{cls}">{html.escape(text or kind.upper())}</span>'


def _when(ts: Any) -> str:
    return "—" if ts is None or pd.isna(ts) else f"{ts:%Y-%m-%d %H:%M} UTC"


def _age(delta: Any) -> str:
    if delta is None or pd.isna(delta):
        return _badge("missing", "never")
    hours = delta.total_seconds() / 3600
    text = f"{hours:.0f} h ago" if hours < 48 else f"{hours / 24:.0f} days ago"
    return _badge("pass", text) if hours <= 36 else _badge("fail", text)


def _rate(x: Any) -> str:
    return "—" if pd.isna(x) else f"{x:.0%}"


def _streak(row: Any) -> str:
    if pd.isna(row["streak"]):
        return "—"
    return f"{int(row['streak'])} × {'pass' if row['streak_passing'] else 'not pass'}"


def _gaps_cell(n: int) -> str:
    return _badge("gap", str(n)) if n else _badge("pass", "0")


def _run_link(run_id: str, prefix: str) -> str:
    return f"[{run_id}]({prefix}runs/{run_id}/index.md)"


def _evidence_badge(status: str, verified: bool, problems: str) -> str:
    if verified:
        return _badge("ok", "verified")
    if problems:
        return _badge("broken", "NOT VERIFIED")
    return _badge("incomplete", status.upper())


def _metric_text(drill: str, value: Any) -> str:
    return "—" if pd.isna(value) else f"{trends.KEY_METRICS.get(drill, 'metric')} {value:g}"


def _gap_lines(found: pd.DataFrame, prefix: str) -> list[str]:
    lines = []
    for g in found.sort_values("night", ascending=False).itertuples(index=False):
        night = f"{g.night:%Y-%m-%d}"
        if g.kind == "missing_night":
            lines.append(f"- {night}: no run that night")
        else:
            lines.append(f"- {night}: no result for **{g.drill}** in {_run_link(g.run_id, prefix)}")
    return lines


def _indent(lines: list[str]) -> list[str]:
    return ["    " + line if line else "" for line in lines]


def home_page(history: History, table: pd.DataFrame, found: pd.DataFrame, now: pd.Timestamp) -> str:
    """The generated part of the home page (included by docs/index.md, so links start at docs/)."""
    p = f"{GENERATED}/"
    runs = history.runs
    out: list[str] = []
    placed = runs[runs["started_at"].notna()].sort_values(["started_at", "run_id"])
    if placed.empty:
        out += [
            '!!! warning "No runs yet"',
            f"    No run folders under {_code(str(history.root))}. Run `make drill` or "
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
            f"{_badge(verdict)} {_evidence_badge(last['status'], last['verified'], last['problems'])}"
            f" {_run_link(last['run_id'], p)}, started {_when(last['started_at'])}, "
            f"{scope} drill(s) in scope. Published {_when(now)}.",
            "",
        ]
    out += [
        "## Drills",
        "",
        "| Drill | Latest | Last verified pass | Pass 7 | Pass 30 | All time | Streak | Gaps |",
        "| --- | --- | --- | ---: | ---: | ---: | --- | ---: |",
    ]
    for drill, row in table.iterrows():
        latest = _badge(row["latest_status"])
        if isinstance(row["latest_run"], str):
            latest += f" {_run_link(row['latest_run'], p)}"
        out.append(
            f"| [{drill}]({p}drills/{drill}.md) | {latest} | {_age(row['freshness'])} "
            f"| {_rate(row['pass_7'])} | {_rate(row['pass_30'])} | {_rate(row['pass_all'])} "
            f"| {_streak(row)} | {_gaps_cell(int(row['gaps']))} |"
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
        out += _indent(_gap_lines(recent, p)) + [""]
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
            f"- {_run_link(r.run_id, p)}: {_esc(r.problems.splitlines()[0])}"
            for r in broken.tail(20).itertuples(index=False)
        ]
        out += _indent(lines) + [""]
    if not unfinished.empty:
        out += [f'!!! warning "{len(unfinished)} incomplete run(s)"', ""]
        lines = [
            f"- {_run_link(r.run_id, p)}: {r.status}"
            for r in unfinished.tail(10).itertuples(index=False)
        ]
        out += _indent(lines) + [""]
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
            f"| [{drill}](drills/{drill}.md) | {_badge(row['latest_status'])} "
            f"| {int(row['outcomes'])} | {_rate(row['pass_7'])} | {_rate(row['pass_30'])} "
            f"| {_rate(row['pass_all'])} | {_streak(row)} | {int(row['flips'])} "
            f"| {_rate(row['flip_rate'])} | {int(row['regressions'])} "
            f"| {_age(row['freshness'])} | {_gaps_cell(int(row['gaps']))} |"
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
                f"| [{r.drill}](drills/{r.drill}.md) | {_run_link(r.last_pass_run, '')} "
                f"| {_run_link(r.first_fail_run, '')} | {_badge(r.status)} |"
            )
        out.append("")
    out += ["## Gaps", "", f"{len(found)} gap(s); newest first:", ""]
    out += _gap_lines(found.tail(200), "") + [""]
    return "\n".join(out)


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
            f"| {_badge('fail', str(int(s['failed']))) if s['failed'] else 0} "
            f"| {int(s['incomplete'])} | {_badge('broken', str(broken)) if broken else 0} "
            f"| {_gaps_cell(int(s['gaps']))} |"
        )
    out.append("")
    if stats.empty:
        out += ["No runs yet.", ""]
    return "\n".join(out)


def _h(text: object) -> str:
    return html.escape(str(text), quote=True)


def _a(href: str, text: str) -> str:
    """A raw-HTML link; ``href`` is a final URL (raw HTML is not rewritten by MkDocs)."""
    return f'<a href="{_h(href)}">{text}</a>'


def _html_table(head: list[str], rows: list[str], right: tuple[int, ...] = ()) -> str:
    """A table as one raw-HTML block: far cheaper for MkDocs than a Markdown table."""
    ths = " ".join(
        f'<th style="text-align:right">{h}</th>' if i in right else f"<th>{h}</th>"
        for i, h in enumerate(head)
    )
    return (
        f"<table>\n<thead><tr>{ths}</tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + ("\n</tbody>\n</table>\n")
    )


def _tr(cells: list[str], right: tuple[int, ...] = ()) -> str:
    return (
        "<tr>"
        # The spaces keep cells apart in the search index ("2026-10-30 chaos-drill-…").
        + " ".join(
            f'<td style="text-align:right">{c}</td>' if i in right else f"<td>{c}</td>"
            for i, c in enumerate(cells)
        )
        + "</tr>"
    )


# Page URLs as the built site has them (use_directory_urls), for raw-HTML links.
def _run_href(run_id: str, up: str) -> str:
    return f"{up}runs/{run_id}/"


SEARCH_EXCLUDE = "---\nsearch:\n  exclude: true\n---\n\n"


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
        f"| {_badge(row['latest_status'])} | {_rate(row['pass_7'])} | {_rate(row['pass_30'])} "
        f"| {_rate(row['pass_all'])} | {_streak(row)} | {int(row['flips'])} "
        f"| {int(row['regressions'])} | {_age(row['freshness'])} "
        f"| {_gaps_cell(int(row['gaps']))} |",
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
            _html_table(
                ["Last pass", "First non-pass", "Status"],
                [
                    _tr(
                        [
                            _a(_run_href(r.last_pass_run, "../../"), r.last_pass_run),
                            _a(_run_href(r.first_fail_run, "../../"), r.first_fail_run),
                            _badge(r.status),
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
            _tr(
                [
                    f"{r.night:%Y-%m-%d}",
                    _a(_run_href(r.run_id, "../../"), r.run_id),
                    _badge(r.status),
                    "" if pd.isna(r.metric) else f"{r.metric:g}",
                    "" if r.status == "pass" else _h(r.summary),
                ]
            ),
        )
        for r in rows.itertuples(index=False)
    ]
    lines += [
        (
            g.night,
            _tr(
                [
                    f"{g.night:%Y-%m-%d}",
                    _badge("gap", "no run")
                    if g.kind == "missing_night"
                    else f"{_a(_run_href(g.run_id, '../../'), g.run_id)} {_badge('gap', 'not run')}",
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
        _html_table(
            ["Night", "Run", "Status", metric, "Log's last line"],
            [text for _, text in lines],
            right=(3,),
        ),
    ]
    return "\n".join(out)


def archive_month(month: str, runs: pd.DataFrame, found: pd.DataFrame) -> str:
    """Every night of one month: its runs, verdicts and gaps; search finds runs by id here."""
    out = [f"# Runs in {month}", "", "[All months](index.md)", ""]
    lines = [
        (
            r.started_at,
            _tr(
                [
                    f"{r.night:%Y-%m-%d}",
                    _a(_run_href(r.run_id, "../../"), r.run_id),
                    f"{r.started_at:%H:%M:%S}",
                    _badge(r.verdict or r.status),
                    _h(r.failed.replace(",", ", ")),
                    _evidence_badge(r.status, r.verified, r.problems),
                ]
            ),
        )
        for r in runs.itertuples(index=False)
    ]
    for g in found.itertuples(index=False):
        what = (
            _badge("gap", "no run")
            if g.kind == "missing_night"
            else f"{_badge('gap', 'gap')} no result for {_h(g.drill)}"
        )
        lines.append((g.night, _tr([f"{g.night:%Y-%m-%d}", what, "", "", "", ""])))
    lines.sort(key=lambda x: x[0], reverse=True)
    out.append(
        _html_table(
            ["Night", "Run", "Started", "Verdict", "Not passed", "Evidence"],
            [text for _, text in lines],
        )
    )
    return "\n".join(out)


def _log_lines(name: str, lines: list[str], limit: int = 4) -> str:
    """Key lines and the final PASS/FAIL line of a log, numbered, under a link to the file.

    One ``<pre>`` per drill: thousands of run pages with an element per line did
    not fit the build-time budget.
    """
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    link = _a(quote(name), _h(name))
    if not numbered:
        return f"<p>{link} is empty.</p>\n"
    last_no, last = numbered[-1]
    key = [(n, t) for n, t in numbered[:-1] if _KEY_LINE.search(t)][-limit:]
    shown = key + [(last_no, last)]
    verdict = last.split(" ", 1)[1] if " " in last else last
    note = (
        ""
        if verdict.startswith(("PASS:", "FAIL:"))
        else (" The last line is not a PASS/FAIL line: the drill did not finish.")
    )
    width = len(str(last_no))
    body = "\n".join(f"{n:>{width}}  {_h(t)}" for n, t in shown)
    return (
        f"<p>Evidence from {link} ({len(lines)} lines), lines "
        f"{', '.join(str(n) for n, _ in shown)}:{note}</p>\n<pre><code>{body}</code></pre>\n"
    )


def run_page(
    run: Any,
    results: dict[str, Any] | None,
    manifest: dict[str, Any] | None,
    manifest_error: str | None,
    copied: set[str],
    logs: dict[str, list[str]],
    root: Path,
    neighbours: tuple[str | None, str | None],
    known: set[str],
) -> str:
    """The evidence page of one run, in the order of the evidence document.

    Below the title the page is one raw-HTML block with final URLs and few
    elements: MkDocs passes it through without the Markdown inline and TOC work
    that dominated the build at thousands of runs. Search skips run pages (the
    archive months carry their ids); their index would be megabytes for every
    visitor.
    """
    results = results or {}
    entries = [d for d in results.get("drills") or [] if isinstance(d, dict)]
    host = results.get("host") if isinstance(results.get("host"), dict) else {}
    versions = results.get("versions") if isinstance(results.get("versions"), dict) else {}
    started, finished = run.started_at, run.finished_at
    took = (
        f" ({(finished - started).total_seconds():.1f} s)"
        if not pd.isna(started) and not pd.isna(finished)
        else ""
    )
    scope = [str(d.get("id")) for d in entries]
    missing = [d for d in trends.EXPECTED_DRILLS if d not in scope]
    month = f"{started:%Y-%m}" if not pd.isna(started) else None
    prev, nxt = neighbours
    facts = [
        ("Date", f"{_when(started)} → {_when(finished)}{took}"),
        ("Drill command", f"<code>{_h(run.command or '—')}</code>"),
        ("Artifact folder", f"<code>{_h(run.path)}</code>"),
        ("Scope", f"{len(scope)} drill(s): {_h(', '.join(scope) or 'none')}"),
        (
            "Host",
            _h(
                f"{host.get('hostname', '?')}, {host.get('platform', '?')}, "
                f"{host.get('cpus', '?')} CPU(s)"
            ),
        ),
        ("Versions", _h(", ".join(f"{k} {v}" for k, v in versions.items()) or "—")),
        ("Git commit", f"<code>{_h(results.get('git_commit') or '—')}</code>"),
    ]
    nav = []
    if prev:
        nav.append(f"← previous run {_a(f'../{prev}/', prev)}")
    if nxt:
        nav.append(f"next run {_a(f'../{nxt}/', nxt)} →")
    if month:
        nav.append(_a(f"../../archive/{month}/", f"all runs of {month}"))
    out = [
        SEARCH_EXCLUDE + f"# {run.run_id}",
        "",
        '<div class="run-page">',
        f"<p>{_badge(run.verdict or run.status)} "
        f"{_evidence_badge(run.status, run.verified, run.problems)}</p>",
        "<p>" + "<br>\n".join(f"<strong>{k}:</strong> {v}" for k, v in facts) + "</p>",
        f"<p>{' · '.join(nav)}</p>",
        '<h2 id="results">Results</h2>',
    ]
    for d in entries:
        did, name = str(d.get("id")), str(d.get("log") or "")
        dur = d.get("duration_s")
        metrics = d.get("metrics") if isinstance(d.get("metrics"), dict) else {}
        value = metrics.get(trends.KEY_METRICS.get(did, ""))
        metric = _metric_text(did, value if isinstance(value, int | float) else None)
        out.append(
            f'<h3 id="drill-{_h(did)}">{_badge(str(d.get("status")))} '
            f"{_a(f'../../drills/{quote(did)}/', _h(did))}</h3>"
        )
        out.append(
            f"<p>{_h(d.get('summary', ''))}<br>\n"
            f"{f'{dur:.2f} s' if isinstance(dur, int | float) else 'no duration'} · "
            f"{_h(metric)}</p>"
        )
        out.append(_log_lines(name, logs[name]) if name in logs else "<p>No log was written.</p>")
    findings = []
    for d in entries:
        status = d.get("status")
        if status in ("fail", "error"):
            findings.append(
                f"<strong>{_h(d.get('id'))}</strong> {_h(status)}: {_h(d.get('summary', ''))}"
            )
        elif status == "incomplete":
            findings.append(
                f"<strong>{_h(d.get('id'))}</strong> did not finish: the run stopped before it"
            )
    if missing:
        findings.append(f"not in this run's scope: {_h(', '.join(missing))}")
    findings += [f"evidence: {_h(line)}" for line in run.problems.splitlines()]
    if manifest_error:
        findings.append(f"evidence: {_h(manifest_error)}")
    out.append('<h2 id="findings">Findings</h2>')
    out.append(
        "<ul>\n" + "\n".join(f"<li>{f}</li>" for f in findings) + "\n</ul>"
        if findings
        else "<p>None.</p>"
    )
    passed = sum(d.get("status") == "pass" for d in entries)
    if run.status != "complete":
        conclusion = (
            f"The run is {_h(run.status)}: {passed} of {len(entries)} drill(s) passed "
            "before it stopped, so it proves nothing about the rest."
        )
    elif run.verdict == "pass":
        conclusion = f"All {len(entries)} drill(s) in scope passed."
    else:
        conclusion = f"{len(entries) - passed} of {len(entries)} drill(s) did not pass."
    if run.verified:
        conclusion += " The evidence files verify intact against the manifest and the chain."
    elif run.problems:
        conclusion += " The evidence does <strong>not</strong> verify: treat this run as untrusted."
    out += [
        '<h2 id="conclusion">Conclusion</h2>',
        f"<p>{conclusion}</p>",
        '<h2 id="evidence-files">Evidence files</h2>',
    ]
    if manifest and isinstance(manifest.get("files"), dict):
        files = sorted(manifest["files"].items())
        links = ", ".join(_a(quote(n), _h(n)) for n, _ in files if n in copied)
        rows = "\n".join(f"{_h(digest)}  {_h(name)}" for name, digest in files)
        out.append(
            f"<p>The sha256 of every file as sealed in manifest.json. Raw files: "
            f"{links}.</p>\n<pre><code>{rows}</code></pre>"
        )
        previous = manifest.get("previous")
        if isinstance(previous, dict):
            pid = str(previous.get("run_id"))
            target = _a(f"../{quote(pid)}/", _h(pid)) if pid in known else _h(pid)
            out.append(
                f"<p>Chained to {target} by the sha256 of its manifest, "
                f"<code>{_h(previous.get('manifest_sha256'))}</code>.</p>"
            )
        else:
            out.append("<p>First run of its chain (<code>previous</code> is null).</p>")
    else:
        out.append(
            "<p>No manifest.json: the run was never sealed, so its files cannot be checked.</p>"
        )
    out += [
        '<h2 id="verify-it-yourself">Verify it yourself</h2>',
        f"<pre><code>python -m flows verify {_h(run.path)}\n"
        f"python -m flows verify {_h(root)}   # every run and the hash chain</code></pre>",
        f"<p>See {_a('../../../verify/', 'how to verify evidence')}.</p>",
        "</div>",
        "",
    ]
    return "\n".join(out)


def generate(history: History, gen: Path, now: pd.Timestamp | None = None) -> None:
    """Write every generated page, chart and copied evidence file into ``gen``."""
    now = now_utc() if now is None else now
    # Small folders are rebuilt; run folders are updated in place, so a nightly
    # publish does not unlink and relink every file of years of runs.
    for sub in ("drills", "archive", "charts"):
        if (gen / sub).exists():
            shutil.rmtree(gen / sub)
        (gen / sub).mkdir(parents=True)
    (gen / "runs").mkdir(parents=True, exist_ok=True)
    current = set(history.runs["run_id"])
    for stale in os.scandir(gen / "runs"):
        if stale.name not in current:
            shutil.rmtree(stale.path) if stale.is_dir() else os.unlink(stale.path)
    runs, drills = history.runs, history.drills
    placed = runs[runs["night"].notna()]
    table = trends_table(history, now)
    until = (now - pd.Timedelta(days=1)).normalize()
    found = trends.gaps(placed, drills, until=until)
    found_regressions = trends.regressions(drills)

    kill = trends.metric_percentiles(drills, ("api_kill", "kill_under_load"))
    restart = trends.metric_percentiles(drills, ("crash_restart",))
    charts.timeline_chart(drills, gen / "charts" / "timeline-recent.svg", last=60)
    charts.timeline_chart(drills, gen / "charts" / "timeline.svg")
    charts.pass_rate_chart(trends.pass_rate_over_time(drills), gen / "charts" / "pass-rate.svg")
    charts.latency_chart(kill, gen / "charts" / "kill-latency.svg", "Kill latency per month")
    charts.latency_chart(restart, gen / "charts" / "restart-delay.svg", "Restart delay per month")

    _write(gen / "home.md", home_page(history, table, found, now))
    _write(gen / "trends.md", trends_page(table, found_regressions, kill, restart, found))
    for drill in table.index:
        charts.metric_chart(drills, drill, gen / "charts" / f"metric-{drill}.svg")
        _write(
            gen / "drills" / f"{drill}.md",
            drill_page(drill, table.loc[drill], drills, found, found_regressions),
        )
    _write(gen / "archive" / "index.md", archive_index(runs, found))
    months = placed["night"].dt.strftime("%Y-%m")
    gap_months = found["night"].dt.strftime("%Y-%m") if not found.empty else found["night"]
    for month in sorted(set(months) | set(gap_months)):
        _write(
            gen / "archive" / f"{month}.md",
            archive_month(month, placed[months.eq(month)], found[gap_months.eq(month)]),
        )
    run_ids = runs["run_id"].tolist()
    known = set(run_ids)
    for i, run in enumerate(runs.itertuples(index=False)):
        folder = Path(run.path)
        dest = gen / "runs" / run.run_id
        copied, texts = _copy_run(folder, dest)
        results, _ = _parse("results.json", texts)
        manifest, manifest_error = _parse("manifest.json", texts)
        logs = {
            k: v.decode("utf-8", errors="replace").splitlines()
            for k, v in texts.items()
            if k.endswith(".log")
        }
        neighbours = (
            run_ids[i - 1] if i > 0 else None,
            run_ids[i + 1] if i + 1 < len(run_ids) else None,
        )
        _write(
            dest / "index.md",
            run_page(
                run,
                results,
                manifest,
                manifest_error,
                copied,
                logs,
                history.root,
                neighbours,
                known,
            ),
        )


def _config(docs_dir: Path, site_dir: Path, where: Path) -> Path:
    """A copy of mkdocs.yml pointing at ``docs_dir`` and ``site_dir`` (absolute paths)."""
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    config["docs_dir"] = str(docs_dir.resolve())
    config["site_dir"] = str(site_dir.resolve())
    # Raw run files are linked into the site after the build (see _link_raw_files).
    config["exclude_docs"] = (config.get("exclude_docs") or "") + (
        f"/{GENERATED}/runs/*/*\n!/{GENERATED}/runs/*/index.md\n"
    )
    for ext in config.get("markdown_extensions", []):
        if isinstance(ext, dict) and "pymdownx.snippets" in ext:
            ext["pymdownx.snippets"]["base_path"] = [str(docs_dir.resolve())]
    path = where / "mkdocs.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _link_raw_files(gen: Path, site_gen: Path) -> int:
    """Put every run's raw files beside its built page.

    MkDocs would copy them one by one (tens of thousands of files for years of
    runs); a hard link is one syscall each. Nothing writes to a built site in
    place, and the next build unlinks them.
    """
    count = 0
    runs = gen / "runs"
    if not runs.is_dir():
        return 0
    for run in os.scandir(runs):
        target = site_gen / "runs" / run.name
        target.mkdir(parents=True, exist_ok=True)
        for entry in os.scandir(run.path):
            if entry.name != "index.md" and entry.is_file():
                _link(entry.path, target / entry.name)
                count += 1
    return count


def build_site(docs_dir: Path, site_dir: Path) -> Path:
    """``mkdocs build --strict`` of ``docs_dir`` into ``site_dir``; returns its index.html."""
    with tempfile.TemporaryDirectory(prefix="flows-mkdocs-") as tmp:
        config = _config(docs_dir, site_dir, Path(tmp))
        # No -q: it silences the warnings --strict counts, and the build passes anyway.
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "mkdocs",
                "build",
                "--strict",
                "-f",
                str(config),
                "-d",
                str(site_dir.resolve()),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if proc.returncode != 0:
        output = (proc.stderr + proc.stdout).splitlines()
        warnings = [line for line in output if not line.startswith("INFO")] or output[-5:]
        raise EvidenceError(
            f"site: mkdocs build --strict failed (exit {proc.returncode}) for {docs_dir}:\n"
            + "\n".join(warnings)
            + "\nfix the page it names, or run `python -m flows publish --no-build` and "
            "`mkdocs build --strict` to see every warning"
        )
    log.debug("site.mkdocs_output %s", proc.stderr.strip())
    _link_raw_files(docs_dir / GENERATED, site_dir / GENERATED)
    return site_dir / "index.html"


def publish(
    artifacts_root: Path,
    site_dir: Path,
    build: bool = True,
    *,
    docs_dir: Path | None = None,
    now: pd.Timestamp | None = None,
) -> Path:
    """Generate the pages for every run under ``artifacts_root`` and build the site.

    ``docs_dir`` defaults to the repository's ``docs/``; pass a scratch folder to
    build without touching it (the hand-written pages are copied in). Returns the
    path of the built ``index.html`` (or, with ``build=False``, of the generated
    home page).
    """
    artifacts_root, site_dir = Path(artifacts_root), Path(site_dir)
    if docs_dir is None:
        docs_dir = DOCS
    else:
        docs_dir = Path(docs_dir)
        _copy_handwritten(docs_dir)
    history = load_history(artifacts_root)
    flagged = int((~history.runs["verified"]).sum())
    log.info(
        "site.loaded root=%s runs=%d drills=%d flagged=%d",
        artifacts_root,
        len(history.runs),
        len(history.drills),
        flagged,
    )
    generate(history, docs_dir / GENERATED, now)
    if not build:
        return docs_dir / GENERATED / "home.md"
    index = build_site(docs_dir, site_dir)
    log.info("site.built site=%s", site_dir)
    return index


def cmd_publish(args: Any) -> int:
    """``python -m flows publish --artifacts ROOT --site-dir DIR [--no-build]``."""
    try:
        out = publish(Path(args.artifacts), Path(args.site_dir), build=not args.no_build)
    except EvidenceError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"publish: {out}")
    return 0
