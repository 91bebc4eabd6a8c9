"""Soak: the whole drill suite N times back to back with every core busy.

    .venv/bin/python benchmarks/soak.py --runs 50

One busy-loop process per core loads the machine; each run writes a full run
folder under a temporary evidence root (kept with --keep). Prints runs, drill
executions, passes, failures with their FAIL lines, and per-drill p50/p95 of
the key metric. Target: 50 runs, 350 drill executions, zero failures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows.drills import DrillOptions  # noqa: E402
from flows.evidence import new_run_dir, verify  # noqa: E402
from flows.registry import KEY_METRICS, key_metric  # noqa: E402
from flows.runner import run_drills  # noqa: E402
from flows.trends.stats import percentile  # noqa: E402

BUSY = "import signal, sys; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\nwhile True: pass"


def main(runs: int = 50, keep: bool = False, load: bool = True) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="soak-"))
    busy = []
    if load:
        busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(os.cpu_count() or 1)]
    per_drill: dict[str, list[float]] = defaultdict(list)
    failures: list[str] = []
    executions = passes = 0
    started = time.monotonic()
    try:
        for i in range(1, runs + 1):
            run_dir = new_run_dir(root)
            t0 = time.monotonic()
            results = run_drills(
                run_dir, None, DrillOptions(), command=f"soak run {i}", progress=lambda m: None
            )
            for d in results["drills"]:
                executions += 1
                if d["status"] == "pass":
                    passes += 1
                else:
                    failures.append(f"run {i} {d['id']}: {d['summary']}")
                value = key_metric(d["id"], d.get("metrics"))
                if value is not None:
                    per_drill[d["id"]].append(value)
            print(
                f"run {i}/{runs}: {results['verdict']} in {time.monotonic() - t0:.1f} s"
                f" ({passes}/{executions} passes so far)",
                flush=True,
            )
        chain_ok = verify(root).ok
    finally:
        for p in busy:
            p.send_signal(signal.SIGTERM)
        for p in busy:
            p.wait()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    wall = time.monotonic() - started
    print(
        f"\nsoak: {runs} runs, {executions} drill executions, {passes} passes,"
        f" {len(failures)} failures, {wall:.0f} s wall, {len(busy)} busy cores,"
        f" chain verified: {chain_ok}" + (f", kept in {root}" if keep else "")
    )
    for line in failures:
        print(f"  FAIL {line}")
    print(f"\n{'drill':<16} {'key metric':<20} {'p50':>10} {'p95':>10}")
    for drill_id, metric in KEY_METRICS.items():
        values = per_drill.get(drill_id, [])
        print(
            f"{drill_id:<16} {metric:<20} {percentile(values, 0.5):>10.1f}"
            f" {percentile(values, 0.95):>10.1f}"
        )
    return {
        "soak_runs": runs,
        "soak_executions": executions,
        "soak_failures": len(failures),
        "soak_wall_s": round(wall, 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="soak the drill suite under CPU load")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="keep the evidence root")
    parser.add_argument("--no-load", action="store_true", help="skip the busy loops")
    args = parser.parse_args()
    figures = main(args.runs, args.keep, not args.no_load)
    sys.exit(1 if figures["soak_failures"] else 0)
