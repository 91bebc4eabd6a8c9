"""``publish``: load the history, write every generated page and chart, build the site.

The page builders live beside the part of the site they draw (``_home``,
``_drills``, ``_archive``, ``_runs``, ``_reference``); this module only calls
them in order and owns ``python -m flows publish``.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from flows.errors import EvidenceError
from flows.site._archive import archive_index, archive_month
from flows.site._build import build_site
from flows.site._drills import drill_page
from flows.site._home import home_page, trends_page
from flows.site._html import records
from flows.site._paths import DOCS, GENERATED
from flows.site._reference import reference_page
from flows.site._runs import copy_run, parse_json, run_page
from flows.trends import charts
from flows.trends import maths as trends
from flows.trends.formatting import last_night
from flows.trends.history import History, broken_runs, load_history, now_utc, trends_table

log = logging.getLogger("flows.site")


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


def _reset(gen: Path, current: set[str]) -> None:
    """Empty the small folders; drop the pages of runs that are gone.

    Run folders are updated in place, so a nightly publish does not unlink and
    relink every file of years of runs.
    """
    for sub in ("drills", "archive", "charts"):
        if (gen / sub).exists():
            shutil.rmtree(gen / sub)
        (gen / sub).mkdir(parents=True)
    (gen / "runs").mkdir(parents=True, exist_ok=True)
    for stale in os.scandir(gen / "runs"):
        if stale.name not in current:
            shutil.rmtree(stale.path) if stale.is_dir() else os.unlink(stale.path)


def _summary_pages(history: History, gen: Path, now: pd.Timestamp, found: pd.DataFrame) -> None:
    """Charts, home, reference, trends and one page per drill."""
    drills = history.drills
    table = trends_table(history, now)
    found_regressions = trends.regressions(drills)
    kill = trends.metric_percentiles(drills, ("api_kill", "kill_under_load"))
    restart = trends.metric_percentiles(drills, ("crash_restart",))
    chart_dir = gen / "charts"
    charts.timeline_chart(drills, chart_dir / "timeline-recent.svg", last=60)
    charts.timeline_chart(drills, chart_dir / "timeline.svg")
    charts.pass_rate_chart(trends.pass_rate_over_time(drills), chart_dir / "pass-rate.svg")
    charts.latency_chart(kill, chart_dir / "kill-latency.svg", "Kill latency per month")
    charts.latency_chart(restart, chart_dir / "restart-delay.svg", "Restart delay per month")

    _write(gen / "home.md", home_page(history, table, found, now))
    _write(gen / "reference.md", reference_page())
    _write(gen / "trends.md", trends_page(table, found_regressions, kill, restart, found))
    for drill in table.index:
        charts.metric_chart(drills, drill, chart_dir / f"metric-{drill}.svg")
        _write(
            gen / "drills" / f"{drill}.md",
            drill_page(drill, table.loc[drill], drills, found, found_regressions),
        )


def _archive_pages(runs: pd.DataFrame, gen: Path, found: pd.DataFrame) -> None:
    placed = runs[runs["night"].notna()]
    _write(gen / "archive" / "index.md", archive_index(runs, found))
    months = placed["night"].dt.strftime("%Y-%m")
    gap_months = found["night"].dt.strftime("%Y-%m") if not found.empty else found["night"]
    for month in sorted(set(months) | set(gap_months)):
        _write(
            gen / "archive" / f"{month}.md",
            archive_month(month, placed[months.eq(month)], found[gap_months.eq(month)]),
        )


def _run_pages(history: History, gen: Path) -> None:
    """Each run's page, with its raw files beside it."""
    run_ids = history.runs["run_id"].tolist()
    known = set(run_ids)
    for i, run in enumerate(records(history.runs)):
        dest = gen / "runs" / run.run_id
        copied, texts = copy_run(Path(run.path), dest)
        results, _ = parse_json("results.json", texts)
        manifest, manifest_error = parse_json("manifest.json", texts)
        logs = {
            k: v.decode("utf-8", errors="replace").splitlines()
            for k, v in texts.items()
            if k.endswith(".log")
        }
        neighbours = (
            run_ids[i - 1] if i > 0 else None,
            run_ids[i + 1] if i + 1 < len(run_ids) else None,
        )
        page = run_page(
            run, results, manifest, manifest_error, copied, logs, history.root, neighbours, known
        )
        _write(dest / "index.md", page)


def generate(history: History, gen: Path, now: pd.Timestamp | None = None) -> None:
    """Write every generated page, chart and copied evidence file into ``gen``."""
    now = now_utc() if now is None else now
    _reset(gen, set(history.runs["run_id"]))
    placed = history.runs[history.runs["night"].notna()]
    found = trends.gaps(placed, history.drills, until=last_night(now))
    _summary_pages(history, gen, now, found)
    _archive_pages(history.runs, gen, found)
    _run_pages(history, gen)


def _docs(docs_dir: Path | None) -> Path:
    if docs_dir is None:
        return DOCS
    docs_dir = Path(docs_dir)
    _copy_handwritten(docs_dir)
    return docs_dir


def publish_history(
    history: History,
    site_dir: Path,
    build: bool = True,
    *,
    docs_dir: Path | None = None,
    now: pd.Timestamp | None = None,
) -> Path:
    """:func:`publish` of a history already loaded."""
    docs_dir = _docs(docs_dir)
    log.info(
        "site.loaded root=%s runs=%d drills=%d flagged=%d",
        history.root,
        len(history.runs),
        len(history.drills),
        int((~history.runs["verified"]).sum()),
    )
    generate(history, docs_dir / GENERATED, now)
    if not build:
        return docs_dir / GENERATED / "home.md"
    index = build_site(docs_dir, Path(site_dir))
    log.info("site.built site=%s", site_dir)
    return index


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
    history = load_history(Path(artifacts_root))
    return publish_history(history, site_dir, build, docs_dir=docs_dir, now=now)


def cmd_publish(args: Any) -> int:
    """``python -m flows publish --artifacts ROOT --site-dir DIR [--no-build]``.

    Exit 0 when the site is built, 1 when it is built but some run's evidence
    does not verify (the site marks it) or the strict build fails, 2 when the
    evidence root does not exist or cannot be read. An existing root without
    runs builds a site that says so.
    """
    root = Path(args.artifacts)
    if not root.is_dir():
        print(
            f"flows publish: evidence root {root} is not a folder; pass --artifacts ROOT"
            " (the folder that holds the chaos-drill-* run folders)",
            file=sys.stderr,
        )
        return 2
    try:
        history = load_history(root)
    except EvidenceError as exc:
        print(f"flows publish: {exc}", file=sys.stderr)
        return 2
    try:
        out = publish_history(history, Path(args.site_dir), build=not args.no_build)
    except EvidenceError as exc:
        print(f"flows publish: {exc}", file=sys.stderr)
        return 1
    print(f"publish: {out}")
    broken = broken_runs(history)
    if broken:
        print(
            f"flows publish: {len(broken)} run(s) do not verify ({', '.join(broken[:5])}"
            f"{', ...' if len(broken) > 5 else ''}); the site marks them. "
            f"Check with `python -m flows verify {history.root}`",
            file=sys.stderr,
        )
        return 1
    return 0
