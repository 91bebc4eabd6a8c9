"""Supervisor instance ids that say whether their owner is still alive.

An instance id is ``<pid>-<start ticks>-<random>``: the supervisor's pid, its
start time in clock ticks since boot (field 22 of ``/proc/PID/stat``) and a
random suffix. A later supervisor, or one running beside it on the same
machine, tells a live owner from a dead one by reading that pid's start time
again, so reclaiming a dead instance's processes never touches a live one's.
"""

from __future__ import annotations

import os
import uuid

from supervisor.stop import proc


def new_instance() -> str:
    """The id of this process as a supervisor instance."""
    me = proc.read_stat(os.getpid())
    assert me is not None, "a running process always has /proc/self/stat"
    return f"{me.pid}-{me.start_ticks}-{uuid.uuid4().hex[:8]}"


def owner_alive(instance: str) -> bool:
    """True when the process that made ``instance`` still runs (same pid, same start time).

    An id in another shape (a legacy uuid) has no readable owner: it counts as
    alive only if it is ours, which it never is when this is asked.
    """
    parts = instance.split("-")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return False
    info = proc.read_stat(int(parts[0]))
    return info is not None and not info.zombie and info.start_ticks == int(parts[1])
