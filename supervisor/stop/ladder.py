"""The termination ladder used by kill, restart and shutdown.

1. the stop signal to the program's process group and to every member found;
2. wait up to ``stop_timeout`` for every member to exit, signalling newcomers
   (a process forked meanwhile) as they appear;
3. SIGKILL whatever is left, stopping each first so it cannot fork, and repeat
   until a scan finds no member alive;
4. report survivors (there should be none).

Membership comes from a caller-supplied ``find_members`` so the ladder knows
nothing of programs: it only signals pids it was handed, through pidfds checked
against the start time it was given, and never the supervisor's own group.

``Stopper`` is the shape of ``terminate``: the process manager takes one as an
argument, so a test can hand it a faulty ladder.
"""

from __future__ import annotations

import logging
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from supervisor.stop import proc

log = logging.getLogger("supervisor.stop.ladder")

KILL_PHASE_LIMIT_S = 2.0
RESCAN_INTERVAL_S = 0.05


@dataclass
class LadderResult:
    signalled: set[int] = field(default_factory=set)  # every pid a signal reached
    survivors: list[int] = field(default_factory=list)  # alive when the ladder gave up


FindMembers = Callable[[], list[proc.ProcInfo]]


class Stopper(Protocol):
    """Stops a program's whole tree: ``terminate`` below, or a faulty one in a test."""

    def __call__(
        self,
        find_members: FindMembers,
        leader: proc.ProcInfo | None,
        stop_signal: int,
        stop_timeout: float,
        *,
        members: list[proc.ProcInfo] | None = None,
    ) -> LadderResult: ...


class _Tracker:
    """pidfds of the members signalled so far; knows which are still alive."""

    def __init__(self) -> None:
        self.handles: dict[tuple[int, int], proc.PidHandle] = {}

    def signal(self, members: list[proc.ProcInfo], sig: int, result: LadderResult) -> None:
        for info in members:
            if info.zombie:
                continue
            key = (info.pid, info.start_ticks)
            handle = self.handles.get(key)
            if handle is None:
                handle = proc.PidHandle.open(info.pid, info.start_ticks)
                if handle is None:
                    continue
                self.handles[key] = handle
            if sig == signal.SIGKILL:
                handle.send(signal.SIGSTOP)
            if handle.send(sig):
                result.signalled.add(info.pid)

    def wait_all(self, timeout: float) -> bool:
        """Wait until every tracked process has exited, at most ``timeout``; True if all did."""
        end = time.monotonic() + timeout
        while True:
            alive = {h.fd: h for h in self.handles.values() if h.fd >= 0}
            if not alive:
                return True
            remaining = end - time.monotonic()
            if remaining <= 0:
                return False
            poller = select.poll()
            for fd in alive:
                poller.register(fd, select.POLLIN)
            for fd, _ in poller.poll(remaining * 1000):
                alive[fd].close()

    def close(self) -> None:
        for h in self.handles.values():
            h.close()


def terminate(
    find_members: FindMembers,
    leader: proc.ProcInfo | None,
    stop_signal: int,
    stop_timeout: float,
    *,
    members: list[proc.ProcInfo] | None = None,
) -> LadderResult:
    """Stop the leader's group and every member ``find_members`` finds; say who survived.

    ``members``, when given, are signalled at once instead of waiting for a first scan.
    """
    result = LadderResult()
    tracker = _Tracker()
    pgid = leader.pgid if leader else None
    try:
        if pgid:
            proc.safe_killpg(pgid, stop_signal)
        deadline = time.monotonic() + stop_timeout
        if members is None:
            members = find_members()
        tracker.signal(members, stop_signal, result)
        while True:
            done = tracker.wait_all(max(0.0, min(RESCAN_INTERVAL_S, deadline - time.monotonic())))
            members = [m for m in find_members() if not m.zombie]
            newcomers = [m for m in members if (m.pid, m.start_ticks) not in tracker.handles]
            if done and not members:
                break
            if time.monotonic() >= deadline:
                break
            if newcomers:
                tracker.signal(newcomers, stop_signal, result)
        kill_end = time.monotonic() + KILL_PHASE_LIMIT_S
        while members and time.monotonic() < kill_end:
            log.warning(
                "event=ladder_escalate pids=%s after stop_timeout=%.1fs",
                sorted(m.pid for m in members),
                stop_timeout,
            )
            if pgid:
                proc.safe_killpg(pgid, signal.SIGKILL)
            tracker.signal(members, signal.SIGKILL, result)
            tracker.wait_all(0.2)
            members = [m for m in find_members() if not m.zombie]
        result.survivors = sorted(m.pid for m in members)
        return result
    finally:
        tracker.close()
