"""``publish``: load the history, write every generated page and chart, build the site."""

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
from flows.site._paths import DOCS, GENERATED
from flows.site._reference import reference_page
from flows.site._runs import copy_run, parse_json, run_page
from flows.trends import charts
from flows.trends import maths as trends
from flows.trends.history import History, load_history, now_utc, trends_table

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
    _write(gen / "reference.md", reference_page())
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
        copied, texts = copy_run(folder, dest)
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
