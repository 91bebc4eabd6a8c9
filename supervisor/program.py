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


def check_executable(name: str, env: Mapping[str, str], cwd: str | None) -> None:
    """Raise what ``execvp`` would fail with (``FileNotFoundError``, ``PermissionError``)
    when ``name`` cannot be executed: searched on ``env``'s PATH unless it has a slash,
    relative paths from ``cwd``. The containment may exec it from a first image of its
    own (cgroup: ``sh``), where a failed exec is only an exit status; checked here, a
    missing command still fails the start with the OS error."""
    base = cwd if cwd is not None else os.getcwd()
    if "/" in name:
        candidates = [os.path.join(base, name)]
    else:
        dirs = env.get("PATH", os.defpath).split(os.pathsep)
        candidates = [os.path.join(base, d or ".", name) for d in dirs]
    denied = False
    for path in candidates:
        if os.path.isfile(path):
            if os.access(path, os.X_OK):
                return
            denied = True
        elif os.path.isdir(path) and "/" in name:
            denied = True
    code = errno.EACCES if denied else errno.ENOENT
    raise (PermissionError if denied else FileNotFoundError)(code, os.strerror(code), name)
