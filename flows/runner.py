"""Run drills into one run folder: the one drill loop, used by the CLI, the shell script and the flow.

``run_drills`` is the whole job without Prefect: clean up what dead runs left,
open the run folder, run each drill against its own supervisor, record each
result the moment it is known, then seal the folder (junit, manifest, chain).
The Prefect flow (:mod:`flows.pipeline.nightly`) runs the same loop,
:func:`run_loop`, with each drill's :func:`run_one` inside a task of its own.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flows.drills import DrillOptions, kill_leftovers, run_drill
from flows.drills._log import DrillLog
from flows.drills.context import CHOSEN_BY
from flows.errors import FlowsError, SetupError
from flows.evidence import RunWriter, new_run_dir
from flows.registry import check_ids, key_metric
from flows.trends.formatting import metric

__all__ = [
    "OneDrill",
    "drill_options",
    "open_run",
    "prepare",
    "record_error",
    "run_drills",
    "run_loop",
    "run_one",
    "summary_rows",
    "summary_table",
]

Progress = Callable[[str], None]
# How the loop runs one drill: directly (run_one) or inside a Prefect task.
OneDrill = Callable[[RunWriter, str, DrillOptions], dict[str, Any]]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def summary_rows(results: dict[str, Any]) -> list[dict[str, str]]:
    """One row per drill: ``drill``, ``status``, ``duration``, ``key metric`` (terminal, Prefect)."""
    rows = []
    for d in results.get("drills", []):
        duration = d.get("duration_s")
        rows.append(
            {
                "drill": d["id"],
                "status": d.get("status", "?").upper(),
                "duration": "-" if duration is None else f"{duration:.2f}s",
                "key metric": metric(d["id"], key_metric(d["id"], d.get("metrics")), sep="="),
            }
        )
    return rows


def summary_table(results: dict[str, Any]) -> str:
    """:func:`summary_rows` as an aligned plain-text table."""
    head = ("drill", "status", "duration", "key metric")
    rows = [head] + [tuple(r[c] for c in head) for r in summary_rows(results)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def prepare(options: DrillOptions, progress: Progress) -> None:
    """Before a run folder exists: fail on an unreadable config or an unknown program,
    say which program the drills target, kill what dead runs left."""
    name, chosen_by = options.target()
    known = ", ".join(options.program_names())
    progress(f"drilling program {name} ({CHOSEN_BY[chosen_by]}); programs: {known}")
    kill_leftovers(progress)


def open_run(run_dir: Path, ids: list[str], options: DrillOptions, command: str) -> RunWriter:
    """The writer of a new run of ``ids`` in ``run_dir``; it records the target program."""
    config = str(options.config) if options.config else None
    name, chosen_by = options.target()
    program = {"name": name, "chosen_by": chosen_by}
    return RunWriter(run_dir, drills=ids, command=command, config=config, program=program)


def run_one(writer: RunWriter, drill_id: str, options: DrillOptions) -> dict[str, Any]:
    """Run one drill against a fresh supervisor and record it; the entry of ``results.json``."""
    result = run_drill(drill_id, writer.log_path(drill_id), options).to_dict()
    writer.record(result)
    return result


def record_error(writer: RunWriter, drill_id: str, message: str) -> dict[str, Any]:
    """Record ``drill_id`` as ``error`` when its run never returned (a crash, a timeout).

    The log gets a final FAIL line unless the drill already wrote one (an
    interrupted drill closes its own log), so the entry's summary is always the
    log's last line.
    """
    log_path = writer.log_path(drill_id)
    last = ""
    if log_path.exists():
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        last = lines[-1].split(" ", 1)[-1] if lines else ""
    if last.startswith("FAIL: "):
        summary = last
    else:
        dlog = DrillLog(log_path)
        summary = dlog.finish(False, message)
        dlog.close()
    return writer.record({"id": drill_id, "status": "error", "summary": summary})


def run_loop(
    writer: RunWriter,
    ids: list[str],
    options: DrillOptions,
    progress: Progress = _stderr,
    one: OneDrill = run_one,
) -> dict[str, Any]:
    """Run ``ids`` one at a time (they share the CPU and measure latency), then seal the run."""
    progress(f"run {writer.run_id}: {len(ids)} drill(s) into {writer.run_dir}")
    for i, drill_id in enumerate(ids, 1):
        progress(f"[{i}/{len(ids)}] {drill_id} ...")
        result = one(writer, drill_id, options)
        duration = result.get("duration_s")
        took = "" if duration is None else f" in {duration:.2f}s"
        progress(
            f"[{i}/{len(ids)}] {drill_id} {result['status'].upper()}{took}: {result['summary']}"
        )
    return writer.finalize()


def run_drills(
    run_dir: Path,
    drill_ids: list[str] | None = None,
    options: DrillOptions | None = None,
    command: str | None = None,
    progress: Progress = _stderr,
) -> dict[str, Any]:
    """Run the drills into ``run_dir`` and seal it; return the final results."""
    ids = check_ids(drill_ids)
    options = options or DrillOptions()
    prepare(options, progress)
    writer = open_run(run_dir, ids, options, command or shlex.join(sys.argv))
    return run_loop(writer, ids, options, progress)


def config_path(value: str | None) -> Path | None:
    """``--config``/``config`` as a path; :class:`SetupError` when it names no file."""
    if not value:
        return None
    config = Path(value)
    if not config.is_file():
        raise SetupError(f"--config {config}: no such file; pass a supervisor TOML config")
    return config


def drill_options(config: str | None, program: str | None) -> DrillOptions:
    """``--config`` and ``--program`` as options, checked: :class:`SetupError` for a missing
    config, :class:`DrillSetupError` for an unreadable one or an unknown program."""
    options = DrillOptions(config=config_path(config), program=program or None)
    options.target()
    return options


def cmd_run(args: argparse.Namespace) -> int:
    """``python -m flows run``: 0 every drill passed, 1 one did not, 2 usage or environment."""
    try:
        ids = check_ids(args.drills)
        options = drill_options(args.config, args.program)
        run_dir = Path(args.run_dir) if args.run_dir else new_run_dir(Path(args.artifacts))
        results = run_drills(run_dir, ids, options, command=args.command_line)
    except FlowsError as exc:
        print(f"flows run: {exc}", file=sys.stderr)
        return 2
    print(summary_table(results))
    print(f"\nverdict: {results['verdict'].upper()}   run folder: {run_dir}")
    print(f"verify:  python -m flows verify {run_dir}")
    return 0 if results["verdict"] == "pass" else 1
