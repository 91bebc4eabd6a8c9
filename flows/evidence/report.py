"""``EVIDENCE.md``: the run's own evidence document, written from ``results.json``.

The shape reliability teams publish per drill run: date, owner, the exact
command, the artifact directory, the scope; one section per drill with its
status, log and final log line; the findings (every non-pass with its FAIL
line, whatever weakens a claim, what changed since the previous run); and a
conclusion that never says PASS when a drill did not pass. It is a signed
subject like every other file of the run.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any

from flows.evidence.atomic import write_atomic
from flows.evidence.layout import REPORT
from flows.registry import DRILL_IDS

__all__ = ["OWNER_ENV", "default_owner", "render_report", "write_report"]

OWNER_ENV = "EVIDENCE_OWNER"  # --owner puts it here


def default_owner() -> str:
    """``$EVIDENCE_OWNER`` (``--owner``), else the user this runs as."""
    given = os.environ.get(OWNER_ENV, "").strip()
    if given:
        return given
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for this uid (containers)
        return f"uid {os.getuid()}"


def _last_line(log: Path) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
            tail = f.read().decode("utf-8", "replace").strip().splitlines()
    except OSError as exc:
        return f"(log unreadable: {exc.strerror or exc})"
    return tail[-1] if tail else "(empty log)"


def _changes(results: dict[str, Any], previous: dict[str, Any] | None) -> list[str]:
    if previous is None:
        return ["First run in this log: nothing to compare with."]
    where = f"since {previous.get('run_id')}"
    lines = []
    before = {d.get("id"): d.get("status") for d in previous.get("drills", [])}
    for d in results.get("drills", []):
        old = before.get(d["id"])
        if old is None:
            lines.append(f"`{d['id']}` was not in the previous run's scope ({where}).")
        elif old != d["status"]:
            lines.append(f"`{d['id']}` went from {old} to {d['status']} {where}.")
    dropped = [i for i in before if i not in {d["id"] for d in results.get("drills", [])}]
    if dropped:
        lines.append(f"Dropped from scope {where}: {', '.join(f'`{i}`' for i in dropped)}.")
    for key, what in (("git_commit", "drill code commit"), ("config", "supervisor config")):
        if previous.get(key) != results.get(key):
            lines.append(f"The {what} changed {where}: {previous.get(key)} → {results.get(key)}.")
    if previous.get("criteria_sha256") not in (None, results.get("criteria_sha256")):
        lines.append(f"The sealed criteria differ {where} (see criteria.json).")
    return lines or [f"No change in scope, statuses, code or config {where}."]


def _containment(drills: list[dict[str, Any]]) -> list[str]:
    """Findings for passes that lean on weaker containment than a cgroup."""
    found = []
    for kind, why in (
        (
            "session",
            "contained by session, not cgroup: a process that leaves its session escapes "
            "the supervisor's kill, so these passes are weaker claims",
        ),
        (
            "unknown",
            "run under containment their supervisor did not report (/healthz gave none): "
            "these passes do not show a process tree was contained",
        ),
    ):
        ids = [
            d["id"] for d in drills if d.get("status") == "pass" and d.get("containment") == kind
        ]
        if ids:
            found.append(f"Passed but {why}: {', '.join(f'`{i}`' for i in ids)}.")
    return found


def render_report(run_dir: Path, results: dict[str, Any], previous: dict[str, Any] | None) -> str:
    """The Markdown of ``EVIDENCE.md``."""
    drills = results.get("drills", [])
    bad = [d for d in drills if d.get("status") != "pass"]
    missing = [i for i in DRILL_IDS if i not in {d.get("id") for d in drills}]
    verdict = "PASS" if results.get("verdict") == "pass" and not bad else "FAIL"
    if results.get("status") != "complete":
        verdict = "INCOMPLETE (counts as FAIL)"
    out = [
        f"# Drill evidence: {results.get('run_id', run_dir.name)}",
        "",
        f"- **Date:** {results.get('started_at')} to {results.get('finished_at') or 'not finished'}",
        f"- **Owner:** {results.get('owner') or default_owner()}",
        f"- **Drill command:** `{results.get('command')}`",
        f"- **Artifact directory:** `{run_dir}`",
        f"- **Scope:** {len(drills)} drill(s): {', '.join(d['id'] for d in drills) or 'none'}",
        f"- **Host:** {results.get('host', {}).get('hostname')}, commit `{results.get('git_commit')}`",
        f"- **Criteria:** `criteria.json`, sha256 `{results.get('criteria_sha256')}`",
        f"- **Verdict:** {verdict}",
        "",
        "## Drills",
        "",
    ]
    for d in drills:
        log = run_dir / str(d.get("log") or f"drill_{d['id']}.log")
        final = _last_line(log) if log.exists() else "(no log: the drill never started)"
        out += [f"### {d['id']}: {str(d.get('status')).upper()}", ""]
        if d.get("containment"):
            out.append(f"- containment: {d['containment']}")
        out += [f"- log: `{log.name}`", f"- final log line: `{final}`", ""]
    findings = [f"`{d['id']}` {d.get('status')}: `{d.get('summary')}`" for d in bad]
    if missing:
        findings.append(
            f"Not in scope, so this run says nothing about: {', '.join(f'`{m}`' for m in missing)}."
        )
    findings += _containment(drills)
    if results.get("synthetic"):
        findings.append("This run is synthetic (made up for demos and benchmarks).")
    findings += _changes(results, previous)
    out += ["## Findings", ""] + [f"- {f}" for f in findings] + ["", "## Conclusion", ""]
    passed = len(drills) - len(bad)
    if verdict == "PASS":
        conclusion = f"All {len(drills)} drill(s) in scope passed against the sealed criteria" + (
            f"; {len(missing)} drill(s) were out of scope." if missing else "."
        )
    elif results.get("status") != "complete":
        conclusion = (
            f"The run did not finish: {passed} of {len(drills)} drill(s) passed before it "
            "stopped, so it does not show the supervisor survives the drills in scope."
        )
    else:
        conclusion = (
            f"{len(bad)} of {len(drills)} drill(s) did not pass "
            f"({', '.join(d['id'] for d in bad)}); the run does not show the supervisor "
            "survives these failure paths until they pass."
        )
    out += [conclusion, ""]
    return "\n".join(out)


def write_report(
    run_dir: Path, results: dict[str, Any], previous: dict[str, Any] | None, *, durable: bool
) -> None:
    write_atomic(
        run_dir / REPORT, render_report(run_dir, results, previous).encode(), durable=durable
    )
