"""Reconcile what the DB recorded with what is alive, at start.

Runs only once this supervisor holds the DB's lock (``supervisor.owner``), so
the instance the DB recorded is really gone. A SIGKILLed predecessor may have
left processes (if its keeper died too): the containment reclaims that
instance's leftovers (its cgroup subtree, or its marked processes), any
recorded leader still alive on this boot with the recorded create time is
stopped, and the program's row is logged as ``recovered``. Then every other
dead instance's leftovers the containment can see are reclaimed too.
"""

from __future__ import annotations

import logging
import signal

from supervisor.statedb import StateDB
from supervisor.states import State
from supervisor.stop import proc
from supervisor.stop.containment import Containment

log = logging.getLogger("supervisor.process")


def _kill_recorded(pid: int | None, create_time: float | None) -> int:
    info = proc.read_stat(pid) if pid else None
    if info is None or info.zombie or create_time is None:
        return 0
    if abs(info.create_time - create_time) >= 0.02:
        return 0  # the pid was reused by an unrelated process
    return 1 if proc.signal_checked(info, signal.SIGKILL) else 0


def reconcile(db: StateDB, containment: Containment) -> None:
    reclaimed: dict[str, int] = {}
    for rec in db.live_records():
        killed = 0
        instance = rec["instance"]
        if rec["boot_id"] == proc.boot_id() and instance:
            if instance not in reclaimed:
                reclaimed[instance] = containment.reclaim(instance)
                killed = reclaimed[instance]
            killed += _kill_recorded(rec["pid"], rec["create_time"])
        detail = (
            f"previous instance {instance} left pid {rec['pid']};"
            f" stopped {killed} leftover process(es)"
        )
        db.record_state(rec["id"], State.STOPPED.value, "recovered", detail, pid=None)
        log.info("event=recovered program=%s %s", rec["name"], detail)
    for instance, killed in containment.reclaim_orphans().items():
        log.warning(
            "event=reclaimed instance=%s killed=%d (a dead supervisor's cgroup subtree)",
            instance,
            killed,
        )
