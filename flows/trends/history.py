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
from typing import TYPE_CHECKING, Any

import pandas as pd

from flows.errors import EvidenceError
from flows.evidence import list_runs, load_results, verify
from flows.evidence.layout import CRITERIA, read_json
from flows.registry import key_metric
from flows.trends import formatting as fmt
from flows.trends import maths as trends

if TYPE_CHECKING:
    from flows.evidence.memo import VerifyMemo

__all__ = [
    "History",
    "broken_runs",
    "cmd_trends",
    "format_table",
    "load_history",
    "now_utc",
    "trends_table",
]

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
    "synthetic": "bool",
    "host": "str",
    "git_commit": "str",
    "versions": "str",
    "config": "str",  # the config's sha256 sealed in criteria.json, else its path
    "program": "str",
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
    "containment": "str",
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


_DRILL_FIELDS = ("drill", "status", "duration_s", "summary", "log", "metric", "containment")


def _drill_fields(entry: dict[str, Any]) -> list[Any]:
    """What a ``drills`` row takes from one drill entry of ``results.json``: the values of
    ``_DRILL_FIELDS`` (JSON values, a list: the memo keeps thousands)."""
    drill_id = str(entry.get("id") or "?")
    duration = entry.get("duration_s")
    return [
        drill_id,
        str(entry.get("status") or "incomplete"),
        float(duration) if isinstance(duration, int | float) else None,
        str(entry.get("summary") or ""),
        str(entry.get("log") or ""),
        key_metric(drill_id, entry.get("metrics")),
        # issue 10: "cgroup" | "session"; empty on runs written before it existed
        str(entry.get("containment") or ""),
    ]


def _dict(value: object) -> dict[str, Any]:
    """``value`` when it is a JSON object, else empty: a damaged results.json still loads."""
    return value if isinstance(value, dict) else {}


def _config_digest(folder: Path, path: str) -> str:
    """The sha256 of the supervisor config sealed in the run's criteria.json; the config's
    path for a run without one (older than criteria, or damaged: verify reports that)."""
    if not (folder / CRITERIA).is_file():
        return path
    try:
        sealed, _ = read_json(folder / CRITERIA)
    except EvidenceError:
        return path
    digest = _dict(_dict(sealed).get("supervisor_config")).get("sha256")
    return digest if isinstance(digest, str) and digest else path


def _summary(folder: Path) -> dict[str, Any]:
    """What the rows take from one run folder alone, as JSON values (the site keeps it
    between publishes, :mod:`flows.evidence.memo`); ``error`` when results.json is
    unreadable."""
    error = None
    try:
        results = load_results(folder)
    except EvidenceError as exc:
        results = {"status": "unreadable", "drills": []}
        error = str(exc)
    entries = [d for d in results.get("drills") or [] if isinstance(d, dict)]
    return {
        "error": error,
        "started_at": results.get("started_at"),
        "finished_at": results.get("finished_at"),
        "status": str(results.get("status") or "unknown"),
        "verdict": results.get("verdict") or "",
        "command": str(results.get("command") or ""),
        "scope": ",".join(str(e.get("id")) for e in entries),
        "failed": ",".join(
            str(e.get("id")) for e in entries if e.get("status") in ("fail", "error")
        ),
        "synthetic": results.get("synthetic") is True,
        "host": str(_dict(results.get("host")).get("hostname") or ""),
        "git_commit": str(results.get("git_commit") or ""),
        "versions": ", ".join(
            f"{k} {v}" for k, v in sorted(_dict(results.get("versions")).items())
        ),
        "config": _config_digest(folder, str(results.get("config") or "")),
        "program": str(results.get("program") or ""),
        "drills": [_drill_fields(e) for e in entries],
    }


def _read_run(
    folder: Path, problems: list[str], incomplete: bool, check: bool, summary: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """One run folder's :func:`_summary` as its ``runs`` row and its ``drills`` rows (by
    column: a history holds tens of thousands); ``problems`` is extended."""
    run_id = folder.name
    if summary["error"] is not None:
        log.warning("history.unreadable run=%s reason=%s", run_id, summary["error"])
        problems.append(summary["error"])
    started = _stamp(summary["started_at"], _name_time(run_id))
    night = started.normalize() if started is not None else None
    status = summary["status"]
    if incomplete and status == "complete":
        status = "incomplete"
    verified = check and not problems and status == "complete"
    if not check:
        problems.append("not verified (loaded with check=False)")
    run_row = {
        "run_id": run_id,
        "path": str(folder),
        "started_at": started,
        "finished_at": _stamp(summary["finished_at"], ""),
        "night": night,
        "status": status,
        "verdict": summary["verdict"],
        "verified": verified,
        "problems": "\n".join(problems),
        **{k: summary[k] for k in _FROM_SUMMARY},
    }
    drills = summary["drills"]
    if any(len(fields) != len(_DRILL_FIELDS) for fields in drills):
        raise ValueError(f"{run_id}: a drill row of another shape")
    columns: dict[str, list[Any]] = {
        name: list(values)
        for name, values in zip(_DRILL_FIELDS, zip(*drills))  # noqa: B905
    }
    n = len(drills)
    columns |= {
        "run_id": [run_id] * n,
        "started_at": [started] * n,
        "night": [night] * n,
        "verified": [verified] * n,
    }
    columns["metric"] = [float("nan") if m is None else m for m in columns.get("metric", [])]
    return run_row, columns


_FROM_SUMMARY = (
    "command",
    "scope",
    "failed",
    "synthetic",
    "host",
    "git_commit",
    "versions",
    "config",
    "program",
)


def load_history(root: Path, *, check: bool = True, memo: VerifyMemo | None = None) -> History:
    """Read every run folder under ``root``; ``check=False`` skips the (hashing) verify step.
    ``memo`` (the evidence site's) skips the per-run work on folders unchanged since the
    last publish: see :mod:`flows.evidence.memo`."""
    root = Path(root)
    folders = list_runs(root)
    broken: dict[str, list[str]] = {}
    stray: list[str] = []
    incomplete: set[str] = set()
    if check and folders:
        report = verify(root, memo=memo)
        broken, stray = _attribute(report.problems, [p.name for p in folders])
        incomplete = set(report.incomplete)
    kept = memo.root(root) if memo is not None and check else None
    run_rows: list[dict[str, Any]] = []
    drill_columns: dict[str, list[Any]] = {name: [] for name in _DRILL_COLUMNS}
    for folder in folders:
        problems = list(broken.get(folder.name, []))
        entry = kept.get(folder) if kept is not None else None
        summary = entry.get("rows") if entry is not None else None
        read = None
        if isinstance(summary, dict):
            try:
                read = _read_run(folder, list(problems), folder.name in incomplete, check, summary)
            except (TypeError, KeyError, ValueError):  # another shape: read again below
                summary = None
        if read is None or summary is None:
            summary = _summary(folder)
            read = _read_run(folder, problems, folder.name in incomplete, check, summary)
        if kept is not None:
            kept.put(folder, rows=summary)
        run_row, columns = read
        run_rows.append(run_row)
        for name, values in columns.items():
            drill_columns[name] += values
    runs = _frame(run_rows, _RUN_COLUMNS)
    drills = _frame(drill_columns, _DRILL_COLUMNS)
    # A run with no readable time cannot be placed on a night; keep it in `runs` only.
    drills = drills[drills["started_at"].notna()].reset_index(drop=True)
    return History(root=root, runs=runs, drills=drills, problems=tuple(stray))


def _frame(
    rows: list[dict[str, Any]] | dict[str, list[Any]], columns: dict[str, str]
) -> pd.DataFrame:
    """Rows (dicts), or columns (lists), as a frame of ``columns``' types."""
    frame = pd.DataFrame(rows, columns=list(columns))
    return frame.astype(columns)


def trends_table(
    history: History, now: pd.Timestamp | None = None, hours: float = fmt.WINDOW_HOURS
) -> pd.DataFrame:
    """The per-drill trends table, ready to print or render; ``hours`` is the schedule's
    window (a night is missed once it has passed)."""
    now = now_utc() if now is None else now
    runs = history.runs[history.runs["night"].notna()]
    return trends.drill_summary(runs, history.drills, now, until=fmt.last_night(now, hours))


def format_table(table: pd.DataFrame) -> pd.DataFrame:
    """Human-readable strings for each figure of :func:`trends_table`."""
    return pd.DataFrame(
        {
            "latest": table["latest_status"].str.upper(),
            "run": table["latest_run"].fillna(fmt.NONE),
            "pass 7": table["pass_7"].map(fmt.rate),
            "pass 30": table["pass_30"].map(fmt.rate),
            "pass all": table["pass_all"].map(fmt.rate),
            "streak": [
                fmt.streak(n, ok)
                for n, ok in zip(table["streak"], table["streak_passing"], strict=True)
            ],
            "flips": table["flips"].astype("str"),
            "regressions": table["regressions"].astype("str"),
            "fresh": table["freshness"].map(fmt.age),
            "gaps": table["gaps"].astype("str"),
        },
        index=table.index,
    )


def broken_runs(history: History) -> list[str]:
    """Ids of runs whose evidence does not verify (incomplete runs are not broken)."""
    runs = history.runs
    return runs.loc[runs["problems"].ne("") & ~runs["verified"], "run_id"].tolist()


def cmd_trends(args: Any) -> int:
    """``python -m flows trends --artifacts ROOT``: the per-drill table in the terminal.

    Exit 0 with the table, 1 with the table when some evidence does not verify,
    2 when the root cannot be read or holds no run folder.
    """
    root = Path(args.artifacts)
    try:
        history = load_history(root)
    except EvidenceError as exc:
        print(f"flows trends: {exc}", file=sys.stderr)
        return 2
    if history.runs.empty:
        print(
            f"flows trends: no run folders (chaos-drill-*) under {root}; "
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
    for run_id, status, problems in zip(
        flagged["run_id"], flagged["status"], flagged["problems"], strict=True
    ):
        reason = problems.splitlines()[0] if problems else f"status {status}"
        print(f"  flagged {run_id}: {reason}")
    for line in history.problems:
        print(f"  {line}")
    return 1 if broken_runs(history) or history.problems else 0


HOSTS_DIR = "hosts"


def host_roots(root: Path) -> dict[str, Path]:
    """The artifacts roots to publish, by host name.

    A root that holds ``hosts/<hostname>/`` folders (several hosts writing to
    one store) gives one root per host, each a normal artifacts root; any other
    root is one host with no name (``""``), exactly as before hosts existed.
    """
    hosts = Path(root) / HOSTS_DIR
    if hosts.is_dir():
        found = {p.name: p for p in sorted(hosts.iterdir()) if p.is_dir()}
        if found:
            return found
    return {"": Path(root)}
