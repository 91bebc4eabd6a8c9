"""The I/O edge of the trends: every run folder under a root, as two DataFrames.

``load_history(root)`` reads each run's ``results.json``, re-verifies the whole
root once with :func:`flows.evidence.verify` and returns :class:`History`:
``runs`` (one row per run folder) and ``drills`` (one row per drill execution),
in the shape :mod:`flows.trends` documents. A run that fails verification, is
incomplete, or whose ``results.json`` cannot be read is kept and flagged
(``verified`` False, ``problems`` saying why), never dropped.

``cmd_trends`` is the ``python -m flows trends`` handler.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from flows.errors import EvidenceError
from flows.evidence import list_runs, load_results, verify
from flows.trends import maths as trends

__all__ = ["History", "cmd_trends", "load_history", "now_utc", "trends_table"]

log = logging.getLogger("flows.trends.history")

_RUN_COLUMNS = {
    "run_id": "str",
    "path": "str",
    "started_at": "datetime64[us, UTC]",
    "finished_at": "datetime64[us, UTC]",
    "night": "datetime64[us, UTC]",
    "status": "str",
    "verdict": "str",
    "verified": "bool",
    "problems": "str",
    "command": "str",
    "scope": "str",
    "failed": "str",
}
_DRILL_COLUMNS = {
    "run_id": "str",
    "started_at": "datetime64[us, UTC]",
    "night": "datetime64[us, UTC]",
    "drill": "str",
    "status": "str",
    "duration_s": "float64",
    "summary": "str",
    "log": "str",
    "metric": "float64",
    "verified": "bool",
}


@dataclass(frozen=True)
class History:
    """Every run under ``root``: ``runs`` (per folder) and ``drills`` (per drill execution)."""

    root: Path
    runs: pd.DataFrame
    drills: pd.DataFrame
    problems: tuple[str, ...] = ()  # verify problems that name no run folder


def now_utc() -> pd.Timestamp:
    return pd.Timestamp(datetime.now(UTC))


def _stamp(value: Any, fallback: str) -> pd.Timestamp | None:
    """A UTC timestamp from an ISO string; from the folder name when missing or bad."""
    for candidate in (value, fallback):
        if not isinstance(candidate, str) or not candidate:
            continue
        try:
            stamp = pd.Timestamp(candidate)
        except ValueError:
            continue
        return stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
    return None


def _name_time(run_id: str) -> str:
    m = re.search(r"(\d{8})-(\d{6})", run_id)
    return f"{m.group(1)}T{m.group(2)}" if m else ""


def _metric(drill_id: str, metrics: Any) -> float:
    value = metrics.get(trends.KEY_METRICS.get(drill_id, "")) if isinstance(metrics, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return float("nan")
    return float(value)


def _attribute(
    report_lines: list[str], run_ids: list[str]
) -> tuple[dict[str, list[str]], list[str]]:
    """Map verify's messages (``<run_id>: …``) to their run; the rest are root-wide."""
    by_run: dict[str, list[str]] = {}
    stray: list[str] = []
    known = set(run_ids)
    for line in report_lines:
        head = line.split(":", 1)[0].strip()
        if head in known:
            by_run.setdefault(head, []).append(line)
        else:
            stray.append(line)
    return by_run, stray


def load_history(root: Path, *, check: bool = True) -> History:
    """Read every run folder under ``root``; ``check=False`` skips the (hashing) verify step."""
    root = Path(root)
    folders = list_runs(root)
    run_ids = [p.name for p in folders]
    broken: dict[str, list[str]] = {}
    stray: list[str] = []
    incomplete: set[str] = set()
    if check and folders:
        report = verify(root)
        broken, stray = _attribute(report.problems, run_ids)
        incomplete = set(report.incomplete)
    run_rows: list[dict[str, Any]] = []
    drill_rows: list[dict[str, Any]] = []
    for folder in folders:
        run_id = folder.name
        problems = list(broken.get(run_id, []))
        try:
            results = load_results(folder)
        except EvidenceError as exc:
            log.warning("history.unreadable run=%s reason=%s", run_id, exc)
            results = {"status": "unreadable", "drills": []}
            problems.append(str(exc))
        started = _stamp(results.get("started_at"), _name_time(run_id))
        status = str(results.get("status") or "unknown")
        if run_id in incomplete and status == "complete":
            status = "incomplete"
        verified = check and not problems and status == "complete"
        if not check:
            problems.append("not verified (loaded with check=False)")
        entries = [d for d in results.get("drills") or [] if isinstance(d, dict)]
        night = started.normalize() if started is not None else None
        for entry in entries:
            drill_id = str(entry.get("id") or "?")
            duration = entry.get("duration_s")
            drill_rows.append(
                {
                    "run_id": run_id,
                    "started_at": started,
                    "night": night,
                    "drill": drill_id,
                    "status": str(entry.get("status") or "incomplete"),
                    "duration_s": float(duration) if isinstance(duration, int | float) else None,
                    "summary": str(entry.get("summary") or ""),
                    "log": str(entry.get("log") or ""),
                    "metric": _metric(drill_id, entry.get("metrics")),
                    "verified": verified,
                }
            )
        run_rows.append(
            {
                "run_id": run_id,
                "path": str(folder),
                "started_at": started,
                "finished_at": _stamp(results.get("finished_at"), ""),
                "night": night,
                "status": status,
                "verdict": results.get("verdict") or "",
                "verified": verified,
                "problems": "\n".join(problems),
                "command": str(results.get("command") or ""),
                "scope": ",".join(str(e.get("id")) for e in entries),
                "failed": ",".join(
                    str(e.get("id")) for e in entries if e.get("status") in ("fail", "error")
                ),
            }
        )
    runs = _frame(run_rows, _RUN_COLUMNS)
    drills = _frame(drill_rows, _DRILL_COLUMNS)
    # A run with no readable time cannot be placed on a night; keep it in `runs` only.
    drills = drills[drills["started_at"].notna()].reset_index(drop=True)
    return History(root=root, runs=runs, drills=drills, problems=tuple(stray))


def _frame(rows: list[dict[str, Any]], columns: dict[str, str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(columns))
    return frame.astype(columns)


def trends_table(history: History, now: pd.Timestamp | None = None) -> pd.DataFrame:
    """The per-drill trends table, ready to print or render."""
    now = now_utc() if now is None else now
    runs = history.runs[history.runs["night"].notna()]
    return trends.drill_summary(runs, history.drills, now, until=_last_night(now))


def _last_night(now: pd.Timestamp) -> pd.Timestamp:
    """The newest night that should have a run: yesterday (tonight's may not have started)."""
    return (now - pd.Timedelta(days=1)).normalize()


def _fmt_rate(x: float) -> str:
    return "—" if pd.isna(x) else f"{x:.0%}"


def _fmt_age(x: pd.Timedelta) -> str:
    if pd.isna(x):
        return "never"
    hours = x.total_seconds() / 3600
    return f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.0f} d"


def format_table(table: pd.DataFrame) -> pd.DataFrame:
    """Human-readable strings for each figure of :func:`trends_table`."""
    return pd.DataFrame(
        {
            "latest": table["latest_status"].str.upper(),
            "run": table["latest_run"].fillna("—"),
            "pass 7": table["pass_7"].map(_fmt_rate),
            "pass 30": table["pass_30"].map(_fmt_rate),
            "pass all": table["pass_all"].map(_fmt_rate),
            "streak": [
                "—" if pd.isna(n) else f"{int(n)} {'pass' if ok else 'fail'}"
                for n, ok in zip(table["streak"], table["streak_passing"], strict=True)
            ],
            "flips": table["flips"].astype("str"),
            "regressions": table["regressions"].astype("str"),
            "fresh": table["freshness"].map(_fmt_age),
            "gaps": table["gaps"].astype("str"),
        },
        index=table.index,
    )


def cmd_trends(args: Any) -> int:
    """``python -m flows trends --artifacts ROOT``: the per-drill table in the terminal."""
    root = Path(args.artifacts)
    try:
        history = load_history(root)
    except EvidenceError as exc:
        print(exc, file=sys.stderr)
        return 2
    if history.runs.empty:
        print(
            f"trends: no run folders (chaos-drill-*) under {root}; "
            "run `python -m flows run` or `python -m flows synth` first",
            file=sys.stderr,
        )
        return 2
    table = trends_table(history)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(format_table(table).to_string())
    runs = history.runs
    flagged = runs[~runs["verified"]]
    print(
        f"\n{len(runs)} run(s) under {root}, {int(runs['status'].eq('incomplete').sum())} "
        f"incomplete, {len(flagged)} not verified"
    )
    for row in flagged.itertuples():
        reason = row.problems.splitlines()[0] if row.problems else f"status {row.status}"
        print(f"  flagged {row.run_id}: {reason}")
    for line in history.problems:
        print(f"  {line}")
    return 0
