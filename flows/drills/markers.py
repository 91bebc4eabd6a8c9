"""Drill markers: which processes belong to a launch, and killing them.

Every process a harness launch starts carries ``CHAOS_DRILL_MARKER`` in its
environment (the supervisor and, through inheritance, every program process,
double-forked ones included). A marker is
``<runner pid>-<runner start time>-<uuid>``: a later run kills the leftovers of
runners that no longer exist, and never a live runner's.

A drill also gives each program of its config ``CHAOS_DRILL_PROGRAM=<name>`` in
the program's ``env``, so its checks can tell the program it drills from the
others (:func:`by_program`). A workload that clears its environment carries
``chaos-drill-marker=<marker>`` as a whole argument instead (:func:`argv_token`).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterable

import psutil

MARKER_ENV = "CHAOS_DRILL_MARKER"
PROGRAM_ENV = "CHAOS_DRILL_PROGRAM"
ARGV_PREFIX = "chaos-drill-marker="
Note = Callable[[str], None]


def runner_marker() -> str:
    """``<runner pid>-<runner start time>-<uuid>``: lets a later run spot our leftovers."""
    me = psutil.Process()
    return f"{me.pid}-{me.create_time():.2f}-{uuid.uuid4().hex[:12]}"


def _owner_alive(marker: str) -> bool:
    try:
        pid, created, _ = marker.split("-", 2)
        return abs(psutil.Process(int(pid)).create_time() - float(created)) < 0.05
    except (ValueError, psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _marked(predicate: Callable[[str], bool]) -> list[tuple[psutil.Process, str | None]]:
    """Live (non-zombie) processes whose drill marker satisfies ``predicate``, with their
    program marker (None when they carry none)."""
    found = []
    me = os.getpid()
    for proc in psutil.process_iter():
        try:
            if proc.pid == me:
                continue
            env = proc.environ()
            value = env.get(MARKER_ENV)
            if value is not None and predicate(value) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append((proc, env.get(PROGRAM_ENV)))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def marked_processes(predicate: Callable[[str], bool]) -> list[psutil.Process]:
    """Live (non-zombie) processes whose drill marker satisfies ``predicate``."""
    return [proc for proc, _ in _marked(predicate)]


def find_marked(
    marker: str, exclude: Iterable[int] = (), program: str | None = None
) -> list[psutil.Process]:
    """Every live process carrying exactly this marker, ``exclude`` left out; with
    ``program``, only those whose program marker is that name."""
    skip = set(exclude)
    return [
        p
        for p, name in _marked(lambda v: v == marker)
        if p.pid not in skip and (program is None or name == program)
    ]


def by_program(marker: str, exclude: Iterable[int] = ()) -> dict[str | None, list[psutil.Process]]:
    """The live processes carrying this marker, grouped by their program marker."""
    skip = set(exclude)
    groups: dict[str | None, list[psutil.Process]] = {}
    for proc, name in _marked(lambda v: v == marker):
        if proc.pid not in skip:
            groups.setdefault(name, []).append(proc)
    return groups


def argv_token(marker: str) -> str:
    """The argument that marks a process by its command line: ``chaos-drill-marker=<marker>``."""
    return ARGV_PREFIX + marker


def _argv_marked(predicate: Callable[[str], bool]) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if any(a.startswith(ARGV_PREFIX) and predicate(a[len(ARGV_PREFIX) :]) for a in cmdline):
            found.append(proc)
    return found


def find_by_argv(marker: str) -> list[psutil.Process]:
    """Live (non-zombie) processes with :func:`argv_token` of ``marker`` as a whole argument.

    For workloads that clear their environment: a process keeps its parent's argv
    from fork to exec, so a token every command line carries cannot miss one.
    """
    return _argv_marked(lambda value: value == marker)


def kill_found(find: Callable[[], list[psutil.Process]], timeout: float = 10.0) -> list[int]:
    """SIGSTOP then SIGKILL every process ``find`` returns, until it returns none; their pids.

    SIGSTOP first, so a process cannot fork between our scan and its SIGKILL.
    """
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs = find()
        if not procs:
            break
        for proc in procs:
            for sig in (signal.SIGSTOP, signal.SIGKILL):
                try:
                    proc.send_signal(sig)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            killed.add(proc.pid)
        psutil.wait_procs(procs, timeout=0.2)
    return sorted(killed)


def kill_marked(predicate: Callable[[str], bool], timeout: float = 10.0) -> list[int]:
    """SIGSTOP then SIGKILL every process whose marker matches, until a scan finds none."""
    return kill_found(lambda: marked_processes(predicate), timeout)


def kill_leftovers(note: Note | None = None) -> list[int]:
    """Kill processes left by drill runners that no longer exist; return their pids."""
    pids = kill_marked(lambda value: not _owner_alive(value))
    pids += kill_found(lambda: _argv_marked(lambda value: not _owner_alive(value)))
    if pids and note:
        note(f"killed {len(pids)} leftover process(es) of dead drill runs: {pids}")
    return pids
