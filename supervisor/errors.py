"""Errors of the supervisor package.

- ``SupervisorError``: base of everything below.
- ``ConfigError``: the TOML config is unreadable or invalid; the message names
  the file, the key and the value.
- ``StateDBError``: the state DB cannot be used (not SQLite, newer schema, I/O);
  the supervisor refuses to start and never modifies the file.
- ``DBInUse``: another live supervisor holds the state DB's lock; names its pid
  and address (exit status 2).
- ``ContainmentError``: ``server.containment = "cgroup"`` and no writable cgroup
  v2 tree with ``cgroup.kill`` is there; names the mount and what is missing.
- ``StartFailed``: a program's command cannot be started (the OS error); the API
  answers 409.
- ``UnknownProgram``: a request named a program that is not configured.
- ``AmbiguousProgram``: a request named no program and several are configured.
- ``InvalidTransition``: a bug: the manager asked for a state change the table
  in ``supervisor.states`` does not allow.
"""

from __future__ import annotations

from pathlib import Path

from supervisor.states import State


class SupervisorError(Exception):
    """Base of the supervisor's exceptions."""


class ConfigError(SupervisorError):
    pass


class StateDBError(SupervisorError):
    pass


class DBInUse(SupervisorError):
    def __init__(self, db: Path, pid: object, url: object) -> None:
        where = f"listening on {url}" if url else "not listening yet"
        super().__init__(
            f"state DB {db} is owned by another supervisor: pid {pid or 'unknown'}, {where}"
            f" (lock {db.name}.lock beside it); stop that one first, or pass another --db."
            " Nothing was touched"
        )
        self.pid = pid
        self.url = url


class ContainmentError(SupervisorError):
    pass


class StartFailed(SupervisorError):
    def __init__(self, name: str, error: str) -> None:
        super().__init__(f"program {name!r} cannot be started: {error}")
        self.name = name
        self.error = error


class UnknownProgram(SupervisorError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown program {name!r}; configured: {', '.join(known) or 'none'}")


class AmbiguousProgram(SupervisorError):
    def __init__(self, known: list[str]) -> None:
        super().__init__(
            f'several programs are configured ({", ".join(known)}); name one with "name"'
        )


class InvalidTransition(SupervisorError):
    def __init__(self, old: State, new: State) -> None:
        super().__init__(f"state: cannot go from {old.value} to {new.value}")
