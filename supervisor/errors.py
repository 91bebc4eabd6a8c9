"""Errors of the supervisor package.

- ``SupervisorError``: base of everything below.
- ``ConfigError``: the TOML config is unreadable or invalid; the message names
  the file, the key and the value.
- ``StateDBError``: the state DB cannot be used (not SQLite, newer schema, I/O);
  the supervisor refuses to start and never modifies the file.
- ``UnknownProgram``: a request named a program that is not configured.
- ``AmbiguousProgram``: a request named no program and several are configured.
- ``InvalidTransition``: a bug: the manager asked for a state change the table
  in ``supervisor.states`` does not allow.
"""

from __future__ import annotations

from supervisor.states import State


class SupervisorError(Exception):
    """Base of the supervisor's exceptions."""


class ConfigError(SupervisorError):
    pass


class StateDBError(SupervisorError):
    pass


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
