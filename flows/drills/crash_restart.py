"""``crash_restart``: a worker killed from outside is restarted within its backoff,
with a new pid and an event, and nothing of the old tree lingers. Only the drilled
program is crashed and judged; the others must be untouched.
"""

from __future__ import annotations

import time
from typing import Any

import psutil

from flows.drills._http import call
from flows.drills.context import DrillContext
from flows.drills.harness import wait_for

RESTART_DEADLINE_S = 5.0


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def run(ctx: DrillContext) -> tuple[bool, str]:
    sup = ctx.supervisor()
    name = ctx.program_name()
    before = ctx.workload(sup)
    ctx.log.tree("before the crash", before)
    guard = ctx.watch_collateral(sup)
    leaders = [p for p in before if p.ppid() == sup.pid]
    if not leaders:
        return False, f"found no process of program {name} whose parent is the supervisor"
    leader = leaders[0]
    with sup.new_client() as client:
        first = call(client, ctx.log, "GET", "/process", params={"name": name})
        ctx.log.line(f"SIGKILL worker leader pid={leader.pid} from outside the supervisor")
        killed_at = time.monotonic()
        leader.kill()

        def restarted() -> dict[str, Any] | None:
            ans = call(client, None, "GET", "/process", params={"name": name})
            body = ans.body if isinstance(ans.body, dict) else {}
            if body.get("pid") not in (None, leader.pid) and body.get("state") in (
                "starting",
                "running",
            ):
                return body
            return None

        body = wait_for(restarted, RESTART_DEADLINE_S, interval=0.005)
        delay_ms = round((time.monotonic() - killed_at) * 1000, 1)
        final = call(client, ctx.log, "GET", "/process", params={"name": name})
        events = call(client, ctx.log, "GET", "/events", params={"limit": 20})
    del first
    if not body:
        return False, (
            f"worker not restarted within {RESTART_DEADLINE_S:.0f} s of the crash;"
            f" state {final.body!r}"[:300]
        )
    ctx.metrics["restart_delay_ms"] = delay_ms
    ctx.metrics["new_pid"] = body["pid"]
    ctx.log.line(f"restarted as pid {body['pid']} {delay_ms} ms after the crash")
    sup.wait_workload(ctx.options.min_procs, stable_s=0.25, program=name)
    lingering = [p for p in before if _alive(p)]
    ctx.log.tree("after restart", ctx.workload(sup))
    ctx.check_collateral(guard)
    kinds = (
        [e.get("kind") for e in (events.body or {}).get("events", [])]
        if isinstance(events.body, dict)
        else []
    )
    sup.stop()
    if lingering:
        return False, (
            f"{len(lingering)} process(es) of the crashed tree still alive:"
            f" {sorted(p.pid for p in lingering)}"
        )
    if "exited" not in kinds or "started" not in kinds:
        return False, f"events do not record the crash and restart: {kinds}"
    return True, f"worker restarted {delay_ms} ms after the crash as pid {body['pid']}"
