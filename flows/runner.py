"""Run drills into one run folder: used by the shell script, the CLI and the flow.

``run_drills`` is the whole job without Prefect: clean up what dead runs left,
open the run folder, run each drill against its own supervisor, record each
result the moment it is known, then seal the folder (junit, manifest, chain).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flows.drills import KEY_METRICS, DrillOptions, check_ids, kill_leftovers, run_drill
from flows.errors import FlowsError
from flows.evidence import RunWriter, new_run_dir

Progress = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def key_metric(drill: dict[str, Any]) -> str:
    name = KEY_METRICS.get(drill.get("id", ""), "")
    value = (drill.get("metrics") or {}).get(name)
    if value is None:
        return "-"
    return f"{name}={value:g}" if isinstance(value, int | float) else f"{name}={value}"


def summary_table(results: dict[str, Any]) -> str:
    rows = [("drill", "status", "duration", "key metric")]
    for d in results.get("drills", []):
        duration = d.get("duration_s")
        rows.append(
            (
                d["id"],
                d.get("status", "?").upper(),
                "-" if duration is None else f"{duration:.2f}s",
                key_metric(d),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


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
    if options.config is not None:
        options.programs()  # fail early, before a run folder exists, on an unreadable config
    kill_leftovers(progress)
    writer = RunWriter(
        run_dir,
        drills=ids,
        command=command or shlex.join(sys.argv),
        config=str(options.config) if options.config else None,
    )
    progress(f"run {writer.run_id}: {len(ids)} drill(s) into {writer.run_dir}")
    for i, drill_id in enumerate(ids, 1):
        progress(f"[{i}/{len(ids)}] {drill_id} ...")
        result = run_drill(drill_id, writer.log_path(drill_id), options).to_dict()
        writer.record(result)
        progress(
            f"[{i}/{len(ids)}] {drill_id} {result['status'].upper()} in"
            f" {result['duration_s']:.2f}s: {result['summary']}"
        )
    return writer.finalize()


def cmd_run(args: argparse.Namespace) -> int:
    try:
        ids = check_ids(args.drills)
        config = Path(args.config) if args.config else None
        if config is not None and not config.is_file():
            raise FlowsError(f"--config {config}: no such file")
        run_dir = Path(args.run_dir) if args.run_dir else new_run_dir(Path(args.artifacts))
        results = run_drills(run_dir, ids, DrillOptions(config=config), command=args.command_line)
    except FlowsError as exc:
        print(f"flows run: {exc}", file=sys.stderr)
        return 2
    print(summary_table(results))
    print(f"\nverdict: {results['verdict'].upper()}   run folder: {run_dir}")
    print(f"verify:  python -m flows verify {run_dir}")
    return 0 if results["verdict"] == "pass" else 1
