"""cgroup containment: every program in its own cgroup v2.

Layout: ``<our cgroup>/supervisor-<instance>/<program>``. The cgroup v2 mount is
read from ``/proc/self/mountinfo`` and our cgroup from ``/proc/self/cgroup``
(``0::/path``), never assumed. The supervisor stays in its own cgroup, outside
the subtree it manages, and the instance node holds no process itself (the
cgroup v2 rule for inner nodes).

- Joining: the leader starts as ``sh`` (``HOLD_SH``) blocked on a read of its
  stdin; the supervisor writes its pid to the program's ``cgroup.procs``
  (``admit``) and only then sends the line that lets it exec the program,
  under the same pid. No code of the program runs outside its cgroup, so
  nothing it forks can be outside either, and the leader is inside before the
  start returns (a kill or a keeper right after it finds it there). If the
  supervisor dies first, the read ends at EOF and ``sh`` exits without running
  anything. (Python 3.11's ``subprocess`` has no ``CLONE_INTO_CGROUP``. A
  ``preexec_fn`` joined before, but it makes ``subprocess`` fork the whole
  supervisor instead of ``vfork``: every start copied its page tables, and the
  next kill paid a copy-on-write fault on each page it touched, about 0.18 ms
  of the loop thread's CPU per kill.)
- Membership is ``cgroup.procs``; no /proc scan.
- Stopping (``supervisor.stop.cgroup_ladder``): the stop signal to every
  member through checked pidfds, newcomers signalled as they appear, emptiness
  (``populated 0``) awaited as a notification on ``cgroup.events``, never a
  sleep; at the timeout ``cgroup.kill`` ends the whole subtree atomically,
  forks included. Driven blocking (``stop``) or on the event loop
  (``stop_async``, no thread-pool hop).
- The keeper is ``sh``: at EOF on its stdin it writes ``1`` to the instance's
  ``cgroup.kill`` and removes the empty tree.
- An instance id names its owner (``supervisor.stop.instance``): a dead
  owner's ``supervisor-*`` subtree is reclaimed at start, a live one's never.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from supervisor.errors import ContainmentError
from supervisor.stop import instance as instances
from supervisor.stop import proc
from supervisor.stop.cgroup_ladder import Watch, ladder, run_async, run_sync, wait_sync
from supervisor.stop.cgroup_ladder import procs as pids_in
from supervisor.stop.containment import Target
from supervisor.stop.ladder import LadderResult

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


# The leader's first image: it waits until the supervisor has put it in its cgroup and
# says so on stdin, then execs the program ("$@"). At EOF (the supervisor died first) it
# exits without running anything. The manager has checked the executable already, so a
# missing command still fails the start with the OS error.
HOLD_SH = 'read -r _ || exit 125; exec "$@" </dev/null'


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


def _children(cgroup: Path) -> list[Path]:
    try:
        return [p for p in cgroup.iterdir() if p.is_dir()]
    except FileNotFoundError:
        return []


def _subtree_pids(cgroup: Path) -> list[int]:
    return pids_in(cgroup) + [pid for child in _children(cgroup) for pid in pids_in(child)]


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


# ----- the containment ---------------------------------------------------------------


class CgroupContainment:
    name = "cgroup"

    def __init__(self, instance: str, parent: Path, reason: str) -> None:
        self.instance = instance
        self.parent = parent  # our own cgroup
        self.root = parent / f"{PREFIX}{instance}"
        self.reason = reason
        # per started program, until it is released: the watch a kill waits on (made
        # once, not on the kill's path)
        self._watches: dict[str, Watch] = {}

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

    def prepare(self, program: str) -> list[str]:
        if program not in self._watches:
            cgroup = self.root / program
            cgroup.mkdir(exist_ok=True)
            self._watches[program] = Watch(cgroup)
        return ["/bin/sh", "-c", HOLD_SH, "supervisor-hold"]

    def admit(self, program: str, pid: int) -> None:
        (self.root / program / "cgroup.procs").write_bytes(str(pid).encode())

    def members(
        self, target: Target, procs: Mapping[int, proc.ProcInfo] | None = None
    ) -> list[proc.ProcInfo]:
        found = []
        for pid in pids_in(self.root / target.name):
            info = procs.get(pid) if procs is not None else proc.read_stat(pid)
            if info is not None and not info.zombie:
                found.append(info)
        return found

    def _start(self, target: Target) -> tuple[Path, Watch, bool] | None:
        """The program's cgroup and its watch, and whether the caller must close it."""
        cgroup = self.root / target.name
        watch = self._watches.get(target.name)
        if watch is not None:
            return cgroup, watch, False
        try:
            return cgroup, Watch(cgroup), True
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
        cgroup, watch, owned = started
        try:
            return run_sync(ladder(cgroup, watch, stop_signal, timeout))
        finally:
            if owned:
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
        cgroup, watch, owned = started
        try:
            return await run_async(ladder(cgroup, watch, stop_signal, timeout), signalled)
        finally:
            if owned:
                watch.close()

    def released(self, program: str) -> None:
        watch = self._watches.pop(program, None)
        if watch is not None:
            watch.close()
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
        for program in list(self._watches):
            self.released(program)
        if not _remove_tree(self.root):
            _kill_tree(self.root)


def _kill_tree(cgroup: Path) -> int:
    """``cgroup.kill`` on a whole subtree, wait for it to empty, remove it; processes killed."""
    pids = _subtree_pids(cgroup)
    if pids:
        try:
            watch = Watch(cgroup)
        except FileNotFoundError:
            return 0
        try:
            (cgroup / "cgroup.kill").write_bytes(b"1")
            end = time.monotonic() + RECLAIM_DEADLINE_S
            while watch.populated() and time.monotonic() < end:
                wait_sync(watch.fd, end - time.monotonic())
        except FileNotFoundError:
            pass  # another supervisor reclaimed it meanwhile
        finally:
            watch.close()
    if not _remove_tree(cgroup):
        log.error("event=cgroup_not_removed cgroup=%s pids=%s", cgroup, _subtree_pids(cgroup))
    return len(pids)
