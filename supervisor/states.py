"""Program states and the transitions allowed between them.

No project imports: this table is the single source of truth the manager asks
before every transition (see ``supervisor.manager.ProcessManager._transition``).
"""

from __future__ import annotations

import enum


class State(enum.StrEnum):
    STOPPED = "stopped"  # never started, or stopped on request; no process alive
    STARTING = "starting"  # spawned, not yet up for start_seconds
    RUNNING = "running"
    BACKOFF = "backoff"  # exited unexpectedly; waiting to restart
    STOPPING = "stopping"  # termination ladder in progress
    EXITED = "exited"  # exited unexpectedly and not restarted (autorestart off)
    FATAL = "fatal"  # could not be started, or failed too often; down until started


_ALLOWED: dict[State, frozenset[State]] = {
    # STOPPED -> STOPPING: a kill that finds leftovers of a stopped program stops them too
    State.STOPPED: frozenset({State.STARTING, State.STOPPING, State.FATAL}),
    State.STARTING: frozenset(
        {State.RUNNING, State.STOPPING, State.BACKOFF, State.EXITED, State.FATAL}
    ),
    State.RUNNING: frozenset({State.STOPPING, State.BACKOFF, State.EXITED, State.FATAL}),
    State.BACKOFF: frozenset({State.STARTING, State.STOPPING, State.FATAL, State.STOPPED}),
    State.STOPPING: frozenset({State.STOPPED}),
    # EXITED/FATAL -> FATAL: a start whose command cannot be spawned (any more)
    State.EXITED: frozenset({State.STARTING, State.STOPPING, State.STOPPED, State.FATAL}),
    State.FATAL: frozenset({State.STARTING, State.STOPPING, State.STOPPED, State.FATAL}),
}

#: states in which some process of the program may be alive
ACTIVE = frozenset({State.STARTING, State.RUNNING, State.STOPPING})


def can_transition(old: State, new: State) -> bool:
    return new in _ALLOWED[old]
