"""The supervisor's end of the keeper: start it, watch it, and let it go.

``Keeper`` is what the process manager needs of it; the manager takes a factory
``argv -> Keeper`` (``KeeperLink`` by default), so a test can hand it another. The
argv comes from the containment: ``sh`` writing ``cgroup.kill`` (cgroup), or
``python -m supervisor.stop.keeper INSTANCE`` sweeping marked processes (session).
"""

from __future__ import annotations

import logging
import os
import subprocess
from typing import Protocol

log = logging.getLogger("supervisor.stop.keeper")


class Keeper(Protocol):
    @property
    def pid(self) -> int | None: ...

    def start(self) -> None: ...

    def check(self) -> None: ...

    def close(self, timeout: float = 2.0) -> None: ...


class KeeperLink:
    """Holds the write end of the keeper's stdin; the keeper acts when it closes."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    def start(self) -> None:
        # a bare environment: the keeper is no program and must carry no program's markers
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH", "LANG")}
        self._popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            start_new_session=True,
            env=env,
        )
        log.info("event=keeper_started pid=%d", self._popen.pid)

    def check(self) -> None:
        """Start a new keeper if this one died (and reap the old one)."""
        if self._popen is not None and self._popen.poll() is not None:
            log.error("event=keeper_died status=%s; starting a new one", self._popen.returncode)
            self.start()

    def close(self, timeout: float = 2.0) -> None:
        """Close our end: the keeper sweeps (finding nothing after a clean stop) and exits."""
        if self._popen is None:
            return
        if self._popen.stdin is not None:
            self._popen.stdin.close()
        try:
            self._popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._popen.kill()
            self._popen.wait()
