"""A supervisor with named parts replaced by faulty ones, so a test can show a check failing.

``python tests/broken_supervisor.py --break NAME[,NAME...] serve <the normal serve args>``
(or ``python -m tests.broken_supervisor ...`` from the repository root) builds
the real supervisor through ``supervisor.cli.main`` with ``Parts`` whose named
pieces are the faulty ones below. The faults live only here, in test code: the
shipped ``supervisor`` package has no switch that turns a guarantee off.

It logs ``event=broken_parts`` as a WARNING at start: nothing it runs is evidence.
``command(*breaks)`` is the argv prefix that callers append ``serve ...`` to.
Exit codes are the supervisor's, and 2 for an unknown or missing ``--break``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import select
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

if not __package__:
    # run as a script: build the supervisor of the checkout this file lives in
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi import FastAPI  # noqa: E402

from supervisor import cli, config, migrations  # noqa: E402
from supervisor.api import BodyLimit, create_app  # noqa: E402
from supervisor.auth import Token  # noqa: E402
from supervisor.manager import ProcessManager  # noqa: E402
from supervisor.statedb import StateDB  # noqa: E402
from supervisor.stop import ladder, proc  # noqa: E402
from supervisor.stop.containment import Containment, Target, choose  # noqa: E402
from supervisor.stop.ladder import FindMembers, LadderResult  # noqa: E402

log = logging.getLogger("supervisor")

KNOWN = {
    "leader_only_kill": "the stopper signals the leader pid only: no group, no descendants",
    "no_subreaper": "the supervisor does not become a child subreaper",
    "no_keeper": "no keeper process: a SIGKILLed supervisor orphans its programs",
    "no_shutdown_stop": "SIGTERM to the supervisor leaves its programs running",
    "legacy_migration_error": 'the old "no such column: created_at" migration bug, logged only',
    "kill_500": "POST /process/kill kills, then answers 500",
    "kill_drop": "POST /process/kill kills, then the supervisor exits without answering",
    "no_autorestart": "unexpected exits are never restarted",
    "no_auth": "every route is open",
    "no_body_limit": "no 413 for bodies over 64 KiB",
    "kill_kills_all": "POST /process/kill of one program kills every program",
}


def command(*breaks: str) -> list[str]:
    """The argv that starts a broken supervisor; append ``serve --config ...``."""
    return [sys.executable, str(Path(__file__).resolve()), "--break", ",".join(breaks)]


# ----- the faulty parts ----------------------------------------------------------------


def _wait_exit(handle: proc.PidHandle, timeout: float) -> bool:
    poller = select.poll()
    poller.register(handle.fd, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def leader_only_stop(
    find_members: FindMembers,
    leader: proc.ProcInfo | None,
    stop_signal: int,
    stop_timeout: float,
    *,
    members: list[proc.ProcInfo] | None = None,
) -> LadderResult:
    """The stop signal to the leader pid alone, SIGKILL after the timeout; nothing else."""
    result = LadderResult()
    handle = proc.PidHandle.open(leader.pid, leader.start_ticks) if leader else None
    if handle is None:
        return result
    try:
        for sig, wait in ((stop_signal, stop_timeout), (signal.SIGKILL, ladder.KILL_PHASE_LIMIT_S)):
            if handle.send(sig):
                result.signalled.add(handle.pid)
            if _wait_exit(handle, wait):
                break
    finally:
        handle.close()
    return result


def _no_subreaper() -> None:
    """Stay an ordinary parent: orphans of a program go to init, out of our sight."""


# Removes a broken supervisor's cgroups once the test has killed what it left in them
# (the supervisor itself leaves them populated, which is the fault); at most 120 s.
JANITOR_SH = """\
n=0
while [ -d "$1" ] && [ $n -lt 1200 ]; do
  read -r populated < "$1/cgroup.events" || exit 0
  if [ "$populated" = "populated 0" ]; then
    for c in "$1"/*/; do [ -d "$c" ] && rmdir "$c"; done 2>/dev/null
    rmdir "$1" 2>/dev/null && exit 0
  fi
  n=$((n + 1))
  sleep 0.1
done
"""


class NoCleanupContainment:
    """The chosen containment whose ``close`` kills nothing: what the programs' stop left
    alive stays alive (a janitor removes the cgroups once the test killed it)."""

    def __init__(self, real: Containment) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def close(self) -> None:
        root = getattr(self._real, "root", None)
        if root is None or not root.exists():
            return
        for program in list(getattr(self._real, "_procs_fds", {})):
            try:
                self._real.released(program)
            except OSError:
                pass
        subprocess.Popen(
            ["/bin/sh", "-c", JANITOR_SH, "broken-supervisor-janitor", str(root)],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


class LeaderOnlyContainment(NoCleanupContainment):
    """The chosen containment (cgroup or session) whose stop signals only the leader, and
    whose last-resort cleanup kills nothing."""

    def stop(
        self, target: Target, stop_signal: int, timeout: float, members: Any = None
    ) -> LadderResult:
        return leader_only_stop(lambda: [], target.leader, stop_signal, timeout)

    async def stop_async(
        self,
        target: Target,
        stop_signal: int,
        timeout: float,
        members: Any = None,
        *,
        signalled: Callable[[], None] = lambda: None,
    ) -> LadderResult:
        signalled()
        return self.stop(target, stop_signal, timeout)


class NoKeeper:
    """A keeper that is never started: nothing outlives a SIGKILLed supervisor to sweep."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv

    @property
    def pid(self) -> int | None:
        return None

    def start(self) -> None:
        pass

    def check(self) -> None:
        pass

    def close(self, timeout: float = 2.0) -> None:
        pass


def legacy_migration_error(conn: sqlite3.Connection, path: Path) -> None:
    """The old build's migration: it read ``created_at`` before adding it, logged, went on."""
    if migrations.schema_version(conn) >= 1:
        migrations.migrate(conn, path)
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        migrations.create_missing_v0_tables(conn)
        conn.execute("SELECT created_at FROM processes")
    except sqlite3.Error as exc:
        logging.getLogger("supervisor.statedb").error("Failed to initialize database: %s", exc)
        return
    finally:
        conn.execute("ROLLBACK")
    migrations.migrate(conn, path)


class NoShutdownStop(ProcessManager):
    """Shutdown stops the monitor only: programs, their rows and the keeper are left as is."""

    def shutdown(self) -> None:
        self.monitor.stop()
        logging.getLogger("supervisor.process").info("event=shutdown_complete")


class KillThen500(ProcessManager):
    async def kill_async(self, name: str | None, timeout: float | None = None) -> dict[str, Any]:
        await super().kill_async(name, timeout)
        raise RuntimeError("kill_500 (test-only): the kill was done; this answer is made a 500")


class KillKillsAll(ProcessManager):
    """A per-program kill that takes every other program down with it, then answers."""

    async def kill_async(self, name: str | None, timeout: float | None = None) -> dict[str, Any]:
        target = await super().kill_async(name, timeout)
        for other in list(self.programs):
            if other != target.get("name"):
                await super().kill_async(other, timeout)
        return target


class KillThenDrop(ProcessManager):
    async def kill_async(self, name: str | None, timeout: float | None = None) -> dict[str, Any]:
        await super().kill_async(name, timeout)
        os._exit(1)  # the old bug: the kill took the supervisor down, the client saw no answer


class OpenToken(Token):
    """A token that lets every request in, with or without a credential."""

    def allows(self, presented: str | None) -> bool:
        return True


class NoBodyLimit(BodyLimit):
    """Passes every body through, however large."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


# ----- assembling them ----------------------------------------------------------------

_MANAGER_CLASSES = {
    "no_shutdown_stop": NoShutdownStop,
    "kill_500": KillThen500,
    "kill_drop": KillThenDrop,
    "kill_kills_all": KillKillsAll,
}


def _load_config(breaks: frozenset[str], path: Path) -> config.Config:
    log.warning("event=broken_parts parts=%s (test-only; evidence is void)", sorted(breaks))
    cfg = config.load(path)
    if "no_autorestart" in breaks:
        programs = tuple(dataclasses.replace(p, autorestart=False) for p in cfg.programs)
        cfg = dataclasses.replace(cfg, programs=programs)
    return cfg


def _manager_factory(breaks: frozenset[str]) -> Callable[..., ProcessManager]:
    bases = tuple(cls for name, cls in _MANAGER_CLASSES.items() if name in breaks)
    manager_class = type("BrokenManager", bases, {}) if bases else ProcessManager
    kwargs: dict[str, Any] = {}
    if "no_keeper" in breaks:
        kwargs["keeper"] = NoKeeper
    if "no_subreaper" in breaks:
        kwargs["become_subreaper"] = _no_subreaper
    return partial(manager_class, **kwargs)


def _app(breaks: frozenset[str], manager: ProcessManager, token: Token) -> FastAPI:
    if "no_auth" in breaks:
        token = OpenToken(token.value, token.source)
    body_limit = NoBodyLimit if "no_body_limit" in breaks else BodyLimit
    return create_app(manager, token, body_limit=body_limit)


def _containment(breaks: frozenset[str], mode: str, instance: str) -> Containment:
    real = choose(mode, instance)
    if "leader_only_kill" in breaks:
        return LeaderOnlyContainment(real)  # type: ignore[return-value]
    if "no_shutdown_stop" in breaks:
        return NoCleanupContainment(real)  # type: ignore[return-value]
    return real


def parts(breaks: frozenset[str]) -> cli.Parts:
    """The real supervisor's parts with the named ones replaced."""
    db = partial(StateDB, migrate=legacy_migration_error)
    return cli.Parts(
        load_config=partial(_load_config, breaks),
        db=db if "legacy_migration_error" in breaks else StateDB,
        containment=partial(_containment, breaks),
        manager=_manager_factory(breaks),
        app=partial(_app, breaks),
    )


def _usage(problem: str) -> int:
    known = "\n".join(f"  {name:24} {what}" for name, what in KNOWN.items())
    print(
        f"broken_supervisor: {problem}\n"
        "usage: python tests/broken_supervisor.py --break NAME[,NAME...] serve ...\n"
        f"known names:\n{known}",
        file=sys.stderr,
    )
    return 2


def main(argv: Sequence[str]) -> int:
    argv = list(argv)
    if argv and argv[0].startswith("--break="):
        argv[:1] = ["--break", argv[0].partition("=")[2]]
    if len(argv) < 2 or argv[0] != "--break":
        return _usage("the first argument must be --break NAME[,NAME...]")
    breaks = frozenset(n.strip() for n in argv[1].split(",") if n.strip())
    unknown = sorted(breaks - KNOWN.keys())
    if unknown or not breaks:
        return _usage(f"unknown or no part names {unknown or argv[1]!r}")
    return cli.main(argv[2:], parts=parts(breaks))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
