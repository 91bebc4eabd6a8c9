"""Session containment: the fallback where no writable cgroup v2 tree exists.

The supervisor is a child subreaper, so every descendant of a program stays in
its subtree; a program is its leader's session and group plus whatever carries
its environment markers (``supervisor.stop.tree``), found by scanning /proc. The
ladder (``supervisor.stop.ladder``) stops it; the Python keeper
(``supervisor.stop.keeper``) sweeps marked processes when the supervisor dies.
Its limit: a descendant that double-forks, calls ``setsid`` and clears its
environment cannot be attributed to its program.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from functools import partial

import anyio

from supervisor.stop import ladder, proc, sweep, tree
from supervisor.stop.containment import Target


class SessionContainment:
    name = "session"

    def __init__(
        self, instance: str, reason: str, stopper: ladder.Stopper = ladder.terminate
    ) -> None:
        self.instance = instance
        self.reason = reason
        self._stopper = stopper

    def prepare(self, program: str) -> list[str]:
        return []

    def admit(self, program: str, pid: int) -> None:
        return None  # the leader's own session is its place

    def members(
        self, target: Target, procs: Mapping[int, proc.ProcInfo] | None = None
    ) -> list[proc.ProcInfo]:
        return tree.program_members(
            proc.scan() if procs is None else procs,
            os.getpid(),
            sid=target.leader.sid if target.leader else None,
            marker=target.marker,
            skip=set(target.skip),
        )

    def stop(
        self,
        target: Target,
        stop_signal: int,
        timeout: float,
        members: list[proc.ProcInfo] | None = None,
    ) -> ladder.LadderResult:
        return self._stopper(
            lambda: self.members(target), target.leader, stop_signal, timeout, members=members
        )

    async def stop_async(
        self,
        target: Target,
        stop_signal: int,
        timeout: float,
        members: list[proc.ProcInfo] | None = None,
        *,
        signalled: Callable[[], None] = lambda: None,
    ) -> ladder.LadderResult:
        signalled()  # the ladder signals in its thread; record the stop before it starts
        # the ladder rescans /proc in a loop: a worker thread, not the event loop, waits
        return await anyio.to_thread.run_sync(
            partial(self.stop, target, stop_signal, timeout, members)
        )

    def released(self, program: str) -> None:
        pass

    def keeper_command(self) -> list[str]:
        return [sys.executable, "-m", "supervisor.stop.keeper", self.instance]

    def reclaim(self, instance: str) -> int:
        return sweep.sweep(instance.encode(), exclude={os.getpid()})

    def reclaim_orphans(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        pass
