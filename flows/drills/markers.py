"""Drill markers: which processes belong to a launch, and killing them.

Every process a harness launch starts carries ``CHAOS_DRILL_MARKER`` in its
environment (the supervisor and, through inheritance, every program process,
double-forked ones included). A marker is
``<runner pid>-<runner start time>-<uuid>``: a later run kills the leftovers of
runners that no longer exist, and never a live runner's.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterable

import psutil

MARKER_ENV = "CHAOS_DRILL_MARKER"
Note = Callable[[str], None]


def runner_marker() -> str:
    """``<runner pid>-<runner start time>-<uuid>``: lets a later run spot our leftovers."""
    me = psutil.Process()
    return f"{me.pid}-{me.create_time():.2f}-{uuid.uuid4().hex[:12]}"


def _owner_alive(marker: str) -> bool:
    try:
        pid, created, _ = marker.split("-", 2)
        return abs(psutil.Process(int(pid)).create_time() - float(created)) < 0.05
    except (ValueError, psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def marked_processes(predicate: Callable[[str], bool]) -> list[psutil.Process]:
    """Live (non-zombie) processes whose drill marker satisfies ``predicate``."""
    found = []
    me = os.getpid()
    for proc in psutil.process_iter():
        try:
            if proc.pid == me:
                continue
            value = proc.environ().get(MARKER_ENV)
            if value is not None and predicate(value) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def find_marked(marker: str, exclude: Iterable[int] = ()) -> list[psutil.Process]:
    """Every live process carrying exactly this marker, ``exclude`` left out."""
    skip = set(exclude)
    return [p for p in marked_processes(lambda v: v == marker) if p.pid not in skip]


def kill_marked(predicate: Callable[[str], bool], timeout: float = 10.0) -> list[int]:
    """SIGSTOP then SIGKILL every matching process until a scan finds none; their pids.

    SIGSTOP first, so a process cannot fork between our scan and its SIGKILL.
    """
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs = marked_processes(predicate)
        if not procs:
            break
        for proc in procs:
            for sig in (signal.SIGSTOP, signal.SIGKILL):
                try:
                    proc.send_signal(sig)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            killed.add(proc.pid)
        psutil.wait_procs(procs, timeout=0.2)
    return sorted(killed)


def kill_leftovers(note: Note | None = None) -> list[int]:
    """Kill processes left by drill runners that no longer exist; return their pids."""
    pids = kill_marked(lambda value: not _owner_alive(value))
    if pids and note:
        note(f"killed {len(pids)} leftover process(es) of dead drill runs: {pids}")
    return pids
