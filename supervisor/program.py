"""One configured program: its config, state, leader process and counters."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from supervisor.config import ProgramConfig
from supervisor.states import ACTIVE, State
from supervisor.stop import proc


@dataclass
class Program:
    cfg: ProgramConfig
    db_id: int
    state: State = State.STOPPED
    popen: subprocess.Popen[bytes] | None = None
    leader: proc.ProcInfo | None = None
    leader_fd: int = -1
    started_at: str | None = None
    started_mono: float = 0.0
    exit_code: int | None = None
    exit_signal: int | None = None
    last_error: str | None = None
    quick_failures: int = 0
    restarts: int = 0
    next_start_at: float | None = None
    # members seen by the monitor's last scan: a kill signals them at once, then rescans
    known_members: list[proc.ProcInfo] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    # serialises kills on the event loop, whose one thread would re-enter ``lock``
    async_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def name(self) -> str:
        return self.cfg.name

    def exit_detail(self) -> str:
        if self.exit_signal is not None:
            return f"killed by {signal.Signals(self.exit_signal).name}"
        return f"exit code {self.exit_code}"

    def snapshot(self) -> dict[str, Any]:
        leader = self.leader if self.state in ACTIVE else None
        return {
            "name": self.name,
            "state": self.state.value,
            "pid": leader.pid if leader else None,
            "pgid": leader.pgid if leader else None,
            "started_at": self.started_at if leader else None,
            "exit_code": self.exit_code,
            "exit_signal": self.exit_signal,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "command": list(self.cfg.command),
        }


def resolve_python(command: tuple[str, ...]) -> list[str]:
    """``python`` as a program's command means the supervisor's own interpreter."""
    if command[0] in ("python", "python3"):
        return [sys.executable, *command[1:]]
    return list(command)


_EXEC_HEADERS = (b"\x7fELF", b"#!")  # what execve runs (no binfmt_misc formats here)


def check_executable(name: str, env: Mapping[str, str], cwd: str | None) -> None:
    """Raise what ``subprocess.Popen`` would fail with (``FileNotFoundError``,
    ``PermissionError``, ``OSError`` ENOEXEC) when ``name`` cannot be executed: searched
    on ``env``'s PATH unless it has a slash, relative paths from ``cwd``, the first error
    of the search kept as Popen keeps it. The containment may exec it from a first image
    of its own (cgroup: ``sh``), where a failed exec is only an exit status and a file
    without ``#!`` would run as a shell script; checked here, such a command still
    fails the start with the OS error."""
    base = cwd if cwd is not None else os.getcwd()
    if "/" in name:
        candidates = [os.path.join(base, name)]
    else:
        dirs = env.get("PATH", os.defpath).split(os.pathsep)
        candidates = [os.path.join(base, d or ".", name) for d in dirs]
    first: int | None = None
    for path in candidates:
        if os.path.isdir(path):
            code = errno.EACCES
        elif not os.path.isfile(path):
            continue  # ENOENT: the search goes on, and reports it only if nothing else
        elif not os.access(path, os.X_OK):
            code = errno.EACCES
        elif not _has_exec_header(path):
            code = errno.ENOEXEC
        else:
            return
        first = code if first is None else first
    code = errno.ENOENT if first is None else first
    kind = {errno.ENOENT: FileNotFoundError, errno.EACCES: PermissionError}.get(code, OSError)
    raise kind(code, os.strerror(code), name)


def _has_exec_header(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4).startswith(_EXEC_HEADERS)
    except OSError:
        return True  # unreadable but executable: only exec itself can tell
