"""Find and kill every process of one supervisor instance by its environment marker.

Used by the keeper when the supervisor dies, and by the supervisor at start to
reconcile what a SIGKILLed predecessor left behind.
"""

from __future__ import annotations

import signal
import time

from supervisor.stop import proc

MARKER_KEY = b"SUPERVISOR_INSTANCE"
SWEEP_DEADLINE_S = 1.5


def find_marked(instance: bytes, exclude: set[int]) -> list[proc.ProcInfo]:
    found = []
    for info in proc.scan().values():
        if info.pid in exclude or info.zombie:
            continue
        if proc.read_environ(info.pid).get(MARKER_KEY) == instance:
            found.append(info)
    return found


def sweep(instance: bytes, exclude: set[int], deadline_s: float = SWEEP_DEADLINE_S) -> int:
    """SIGKILL every marked process until two scans in a row find none; return the count."""
    killed: set[int] = set()
    quiet_scans = 0
    end = time.monotonic() + deadline_s
    while quiet_scans < 2 and time.monotonic() < end:
        marked = find_marked(instance, exclude)
        if not marked:
            quiet_scans += 1
            time.sleep(0.01)
            continue
        quiet_scans = 0
        for info in marked:
            # stop first so nothing forks between our scan and the kill
            if proc.signal_checked(info, signal.SIGSTOP, signal.SIGKILL):
                killed.add(info.pid)
        time.sleep(0.005)
    return len(killed)
