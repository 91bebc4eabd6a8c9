"""cgroup containment: every program in its own cgroup v2.

Layout: ``<our cgroup>/supervisor-<instance>/<program>``. The cgroup v2 mount is
read from ``/proc/self/mountinfo`` and our cgroup from ``/proc/self/cgroup``
(``0::/path``), never assumed. The supervisor stays in its own cgroup, outside
the subtree it manages, and the instance node holds no process itself (the
cgroup v2 rule for inner nodes).

- Joining: the child writes ``0`` (itself) to its program's ``cgroup.procs``
  through a descriptor opened by the parent, in ``preexec_fn``, after fork and
  before exec; no code of the program runs outside its cgroup, so nothing it
  forks can be outside either. (Python 3.11's ``subprocess`` has no
  ``CLONE_INTO_CGROUP``; ``os.write`` on an inherited fd is the whole preexec.)
- Membership is ``cgroup.procs``; no /proc scan.
- Stopping (``_ladder``): the stop signal to every member, through pidfds
  checked against a second read of ``cgroup.procs``; newcomers are signalled
  as they appear; emptiness is awaited through a notification on ``cgroup.events``
  (``populated 0``, POLLPRI through epoll), never a sleep; at the timeout ``cgroup.kill`` ends the
  whole subtree atomically, forks included. The ladder is written once as a
  generator and driven either blocking (``stop``) or on the event loop
  (``stop_async``, no thread-pool hop).
- The keeper is ``sh``: at EOF on its stdin it writes ``1`` to the instance's
  ``cgroup.kill`` and removes the empty tree.
- An instance id names its owner (``supervisor.stop.instance``): a dead
  owner's ``supervisor-*`` subtree is reclaimed at start, a live one's never.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import select
import signal
import time
from collections.abc import Callable, Generator, Mapping
from functools import partial
from pathlib import Path

from supervisor.errors import ContainmentError
from supervisor.stop import instance as instances
from supervisor.stop import proc
from supervisor.stop.containment import Target
from supervisor.stop.ladder import KILL_PHASE_LIMIT_S, RESCAN_INTERVAL_S, LadderResult

log = logging.getLogger("supervisor.stop.cgroup")

MOUNTINFO = Path("/proc/self/mountinfo")
SELF_CGROUP = Path("/proc/self/cgroup")
PREFIX = "supervisor-"
RECLAIM_DEADLINE_S = 2.0

# The whole keeper. $1 is the instance's cgroup. It waits for EOF on stdin (the
# supervisor holds the only write end), kills the subtree in one write, then
# removes the empty cgroups; rmdir fails with EBUSY until the kill has landed, so
# it retries for at most 3 s.
KEEPER_SH = """\
trap '' INT TERM HUP
while read -r _; do :; done
d=$1
[ -d "$d" ] || exit 0
read -r populated < "$d/cgroup.events"
if [ "$populated" = "populated 1" ]; then
  echo 1 > "$d/cgroup.kill"
  echo "supervisor keeper: supervisor gone; cgroup.kill on $d" >&2
fi
n=0
while [ -d "$d" ] && [ $n -lt 300 ]; do
  for c in "$d"/*/; do [ -d "$c" ] && rmdir "$c"; done 2>/dev/null
  rmdir "$d" 2>/dev/null && exit 0
  n=$((n + 1))
  sleep 0.01
done
[ ! -d "$d" ]
"""


# ----- finding our place ------------------------------------------------------------


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def find_mount(mountinfo: Path = MOUNTINFO) -> tuple[Path, str]:
    """The cgroup2 mount point and the cgroup path its root shows, from mountinfo."""
    try:
        lines = mountinfo.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ContainmentError(f"cannot read {mountinfo}: {exc.strerror}") from exc
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if sep and right.split()[:1] == ["cgroup2"] and len(fields) >= 5:
            return Path(_unescape(fields[4])), _unescape(fields[3])
    raise ContainmentError(
        f"no cgroup v2 mount in {mountinfo} (only cgroup v1, or none);"
        ' mount cgroup2 or set server.containment = "session"'
    )


def own_cgroup(self_cgroup: Path = SELF_CGROUP) -> str:
    """Our cgroup v2 path (the ``0::/path`` line of /proc/self/cgroup)."""
    try:
        lines = self_cgroup.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ContainmentError(f"cannot read {self_cgroup}: {exc.strerror}") from exc
    for line in lines:
        if line.startswith("0::"):
            return line[3:]
    raise ContainmentError(f"{self_cgroup} has no cgroup v2 line (0::/path)")


def _procs(cgroup: Path) -> list[int]:
    """The pids in one cgroup (not its children); [] when it is gone."""
    try:
        with open(cgroup / "cgroup.procs", "rb") as fh:
            return [int(x) for x in fh.read().split()]
    except FileNotFoundError:
        return []


def _children(cgroup: Path) -> list[Path]:
    try:
        return [p for p in cgroup.iterdir() if p.is_dir()]
    except FileNotFoundError:
        return []


def _subtree_procs(cgroup: Path) -> list[int]:
    return _procs(cgroup) + [pid for child in _children(cgroup) for pid in _procs(child)]


def _rmdir(cgroup: Path) -> bool:
    """Remove one empty cgroup; True when it is gone."""
    try:
        cgroup.rmdir()
    except FileNotFoundError:
        return True
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            return False
        raise
    return True


def _remove_tree(cgroup: Path) -> bool:
    gone = [_rmdir(child) for child in _children(cgroup)]
    return all(gone) and _rmdir(cgroup)


# ----- waiting for emptiness -------------------------------------------------------


class _Watch:
    """``populated`` of one cgroup, and an fd that turns readable when ``cgroup.events`` changes.

    kernfs flags a change of ``cgroup.events`` as POLLPRI on the open file, until the
    file is read again. An epoll set holding just that (level-triggered) is itself
    readable exactly then, so the same fd serves ``poll`` and the event loop's
    ``add_reader``. (inotify would do too, but closing an inotify instance waits
    for an SRCU grace period: 8-20 ms on every kill.)
    """

    def __init__(self, cgroup: Path) -> None:
        self.cgroup = cgroup
        self.events = os.open(cgroup / "cgroup.events", os.O_RDONLY | os.O_CLOEXEC)
        self._epoll = select.epoll()
        self._epoll.register(self.events, select.EPOLLPRI)
        self.fd = self._epoll.fileno()

    def populated(self) -> bool:
        # reading re-arms the POLLPRI notification
        return b"populated 1" in os.pread(self.events, 256, 0)

    def close(self) -> None:
        self._epoll.close()
        os.close(self.events)


def _readable(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def _wait_sync(fd: int, timeout: float) -> None:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    poller.poll(max(0.0, timeout) * 1000)


async def _wait_async(fd: int, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    woken = loop.create_future()

    def wake() -> None:
        if not woken.done():
            woken.set_result(None)

    loop.add_reader(fd, wake)
    timer = loop.call_later(max(0.0, timeout), wake)
    try:
        await woken
    finally:
        timer.cancel()
        loop.remove_reader(fd)


# ----- the ladder -------------------------------------------------------------------


class _Signaller:
    """pidfds of the members signalled so far."""

    def __init__(self, cgroup: Path, result: LadderResult) -> None:
        self.cgroup = cgroup
        self.result = result
        self.fds: dict[int, int] = {}

    def signal_new(self, sig: int) -> None:
        opened = {}
        for pid in _procs(self.cgroup):
            if pid not in self.fds:
                try:
                    opened[pid] = os.pidfd_open(pid)
                except ProcessLookupError:
                    continue
        if not opened:
            return
        # a pid read before its pidfd was opened may have been reused meanwhile; the
        # pidfd is ours to signal only if the pid is (still) in the cgroup now
        still = set(_procs(self.cgroup))
        for pid, fd in opened.items():
            self.fds[pid] = fd
            if pid in still:
                try:
                    signal.pidfd_send_signal(fd, sig)
                    self.result.signalled.add(pid)
                except ProcessLookupError:
                    pass

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


_Wait = tuple[int, float]  # wait until this fd is readable, at most this many seconds


def _ladder(
    cgroup: Path, watch: _Watch, stop_signal: int, timeout: float
) -> Generator[_Wait, None, LadderResult]:
    """Yields what to wait for; returns who was signalled and who survived."""
    result = LadderResult()
    signaller = _Signaller(cgroup, result)
    try:
        deadline = time.monotonic() + timeout
        signaller.signal_new(stop_signal)
        while watch.populated():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            yield watch.fd, min(remaining, RESCAN_INTERVAL_S)
            if watch.populated():
                signaller.signal_new(stop_signal)  # what was forked meanwhile
        if watch.populated():
            log.warning(
                "event=ladder_escalate cgroup=%s pids=%s after stop_timeout=%.1fs",
                cgroup,
                _procs(cgroup),
                timeout,
            )
            (cgroup / "cgroup.kill").write_bytes(b"1")
            kill_end = time.monotonic() + KILL_PHASE_LIMIT_S
            while watch.populated() and time.monotonic() < kill_end:
                yield watch.fd, kill_end - time.monotonic()
            result.survivors = sorted(_procs(cgroup))
        # a process leaves its cgroup a moment before it becomes a zombie its parent can
        # reap; wait for the pidfds too, so the leader's exit status is there to collect
        for fd in signaller.fds.values():
            if not result.survivors and not _readable(fd):
                yield fd, KILL_PHASE_LIMIT_S
        return result
    finally:
        signaller.close()


def _run_sync(ladder: Generator[_Wait, None, LadderResult]) -> LadderResult:
    try:
        wait = next(ladder)
        while True:
            _wait_sync(*wait)
            wait = ladder.send(None)
    except StopIteration as done:
        result: LadderResult = done.value
        return result


async def _run_async(
    ladder: Generator[_Wait, None, LadderResult], signalled: Callable[[], None]
) -> LadderResult:
    try:
        try:
            wait = next(ladder)  # the stop signal goes out here
        finally:
            signalled()
        while True:
            await _wait_async(*wait)
            wait = ladder.send(None)
    except StopIteration as done:
        result: LadderResult = done.value
        return result


# ----- the containment ---------------------------------------------------------------


class CgroupContainment:
    name = "cgroup"

    def __init__(self, instance: str, parent: Path, reason: str) -> None:
        self.instance = instance
        self.parent = parent  # our own cgroup
        self.root = parent / f"{PREFIX}{instance}"
        self.reason = reason
        self._procs_fds: dict[str, int] = {}

    @classmethod
    def create(
        cls, instance: str, *, mountinfo: Path = MOUNTINFO, self_cgroup: Path = SELF_CGROUP
    ) -> CgroupContainment:
        """Find our cgroup, make the instance's node, check it has ``cgroup.kill``."""
        mount, mount_root = find_mount(mountinfo)
        path = own_cgroup(self_cgroup)
        if mount_root != "/" and path.startswith(mount_root):
            path = path[len(mount_root) :]
        parent = mount / path.lstrip("/")
        root = parent / f"{PREFIX}{instance}"
        try:
            root.mkdir()
        except OSError as exc:
            raise ContainmentError(
                f"cgroup v2 at {mount}: cannot create {root}: {exc.strerror}; run as root,"
                " or delegate the cgroup to this user (systemd Delegate=yes), or set"
                ' server.containment = "session"'
            ) from exc
        if not (root / "cgroup.kill").exists():
            _rmdir(root)
            raise ContainmentError(
                f"cgroup v2 at {mount} has no cgroup.kill (Linux 5.14 or later needed, this is"
                f' {os.uname().release}); set server.containment = "session"'
            )
        return cls(instance, parent, f"cgroup v2 at {mount}, writable, with cgroup.kill")

    def prepare(self, program: str) -> Callable[[], None] | None:
        fd = self._procs_fds.get(program)
        if fd is None:
            cgroup = self.root / program
            cgroup.mkdir(exist_ok=True)
            fd = os.open(cgroup / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
            self._procs_fds[program] = fd
        # runs in the child between fork and exec: "0" moves the writer itself
        return partial(os.write, fd, b"0")  # type: ignore[return-value]

    def members(
        self, target: Target, procs: Mapping[int, proc.ProcInfo] | None = None
    ) -> list[proc.ProcInfo]:
        found = []
        for pid in _procs(self.root / target.name):
            info = procs.get(pid) if procs is not None else proc.read_stat(pid)
            if info is not None and not info.zombie:
                found.append(info)
        return found

    def _start(self, target: Target) -> tuple[Path, _Watch] | None:
        cgroup = self.root / target.name
        try:
            return cgroup, _Watch(cgroup)
        except FileNotFoundError:
            return None  # never started, or already removed: nothing to stop

    def stop(
        self,
        target: Target,
        stop_signal: int,
        timeout: float,
        members: list[proc.ProcInfo] | None = None,
    ) -> LadderResult:
        started = self._start(target)
        if started is None:
            return LadderResult()
        cgroup, watch = started
        try:
            return _run_sync(_ladder(cgroup, watch, stop_signal, timeout))
        finally:
            watch.close()

    async def stop_async(
        self,
        target: Target,
        stop_signal: int,
        timeout: float,
        members: list[proc.ProcInfo] | None = None,
        *,
        signalled: Callable[[], None] = lambda: None,
    ) -> LadderResult:
        started = self._start(target)
        if started is None:
            signalled()
            return LadderResult()
        cgroup, watch = started
        try:
            return await _run_async(_ladder(cgroup, watch, stop_signal, timeout), signalled)
        finally:
            watch.close()

    def released(self, program: str) -> None:
        fd = self._procs_fds.pop(program, None)
        if fd is not None:
            os.close(fd)
        if not _rmdir(self.root / program):
            log.warning("event=cgroup_busy cgroup=%s; left for the next stop", self.root / program)

    def keeper_command(self) -> list[str]:
        return ["/bin/sh", "-c", KEEPER_SH, "supervisor-keeper", str(self.root)]

    def reclaim(self, instance: str) -> int:
        if instance == self.instance or instances.owner_alive(instance):
            return 0  # never a live supervisor's programs
        return _kill_tree(self.parent / f"{PREFIX}{instance}")

    def reclaim_orphans(self) -> dict[str, int]:
        killed = {}
        for child in _children(self.parent):
            instance = child.name[len(PREFIX) :]
            if child.name.startswith(PREFIX) and child != self.root:
                if not instances.owner_alive(instance):
                    killed[instance] = _kill_tree(child)
        return killed

    def close(self) -> None:
        for program in list(self._procs_fds):
            self.released(program)
        if not _remove_tree(self.root):
            _kill_tree(self.root)


def _kill_tree(cgroup: Path) -> int:
    """``cgroup.kill`` on a whole subtree, wait for it to empty, remove it; processes killed."""
    pids = _subtree_procs(cgroup)
    if pids:
        try:
            watch = _Watch(cgroup)
        except FileNotFoundError:
            return 0
        try:
            (cgroup / "cgroup.kill").write_bytes(b"1")
            end = time.monotonic() + RECLAIM_DEADLINE_S
            while watch.populated() and time.monotonic() < end:
                _wait_sync(watch.fd, end - time.monotonic())
        except FileNotFoundError:
            pass  # another supervisor reclaimed it meanwhile
        finally:
            watch.close()
    if not _remove_tree(cgroup):
        log.error("event=cgroup_not_removed cgroup=%s pids=%s", cgroup, _subtree_procs(cgroup))
    return len(pids)
