"""``api_kill``: ``POST /process/kill`` must answer 200 with a valid body, the tree
must be gone, and the supervisor must stay healthy. Any other answer, or none at
all (the old ``HTTP 000``), is a FAIL: there is no exception for shutdown races.
"""

from __future__ import annotations

import time

from flows.drills._http import call, kill_body_problems
from flows.drills.context import DrillContext
from flows.drills.harness import wait_for

VANISH_GRACE_S = 0.5


def run(ctx: DrillContext) -> tuple[bool, str]:
    sup = ctx.supervisor()
    name = ctx.program_name()
    before = ctx.workload(sup)
    ctx.log.tree("before kill", before)
    guard = ctx.watch_collateral(sup)
    with sup.new_client() as client:
        sent = time.monotonic()
        answer = call(client, ctx.log, "POST", "/process/kill", json={"name": name})
        ctx.metrics["http_status"] = answer.status or 0
        ctx.metrics["kill_round_trip_ms"] = round(answer.latency_ms, 3)
        at_answer = ctx.workload(sup)
        ctx.log.tree("at the kill answer", at_answer)
        ctx.metrics["alive_at_answer"] = len(at_answer)
        gone = wait_for(lambda: not ctx.workload(sup), VANISH_GRACE_S, interval=0.005)
        ctx.metrics["tree_vanish_ms"] = round((time.monotonic() - sent) * 1000, 3)
        after = ctx.workload(sup)
        ctx.log.tree("after kill", after)
        health = call(client, ctx.log, "GET", "/healthz")
        state = call(client, ctx.log, "GET", "/process", params={"name": name})
    ctx.check_collateral(guard)
    if answer.status != 200:
        shown = "no response (HTTP 000)" if answer.status is None else f"HTTP {answer.status}"
        return False, f"kill answered {shown}: {str(answer.body)[:200]}"
    problems = kill_body_problems(answer.body, name)
    if problems:
        return False, f"kill answered 200 with an invalid body: {'; '.join(problems)}"
    if answer.body.get("already_stopped"):
        return False, "kill answered already_stopped for a running worker"
    if not gone or after:
        return False, (
            f"{len(after)} process(es) of the tree still alive"
            f" {VANISH_GRACE_S}s after the kill answer: {sorted(p.pid for p in after)}"
        )
    if sup.popen.poll() is not None or health.status != 200:
        return False, f"supervisor unhealthy after the kill (exit status {sup.popen.poll()})"
    if (
        state.status != 200
        or not isinstance(state.body, dict)
        or state.body.get("state") != "stopped"
    ):
        return False, f"program state after kill is {state.body!r}, expected stopped"
    sup.stop()
    return True, (
        f"kill answered 200 in {answer.latency_ms:.1f} ms; tree of {len(before)}"
        f" process(es) gone; supervisor healthy"
    )
