"""Reconcile what the DB recorded with what is alive, at start.

A previous supervisor on this DB that was SIGKILLed may have left processes
(if its keeper died too). Any recorded process still alive on this boot with
the recorded create time, and anything carrying that instance's marker, is
stopped, and the program's row is logged as ``recovered``.
"""

from __future__ import annotations

import logging
import os
import signal

from supervisor.statedb import StateDB
from supervisor.states import State
from supervisor.stop import proc, sweep

log = logging.getLogger("supervisor.process")


def _kill_recorded(pid: int | None, create_time: float | None) -> int:
    info = proc.read_stat(pid) if pid else None
    if info is None or info.zombie or create_time is None:
        return 0
    if abs(info.create_time - create_time) >= 0.02:
        return 0  # the pid was reused by an unrelated process
    return 1 if proc.signal_checked(info, signal.SIGKILL) else 0


def reconcile(db: StateDB) -> None:
    for rec in db.live_records():
        killed = 0
        if rec["boot_id"] == proc.boot_id() and rec["instance"]:
            killed = sweep.sweep(rec["instance"].encode(), exclude={os.getpid()})
            killed += _kill_recorded(rec["pid"], rec["create_time"])
        detail = (
            f"previous instance {rec['instance']} left pid {rec['pid']};"
            f" stopped {killed} leftover process(es)"
        )
        db.record_state(rec["id"], State.STOPPED.value, "recovered", detail, pid=None)
        log.info("event=recovered program=%s %s", rec["name"], detail)
