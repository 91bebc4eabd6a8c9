"""How a program's processes are held together: the one seam, two implementations.

- ``supervisor.stop.cgroup``: every program in its own cgroup v2 under
  ``<our cgroup>/supervisor-<instance>/``; membership is ``cgroup.procs``,
  emptiness is ``populated 0`` in ``cgroup.events``, and ``cgroup.kill`` ends a
  whole subtree at once, forks included. Used whenever a writable cgroup v2
  tree with ``cgroup.kill`` is there.
- ``supervisor.stop.session``: the fallback. The supervisor is a child
  subreaper; a program is its leader's session and group plus whatever carries
  its environment markers, found by scanning /proc.

``choose`` picks one at start-up from ``server.containment`` (``auto``,
``cgroup``, ``session``) and says why; the manager only ever talks to the
``Containment`` protocol below.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from supervisor.config import CONTAINMENTS as MODES
from supervisor.errors import ContainmentError
from supervisor.stop import proc
from supervisor.stop.ladder import LadderResult

log = logging.getLogger("supervisor.stop")


@dataclass(frozen=True)
class Target:
    """One program, as the containment needs to see it."""

    name: str
    leader: proc.ProcInfo | None
    # environment markers every process of the program inherits (session membership)
    marker: Mapping[str, str] = field(default_factory=dict)
    # pids never to count as members: other programs' leaders, the keeper
    skip: frozenset[int] = frozenset()


class Containment(Protocol):
    """What the process manager needs of a containment; ``name`` is what /healthz reports."""

    @property
    def name(self) -> str: ...

    @property
    def instance(self) -> str: ...

    @property
    def reason(self) -> str: ...

    def prepare(self, program: str) -> list[str]:
        """Make the program's place; the argv to put before the program's own ([] for
        none). That first image waits for one line on its stdin, then execs the program
        with stdin from /dev/null; the caller writes the line after ``admit``."""
        ...

    def admit(self, program: str, pid: int) -> None:
        """Put the just-started leader (still the waiting first image) in its place;
        ``OSError`` when that cannot be done."""
        ...

    def members(
        self, target: Target, procs: Mapping[int, proc.ProcInfo] | None = None
    ) -> list[proc.ProcInfo]:
        """The program's live processes (``procs``: a /proc scan the caller already has)."""
        ...

    def stop(
        self,
        target: Target,
        stop_signal: int,
        timeout: float,
        members: list[proc.ProcInfo] | None = None,
    ) -> LadderResult:
        """Stop every process of the program; return who was signalled and who survived."""
        ...

    async def stop_async(
        self,
        target: Target,
        stop_signal: int,
        timeout: float,
        members: list[proc.ProcInfo] | None = None,
        *,
        signalled: Callable[[], None] = lambda: None,
    ) -> LadderResult:
        """``stop``, awaited on the event loop. ``signalled`` runs once the stop signal is
        out, so the caller's bookkeeping overlaps the processes' exit."""
        ...

    def released(self, program: str) -> None:
        """The program has no process left: remove its place."""
        ...

    def keeper_command(self) -> list[str]:
        """The argv of the keeper, which acts when its stdin reaches EOF."""
        ...

    def reclaim(self, instance: str) -> int:
        """Kill what a dead instance left behind; the number of processes killed."""
        ...

    def reclaim_orphans(self) -> dict[str, int]:
        """Kill and remove every dead instance's leftovers; instance -> processes killed."""
        ...

    def close(self) -> None:
        """Remove everything this instance made (after every program stopped)."""
        ...


def choose(mode: str, instance: str) -> Containment:
    """The containment for ``server.containment = mode``; raises ``ContainmentError`` when
    ``cgroup`` was asked for and cannot be had."""
    from supervisor.stop.cgroup import CgroupContainment
    from supervisor.stop.session import SessionContainment

    if mode not in MODES:
        raise ContainmentError(f"server.containment must be one of {MODES}, got {mode!r}")
    if mode == "session":
        return SessionContainment(instance, 'forced by server.containment = "session"')
    try:
        return CgroupContainment.create(instance)
    except ContainmentError as exc:
        if mode == "cgroup":
            raise
        return SessionContainment(instance, f"auto: no usable cgroup v2 tree: {exc}")
