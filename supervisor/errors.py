"""Errors of the supervisor package.

- ``SupervisorError``: base of everything below.
- ``ConfigError``: the TOML config is unreadable or invalid; the message names
  the file, the key and the value.
- ``StateDBError``: the state DB cannot be used (not SQLite, newer schema, I/O);
  the supervisor refuses to start and never modifies the file.
- ``UnknownProgram``: a request named a program that is not configured.
- ``AmbiguousProgram``: a request named no program and several are configured.
"""

from __future__ import annotations


class SupervisorError(Exception):
    """Base of the supervisor's exceptions."""


class ConfigError(SupervisorError):
    pass


class StateDBError(SupervisorError):
    pass


class UnknownProgram(SupervisorError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown program {name!r}; configured: {', '.join(known) or 'none'}")
        self.name = name


class AmbiguousProgram(SupervisorError):
    def __init__(self, known: list[str]) -> None:
        super().__init__(
            f'several programs are configured ({", ".join(known)}); name one with "name"'
        )
