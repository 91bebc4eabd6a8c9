"""``sigterm``: SIGTERM the supervisor; it must exit and leave no workload process."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from flows.drills.context import DrillContext
from flows.drills.harness import wait_for

EXIT_GRACE_S = 0.2  # zombies aside, nothing may be alive this long after the exit


def run(ctx: DrillContext) -> tuple[bool, str]:
    sup = ctx.supervisor()
    before = sup.workload()
    ctx.log.tree("before SIGTERM", before)
    ctx.metrics["workload_before"] = len(before)
    stop_timeout = max(float(p.get("stop_timeout", 5.0)) for p in ctx.options.programs())
    ctx.log.line(f"send SIGTERM to supervisor pid={sup.pid}")
    sent = time.monotonic()
    sup.signal(signal.SIGTERM)
    try:
        status = sup.wait_exit(stop_timeout + 10.0)
    except subprocess.TimeoutExpired:
        ctx.log.tree("supervisor still running", sup.workload())
        return (
            False,
            f"supervisor pid {sup.pid} still running {stop_timeout + 10:.0f}s after SIGTERM",
        )
    exit_ms = round((time.monotonic() - sent) * 1000, 1)
    ctx.metrics["supervisor_exit_ms"] = exit_ms
    ctx.metrics["exit_status"] = status
    ctx.log.line(f"supervisor exited with status {status} after {exit_ms} ms")
    wait_for(lambda: not sup.workload(), EXIT_GRACE_S)
    after = sup.workload()
    ctx.log.tree("after supervisor exit", after)
    ctx.metrics["survivors"] = len(after)
    if after:
        return False, (
            f"{len(after)} orphan workload process(es) after parent SIGTERM:"
            f" {sorted(p.pid for p in after)}"
        )
    states = _recorded_states(sup.db)
    ctx.log.line(f"states recorded in the DB after exit: {states}")
    names = [str(p["name"]) for p in ctx.options.programs()]
    unstopped = {n: states.get(n) for n in names if states.get(n) != "stopped"}
    if unstopped:
        return False, f"supervisor exited without recording its programs stopped: {unstopped}"
    return True, "no orphan worker after parent SIGTERM"


def _recorded_states(db: Path) -> dict[str, str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT name, status FROM processes ORDER BY id").fetchall()
    finally:
        conn.close()
    return {name: status for name, status in rows}
