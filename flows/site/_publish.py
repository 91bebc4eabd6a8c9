"""``publish``: load the history, write the pages, build the small MkDocs part, merge.

Two kinds of page:

- *plain pages* (a run, a log, an archive month): whole HTML pages written
  straight into the site folder. A run's page and its log pages are rendered
  again only when the digest of its evidence (every file's sha256 from the verify
  memo, else results.json, manifest.json, the statement and the proof; the verify
  outcome; its neighbours) changed since the last publish; the digests
  live in ``<site>/.publish-state.json``. This is what keeps a nightly publish
  of years of runs within seconds.
- *MkDocs pages* (home, trends, drills, archive index, reference, the
  hand-written pages): a few dozen, built by ``mkdocs build --strict`` from a
  staging folder under the site folder, then merged in (:mod:`flows.site._build`).

An artifacts root holding ``hosts/<hostname>/`` folders publishes one section per
host (``generated/hosts/<hostname>/...``); the home page gives each a column.
Nothing is written outside the site folder (or ``docs_dir`` when given).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from flows.errors import EvidenceError
from flows.evidence.layout import ATTESTATION, INCLUSION
from flows.evidence.memo import VerifyMemo
from flows.site import _build
from flows.site._archive import archive_index, archive_month
from flows.site._categories import categorise
from flows.site._drills import drill_page
from flows.site._home import Section, home_page, site_status, trends_page
from flows.site._html import records
from flows.site._paths import GENERATED, assets_dir, default_docs, host_prefix
from flows.site._reference import reference_page
from flows.site._runs import (
    copy_run,
    log_page,
    log_page_name,
    parse_json,
    run_page,
    signed_files,
)
from flows.trends import charts
from flows.trends import maths as trends
from flows.trends.formatting import WINDOW_HOURS, last_night
from flows.trends.history import (
    History,
    broken_runs,
    host_roots,
    load_history,
    now_utc,
    trends_table,
)
from flows.trends.marks import marks, regression_details

log = logging.getLogger("flows.site")

STATE = ".publish-state.json"
REFERENCE_CACHE = ".reference-cache.json"
# Bump when the run or log page layout changes: every cached page is rendered again.
PAGE_VERSION = "run-page-5"
HANDWRITTEN_SKIP = {GENERATED, "index.md", "about.md", "stylesheets"}


@dataclass(frozen=True)
class Stats:
    """What one publish did: run pages rendered and kept from the last publish."""

    rendered: int
    cached: int


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _write_if_changed(path: Path, text: str) -> None:
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except OSError:
        pass
    _write(path, text)


def _section(host: str, history: History, now: pd.Timestamp, hours: float) -> Section:
    placed = history.runs[history.runs["night"].notna()]
    found = trends.gaps(placed, history.drills, until=last_night(now, hours))
    table = trends_table(history, now, hours)
    regressions = regression_details(history.drills, history.runs)
    return Section(
        host=host,
        history=history,
        table=table,
        found=found,
        marks=marks(history.drills, history.runs, now, list(table.index), hours, regressions),
        regressions=regressions,
        categories=categorise(history.drills),
        gen=f"{GENERATED}/{host_prefix(host)}",
        hours=hours,
    )


def _summary_pages(s: Section, docs: Path, now: pd.Timestamp) -> None:
    """Charts, trends and one page per drill of one section (MkDocs sources)."""
    drills = s.history.drills
    gen = docs / s.gen
    chart_dir = gen / "charts"
    kill = trends.metric_percentiles(drills, ("api_kill", "kill_under_load"))
    restart = trends.metric_percentiles(drills, ("crash_restart",))
    charts.pass_rate_chart(trends.pass_rate_over_time(drills), chart_dir / "pass-rate.svg")
    charts.latency_chart(kill, chart_dir / "kill-latency.svg", "Kill latency per month")
    charts.latency_chart(restart, chart_dir / "restart-delay.svg", "Restart delay per month")
    _write(gen / "trends.md", trends_page(s, kill, restart, now, docs))
    for drill in s.table.index:
        charts.metric_chart(drills, drill, chart_dir / f"metric-{drill}.svg")
        _write(gen / "drills" / f"{drill}.md", drill_page(drill, s, now))
    _write(gen / "archive" / "index.md", archive_index(s.history.runs, s.found))


def _month_pages(s: Section, out: Path, changed: set[str] | None) -> int:
    """The archive months (plain pages): every month when ``changed`` is None, else the
    months in ``changed``, the newest two (new gaps land there) and any not written yet."""
    runs = s.history.runs
    placed = runs[runs["night"].notna()]
    months = placed["night"].dt.strftime("%Y-%m")
    found = s.found
    gap_months = found["night"].dt.strftime("%Y-%m") if not found.empty else found["night"]
    wanted = sorted(set(months) | set(gap_months))
    base = out / s.gen / "archive"
    for month in wanted:
        if (
            changed is not None
            and month not in changed
            and month not in wanted[-2:]
            and (base / month / "index.html").is_file()
        ):
            continue
        page = archive_month(month, placed[months.eq(month)], found[gap_months.eq(month)], s.gen)
        _write_if_changed(base / month / "index.html", page)
    if base.is_dir():
        for entry in os.scandir(base):
            if entry.is_dir() and entry.name not in wanted:
                shutil.rmtree(entry.path)
    return len(wanted)


def _digest(
    run: Any,
    folder: Path,
    neighbours: tuple[str | None, str | None],
    up: str,
    log_problems: tuple[str, ...],
    content: str | None,
) -> str:
    h = hashlib.sha256(PAGE_VERSION.encode())
    if content is not None:  # every file's sha256, as verify just saw them (the memo's)
        h.update(f"\0content {content}".encode())
    else:
        # the signed statement and its inclusion proof too: a run adopted into the log
        # later (its runner died) gets its log index on the page at the next publish
        for name in ("results.json", "manifest.json", "attestation.dsse.json", INCLUSION):
            try:
                h.update((folder / name).read_bytes())
            except OSError:
                h.update(b"\0missing")
    h.update(
        json.dumps(
            [run.verified, run.problems, run.status, *neighbours, up, *log_problems]
        ).encode()
    )
    return h.hexdigest()


def _run_pages(
    s: Section,
    out: Path,
    state: dict[str, str],
    changed: set[str],
    linked: list[Path],
    memo: VerifyMemo | None,
) -> tuple[Stats, dict[str, str]]:
    """Each run's page, its log pages and raw files; only runs whose digest changed (their
    months are added to ``changed``, their folders to ``linked``)."""
    runs = s.history.runs
    run_ids = runs["run_id"].tolist()
    known = set(run_ids)
    base = out / s.gen / "runs"
    up = "../" * (s.gen.count("/") + 2)
    digests: dict[str, str] = {}
    rendered = 0
    for i, run in enumerate(records(runs)):
        neighbours = (
            run_ids[i - 1] if i > 0 else None,
            run_ids[i + 1] if i + 1 < len(run_ids) else None,
        )
        key = f"{s.gen}runs/{run.run_id}"
        folder = Path(run.path)
        content = memo.content(folder) if memo is not None else None
        digest = _digest(run, folder, neighbours, up, s.history.problems, content)
        digests[key] = digest
        dest = base / run.run_id
        if state.get(key) == digest and (dest / "index.html").is_file():
            continue
        if not pd.isna(run.started_at):
            changed.add(f"{run.started_at:%Y-%m}")
        copied, texts = copy_run(Path(run.path), dest)
        linked.append(Path(run.path))
        results, _ = parse_json("results.json", texts)
        manifest, manifest_error = parse_json("manifest.json", texts)
        logs = {
            k: v.decode("utf-8", errors="replace").splitlines()
            for k, v in texts.items()
            if k.endswith(".log")
        }
        for name, lines in logs.items():
            _write(dest / log_page_name(name), log_page(run.run_id, name, lines, up, s.gen))
        page = run_page(
            run,
            results,
            manifest,
            manifest_error,
            copied,
            logs,
            s.history.root,
            neighbours,
            known,
            up=up,
            gen=s.gen,
            signed=signed_files(texts) if ATTESTATION in texts else None,
            log_problems=s.history.problems,
        )
        _write(dest / "index.html", page)
        rendered += 1
    if base.is_dir():
        for entry in os.scandir(base):
            if entry.name not in known:
                shutil.rmtree(entry.path) if entry.is_dir() else os.unlink(entry.path)
    return Stats(rendered, len(run_ids) - rendered), digests


def _search_entries(s: Section) -> list[dict[str, str]]:
    """One search entry per run page: its id as the title, its night, verdict and host."""
    out = []
    for r in records(s.history.runs):
        night = "" if pd.isna(r.started_at) else f"{r.started_at:%Y-%m-%d %H:%M} UTC"
        failed = f" not passed: {r.failed.replace(',', ', ')}" if r.failed else ""
        where = f" host {s.host}" if s.host else ""
        out.append(
            {
                "location": f"{s.gen}runs/{r.run_id}/",
                "title": r.run_id,
                "text": f"Run {r.run_id}{where}, {night}, {r.verdict or r.status}.{failed}",
            }
        )
    return out


def _code_digest() -> str:
    """A digest of the flows and supervisor sources: what the reference page is made of."""
    h = hashlib.sha256()
    for package in ("flows", "supervisor"):
        spec = importlib.util.find_spec(package)
        where = list(spec.submodule_search_locations or []) if spec else []
        for base in where:
            for path in sorted(Path(base).rglob("*.py")):
                h.update(path.name.encode())
                h.update(path.read_bytes())
    return h.hexdigest()


def _reference(cache: Path | None) -> str:
    """The reference page, from ``cache`` while the code it documents is unchanged
    (building it imports the supervisor and its web stack: a second per publish)."""
    key = _code_digest()
    if cache is not None:
        try:
            data = json.loads(cache.read_text(encoding="utf-8"))
            if data.get("key") == key:
                return str(data["text"])
        except (OSError, ValueError, KeyError):
            pass
    text = reference_page()
    if cache is not None:
        cache.write_text(json.dumps({"key": key, "text": text}), encoding="utf-8")
    return text


def _stage_docs(
    docs: Path,
    sections: list[Section],
    extra: Path | None,
    now: pd.Timestamp,
    cache: Path | None = None,
) -> None:
    """The MkDocs sources: the packaged pages, the hand-written ones, the generated ones."""
    shutil.copytree(assets_dir() / "pages", docs, dirs_exist_ok=True)
    if extra is not None and extra.is_dir():
        for entry in os.scandir(extra):
            if entry.name in HANDWRITTEN_SKIP:
                continue
            target = docs / entry.name
            if entry.is_dir():
                shutil.copytree(entry.path, target, dirs_exist_ok=True)
            else:
                shutil.copyfile(entry.path, target)
    gen = docs / GENERATED
    home = home_page(sections, now, docs)
    # verify.md ships with the package (a checkout's docs/verify.md replaces it)
    home += "\n\n[Verify evidence](verify.md) says how to check a run yourself.\n"
    _write(gen / "home.md", home)
    _write(gen / "reference.md", _reference(cache))
    for s in sections:
        _summary_pages(s, docs, now)


def load_sections(root: Path, memo: VerifyMemo | None = None) -> dict[str, History]:
    """Every host's history under ``root`` (one unnamed host for a plain root); ``memo``
    is the site's (:meth:`VerifyMemo.in_site`), given back to :func:`publish_histories`."""
    return {host: load_history(path, memo=memo) for host, path in host_roots(root).items()}


def publish_histories(
    histories: dict[str, History],
    site_dir: Path,
    build: bool = True,
    *,
    docs_dir: Path | None = None,
    extra_docs: Path | None = None,
    now: pd.Timestamp | None = None,
    hours: float = WINDOW_HOURS,
    memo: VerifyMemo | None = None,
) -> tuple[Path, Stats]:
    """:func:`publish` of histories already loaded; also returns the run-page counts.
    ``memo``, the one :func:`load_sections` filled, is saved into the site once the run
    pages are written (their hard links change the evidence files' ctime)."""
    now = now_utc() if now is None else now
    extra = default_docs() if extra_docs is None else extra_docs
    sections = [_section(host, h, now, hours) for host, h in histories.items()]
    for s in sections:
        log.info(
            "site.loaded host=%s root=%s runs=%d drills=%d flagged=%d",
            s.host or "-",
            s.history.root,
            len(s.history.runs),
            len(s.history.drills),
            int((~s.history.runs["verified"]).sum()),
        )
    site_dir = Path(site_dir)
    if not build:
        docs = Path(docs_dir) if docs_dir is not None else site_dir
        _stage_docs(docs, sections, extra, now)
        stats = _plain_pages(sections, docs, {})[0]
        return docs / GENERATED / "home.md", stats
    site_dir.mkdir(parents=True, exist_ok=True)
    state_path = site_dir / STATE
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = {}
    linked: list[Path] = []
    # absolute: MkDocs reads a relative site_dir against its config's folder, and an
    # empty build would then be merged (`--site-dir site` lost its home page)
    with tempfile.TemporaryDirectory(prefix=".publish-", dir=site_dir.absolute()) as tmp:
        # the plain pages first: the memo takes the linked runs' fingerprints again at the
        # end, and a file linked less than memo.RACY_NS before that is not kept
        stats, digests = _plain_pages(sections, site_dir, state, linked, memo)
        stage = Path(docs_dir).parent if docs_dir is not None else Path(tmp)
        docs = Path(docs_dir) if docs_dir is not None else stage / "docs"
        _stage_docs(docs, sections, extra, now, site_dir / REFERENCE_CACHE)
        config = _build.write_config(stage, list(histories), site_status(sections, now)[0])
        built = Path(tmp) / "built"
        _build.run_mkdocs(config, built, cache_templates=True)
        _build.drop_sitemap(built)
        _build.add_to_search(built, (e for s in sections for e in _search_entries(s)))
        _build.merge(built, site_dir)
    state_path.write_text(json.dumps(digests, sort_keys=True), encoding="utf-8")
    if memo is not None:
        for run in linked:
            memo.refresh(run)
        memo.save()
    log.info("site.built site=%s rendered=%d cached=%d", site_dir, stats.rendered, stats.cached)
    return site_dir / "index.html", stats


def _plain_pages(
    sections: list[Section],
    out: Path,
    state: dict[str, str],
    linked: list[Path] | None = None,
    memo: VerifyMemo | None = None,
) -> tuple[Stats, dict[str, str]]:
    rendered = cached = 0
    digests: dict[str, str] = {}
    for s in sections:
        changed: set[str] = set()
        stats, found = _run_pages(s, out, state, changed, [] if linked is None else linked, memo)
        _month_pages(s, out, changed if state else None)
        rendered, cached = rendered + stats.rendered, cached + stats.cached
        digests |= found
    return Stats(rendered, cached), digests


def publish(
    artifacts_root: Path,
    site_dir: Path,
    build: bool = True,
    *,
    docs_dir: Path | None = None,
    extra_docs: Path | None = None,
    now: pd.Timestamp | None = None,
    hours: float = WINDOW_HOURS,
) -> Path:
    """Publish every run under ``artifacts_root`` (per host under ``hosts/``) into ``site_dir``.

    ``extra_docs`` holds the hand-written pages beside the packaged ones (default
    ``./docs`` when it exists). ``docs_dir``, when given, keeps the MkDocs sources
    there instead of in a scratch folder under ``site_dir``; with ``build=False``
    the sources and plain pages are written there (or into ``site_dir``) and
    nothing is built. ``hours`` is the schedule's window: a drill with no outcome
    for longer is stale, a night is missed once it has passed. Returns the built
    ``index.html`` (with ``build=False``, the generated home page).
    """
    memo = VerifyMemo.in_site(Path(site_dir)) if build else None
    histories = load_sections(Path(artifacts_root), memo)
    return publish_histories(
        histories,
        site_dir,
        build,
        docs_dir=docs_dir,
        extra_docs=extra_docs,
        now=now,
        hours=hours,
        memo=memo,
    )[0]


def cmd_publish(args: Any) -> int:
    """``python -m flows publish --artifacts ROOT --site-dir DIR [--no-build] [--stale-hours H]``.

    Exit 0 when the site is built, 1 when it is built but some run's evidence or
    the evidence log does not verify (the site marks it) or the strict build fails, 2 when the
    evidence root does not exist or cannot be read. An existing root without
    runs builds a site that says so.
    """
    root = Path(args.artifacts)
    hours = float(args.stale_hours)
    if not hours > 0:
        print(
            f"flows publish: --stale-hours must be a positive number of hours, got {hours:g}; "
            "it is the schedule's window (26 for a nightly run)",
            file=sys.stderr,
        )
        return 2
    if not root.is_dir():
        print(
            f"flows publish: evidence root {root} is not a folder; pass --artifacts ROOT"
            " (the folder that holds the chaos-drill-* run folders, or hosts/<name>/ folders)",
            file=sys.stderr,
        )
        return 2
    memo = None if args.no_build else VerifyMemo.in_site(Path(args.site_dir))
    try:
        histories = load_sections(root, memo)
    except EvidenceError as exc:
        print(f"flows publish: {exc}", file=sys.stderr)
        return 2
    try:
        out, stats = publish_histories(
            histories, Path(args.site_dir), build=not args.no_build, hours=hours, memo=memo
        )
    except EvidenceError as exc:
        print(f"flows publish: {exc}", file=sys.stderr)
        return 1
    print(f"publish: {out} ({stats.rendered} run page(s) rendered, {stats.cached} unchanged)")
    broken = [f"{host}/{r}" if host else r for host, h in histories.items() for r in broken_runs(h)]
    if broken:
        print(
            f"flows publish: {len(broken)} run(s) do not verify ({', '.join(broken[:5])}"
            f"{', ...' if len(broken) > 5 else ''}); the site marks them. "
            f"Check with `python -m flows verify {root}`",
            file=sys.stderr,
        )
    for host, history in histories.items():
        if history.problems:
            where = f" of host {host}" if host else ""
            print(
                f"flows publish: the evidence log{where} does not verify "
                f"({len(history.problems)} problem(s)): {history.problems[0]}; the home page "
                f"says so. Check with `python -m flows verify {history.root}`",
                file=sys.stderr,
            )
    return 1 if broken or any(h.problems for h in histories.values()) else 0
