"""Thin wrappers over Linux process APIs: /proc, prctl, pidfds.

Everything here reads the kernel directly so the hot path of a kill costs a
few system calls, not a psutil scan.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

_PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True, slots=True)
class ProcInfo:
    pid: int
    ppid: int
    pgid: int
    sid: int
    start_ticks: int  # field 22 of /proc/PID/stat: identity together with the pid
    state: str  # R, S, D, Z, T, ...

    @property
    def zombie(self) -> bool:
        return self.state in ("Z", "X")

    @property
    def create_time(self) -> float:
        return ticks_to_epoch(self.start_ticks)


def read_stat(pid: int) -> ProcInfo | None:
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        data = os.read(fd, 4096)
    except ProcessLookupError:
        return None
    finally:
        os.close(fd)
    if not data:
        return None
    # comm may hold spaces and parentheses: split at the last ')'
    rest = data[data.rindex(b")") + 2 :].split()
    return ProcInfo(
        pid=pid,
        ppid=int(rest[1]),
        pgid=int(rest[2]),
        sid=int(rest[3]),
        start_ticks=int(rest[19]),
        state=rest[0].decode(),
    )


def scan() -> dict[int, ProcInfo]:
    """Every process on the machine, read from /proc."""
    procs: dict[int, ProcInfo] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = read_stat(int(name))
            if info is not None:
                procs[info.pid] = info
    return procs


def children_map(procs: Mapping[int, ProcInfo]) -> dict[int, list[int]]:
    """ppid -> child pids, from one scan."""
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    return children


def descendants(procs: Mapping[int, ProcInfo], root: int) -> list[ProcInfo]:
    children = children_map(procs)
    out: list[ProcInfo] = []
    stack = list(children.get(root, ()))
    while stack:
        pid = stack.pop()
        out.append(procs[pid])
        stack.extend(children.get(pid, ()))
    return out


def read_environ(pid: int) -> dict[bytes, bytes]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            data = fh.read()
    except OSError:
        return {}
    env: dict[bytes, bytes] = {}
    for item in data.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key] = value
    return env


@cache
def _clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


@cache
def _boot_time() -> float:
    with open("/proc/stat", "rb") as fh:
        for line in fh:
            if line.startswith(b"btime "):
                return float(line.split()[1])
    raise RuntimeError("no btime in /proc/stat")


def ticks_to_epoch(ticks: int) -> float:
    return _boot_time() + ticks / _clock_ticks()


@cache
def boot_id() -> str:
    with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
        return fh.read().strip()


def set_child_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(err)}")


class PidHandle:
    """A pidfd pinned to one process, checked against its recorded start time.

    Opening the pidfd and then re-reading the start time proves the fd refers
    to the process we recorded, not a later one that reused its pid.
    """

    __slots__ = ("pid", "fd")

    def __init__(self, pid: int, fd: int) -> None:
        self.pid = pid
        self.fd = fd

    @classmethod
    def open(cls, pid: int, start_ticks: int) -> PidHandle | None:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        info = read_stat(pid)
        if info is None or info.start_ticks != start_ticks:
            os.close(fd)
            return None
        return cls(pid, fd)

    def send(self, sig: int) -> bool:
        try:
            signal.pidfd_send_signal(self.fd, sig)
            return True
        except ProcessLookupError:
            return False

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def signal_checked(info: ProcInfo, *signals: int) -> bool:
    """Send ``signals`` in order to the process ``info`` names, only if it is still that
    process (pid and start time); False when it is gone or was replaced."""
    handle = PidHandle.open(info.pid, info.start_ticks)
    if handle is None:
        return False
    try:
        return all([handle.send(sig) for sig in signals])
    finally:
        handle.close()


def safe_killpg(pgid: int, sig: int) -> bool:
    """Signal a process group, never our own and never init's."""
    if pgid <= 1 or pgid == os.getpgrp():
        return False
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


def reap(pid: int) -> tuple[int, int] | None:
    """Reap one zombie child by pid (never waitpid(-1)); None when not reapable."""
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return (got, status) if got else None
