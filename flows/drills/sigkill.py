"""``sigkill``: SIGKILL the supervisor; no workload process may survive 2 s, and a
restart on the same DB must come up healthy and reconcile what the DB recorded.
"""

from __future__ import annotations

import signal
import time

from flows.drills._http import call
from flows.drills.context import DrillContext
from flows.drills.harness import wait_for

SURVIVAL_LIMIT_S = 2.0


def run(ctx: DrillContext) -> tuple[bool, str]:
    first = ctx.supervisor()
    before = first.workload()
    ctx.log.tree("before SIGKILL", before)
    ctx.log.line(f"send SIGKILL to supervisor pid={first.pid}")
    sent = time.monotonic()
    first.signal(signal.SIGKILL)
    first.wait_exit(5.0)
    gone = wait_for(lambda: not first.workload(), SURVIVAL_LIMIT_S, interval=0.01)
    vanish_ms = round((time.monotonic() - sent) * 1000, 1)
    after = first.workload()
    ctx.log.tree(f"{vanish_ms} ms after SIGKILL", after)
    if not gone or after:
        ctx.metrics["survivors"] = len(after)
        return False, (
            f"{len(after)} workload process(es) survived the SIGKILLed supervisor"
            f" for more than {SURVIVAL_LIMIT_S:.0f} s: {sorted(p.pid for p in after)}"
        )
    ctx.metrics["tree_vanish_ms"] = vanish_ms
    ctx.log.line(f"workload gone {vanish_ms} ms after SIGKILL")

    second = ctx.supervisor(db=first.db)
    with second.new_client() as client:
        events = call(client, ctx.log, "GET", "/events", params={"limit": 50})
    recovered = (
        [e for e in (events.body or {}).get("events", []) if e.get("kind") == "recovered"]
        if isinstance(events.body, dict)
        else []
    )
    ctx.metrics["recovered_events"] = len(recovered)
    for event in recovered:
        ctx.log.line(f"reconciled: {event.get('program')}: {event.get('detail')}")
    second.stop()
    if events.status != 200:
        return False, f"restarted supervisor answered /events with {events.status}"
    if not recovered:
        return False, "restart on the same DB recorded no reconciliation (no recovered event)"
    left = second.workload()
    if left:
        return False, f"{len(left)} process(es) left after the restarted supervisor stopped"
    return True, (
        f"no workload process survived SIGKILL ({vanish_ms} ms to vanish);"
        f" restart reconciled {len(recovered)} record(s)"
    )
