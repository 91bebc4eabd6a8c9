"""The escapee drill's workload: descendants that only a cgroup can hold.

``python -I -S _escapee_workload.py leader TOKEN DEADLINE`` (the supervisor runs
it as a program). The leader ignores SIGTERM and starts ``LINEAGES`` escapees:
each is double-forked, calls ``setsid``, and is exec'ed with an empty environment,
so no drill or supervisor marker reaches it. An escapee ignores SIGTERM and keeps
forking: every ``FORK_EVERY_S`` it double-forks a successor into a new session.
The successor waits ``FLIGHT_S``; if its escapee died meanwhile (a kill that did
not catch the fork in flight), it carries the lineage on as the new escapee,
else it exits. So a kill that races with fork leaves a survivor, and a live
escapee keeps one pid, which no scan can miss.

Every process carries ``TOKEN`` as a whole argument (a fork keeps its parent's
argv, an exec passes it on), which is how the drill finds them all. Nothing
outlives ``DEADLINE`` (a Unix time): each process arms SIGALRM for it and stops
moving after it, so a supervisor bug can never leave it running for long.
Standard library only: it runs with ``-I -S`` and no environment.
"""

from __future__ import annotations

import os
import signal
import sys
import time

LINEAGES = 2
FORK_EVERY_S = 0.05
FLIGHT_S = 0.05


def _arm(deadline: float) -> None:
    """Ignore SIGTERM; die by SIGALRM at ``deadline`` (alarms do not survive a fork)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    remaining = deadline - time.time()
    if remaining <= 0:
        os._exit(0)
    signal.alarm(int(remaining) + 1)


def _double_fork() -> bool:
    """True in the grandchild, which lives on in a new session; False in the caller,
    once the intermediate child (the one that called setsid) has exited."""
    child = os.fork()
    if child == 0:
        os.setsid()
        if os.fork() == 0:
            return True
        os._exit(0)
    os.waitpid(child, 0)
    return False


def _leader(token: str, deadline: float) -> None:
    _arm(deadline)
    for _ in range(LINEAGES):
        if _double_fork():
            argv = [sys.executable, "-I", "-S", os.path.abspath(__file__), "escapee", token]
            try:
                os.execve(sys.executable, [*argv, repr(deadline)], {})
            except OSError:
                os._exit(127)
    while True:
        signal.pause()


def _dead(pid: int) -> bool:
    """Gone, or a zombie (an unreaped escapee still answers ``kill(pid, 0)``)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in (b"Z", b"X")


def _escapee(deadline: float) -> None:
    _arm(deadline)
    while time.time() < deadline:
        time.sleep(FORK_EVERY_S)
        head = os.getpid()
        if _double_fork():  # the successor, in flight in its own session
            _arm(deadline)
            time.sleep(FLIGHT_S)
            if not _dead(head):
                os._exit(0)
            # the escapee was killed under us: carry its lineage on
    os._exit(0)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("leader", "escapee"):
        print("usage: _escapee_workload.py leader|escapee TOKEN DEADLINE", file=sys.stderr)
        return 2
    role, token, deadline = argv[0], argv[1], float(argv[2])
    if role == "leader":
        _leader(token, deadline)
    else:
        _escapee(deadline)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
