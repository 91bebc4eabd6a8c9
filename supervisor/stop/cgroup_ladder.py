"""The cgroup termination ladder, written once and driven blocking or on the event loop.

``ladder`` is a generator: it signals the members of one cgroup (read from
``cgroup.procs``) through pidfds checked against a second read, yields what to
wait for (an fd to become readable, a timeout), signals newcomers while the
cgroup stays populated, writes ``cgroup.kill`` at the timeout, and finally waits
for the signalled pidfds, so the leader's exit status is there to collect.
``run_sync`` drives it with ``poll`` (the monitor thread, shutdown, reclaiming);
``run_async`` on the event loop (``POST /process/kill``): for its first
``LOOP_HOLD_S`` it waits in ``poll`` on the loop's own thread, then with the
loop's ``add_reader``. A tree that obeys its stop signal is gone within that
time (0.3-0.6 ms here), and one wait through the loop costs more than the wait
itself: uvloop's ``add_reader``/``remove_reader`` are about eight syscalls, plus
a timer, a future and a task switch, per wake, and a kill wakes once or twice.
So the loop is held for at most ``LOOP_HOLD_S`` per kill, and a slow tree (one
that ignores SIGTERM, say) is waited for without holding it.

Emptiness is ``populated 0`` in ``cgroup.events``; kernfs flags a change of that
file as POLLPRI on the open file until it is read again (``Watch``). The kernel
sends that notification at most once per 10 ms per file (``cgroup_file_notify``,
``CGROUP_FILE_NOTIFY_MIN_INTV``, rounded up to whole jiffies: 12 ms at HZ=250), so
a kill that soon after the program's start heard of ``populated 0`` up to that much
late (measured: 6 ms of a 8 ms kill). The watch therefore also wakes when a
signalled member's pidfd turns readable, and every wake re-reads ``populated``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import signal
import time
from collections.abc import Callable, Generator
from pathlib import Path

from supervisor.stop.ladder import KILL_PHASE_LIMIT_S, RESCAN_INTERVAL_S, LadderResult

log = logging.getLogger("supervisor.stop.cgroup")

LOOP_HOLD_S = 0.002  # how long run_async may wait on the loop's own thread, per kill


def procs(cgroup: Path) -> list[int]:
    """The pids in one cgroup (not its children); [] when it is gone."""
    # plain fds, not a buffered file object: this is read twice on every kill's path
    try:
        fd = os.open(f"{cgroup}/cgroup.procs", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    try:
        chunks = [os.read(fd, 65536)]
        while chunks[-1]:
            chunks.append(os.read(fd, 65536))
    finally:
        os.close(fd)
    return [int(x) for x in b"".join(chunks).split()]


class Watch:
    """``populated`` of one cgroup, and an fd that turns readable when it may have changed.

    kernfs flags a change of ``cgroup.events`` as POLLPRI on the open file, until the
    file is read again. An epoll set holding that (level-triggered) is itself readable
    then, so the same fd serves ``poll`` and the event loop's ``add_reader``. (inotify
    would do too, but closing an inotify instance waits for an SRCU grace period:
    8-20 ms on every kill.) The set also holds the pidfds of the members a ladder
    signalled (``follow``), one-shot: a member's exit wakes the waiter once, without
    waiting for the rate-limited notification. Emptiness itself is always the file's
    ``populated 0``; a pidfd only says when to read it again.
    """

    def __init__(self, cgroup: Path) -> None:
        self.cgroup = cgroup
        self.events = os.open(cgroup / "cgroup.events", os.O_RDONLY | os.O_CLOEXEC)
        self._epoll = select.epoll()
        self._epoll.register(self.events, select.EPOLLPRI)
        self.fd = self._epoll.fileno()

    def populated(self) -> bool:
        # harvesting disarms the pidfds that fired (one-shot), reading re-arms the POLLPRI
        self._epoll.poll(0)
        return b"populated 1" in os.pread(self.events, 256, 0)

    def follow(self, pidfd: int) -> None:
        """Wake the waiter once when this member exits."""
        self._epoll.register(pidfd, select.EPOLLIN | select.EPOLLONESHOT)

    def unfollow(self, pidfd: int) -> None:
        self._epoll.unregister(pidfd)

    def close(self) -> None:
        self._epoll.close()
        os.close(self.events)


def _readable(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def wait_sync(fd: int, timeout: float) -> None:
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
    """pidfds of the members seen so far; the signalled ones are followed by the watch."""

    def __init__(self, cgroup: Path, watch: Watch, result: LadderResult) -> None:
        self.cgroup = cgroup
        self.watch = watch
        self.result = result
        self.fds: dict[int, int] = {}
        self.followed: list[int] = []  # pidfds of the signalled members

    def signal_new(self, sig: int) -> None:
        opened = {}
        for pid in procs(self.cgroup):
            if pid not in self.fds:
                try:
                    opened[pid] = os.pidfd_open(pid)
                except ProcessLookupError:
                    continue
        if not opened:
            return
        # a pid read before its pidfd was opened may have been reused meanwhile; the
        # pidfd is ours to signal only if the pid is (still) in the cgroup now
        still = set(procs(self.cgroup))
        for pid, fd in opened.items():
            self.fds[pid] = fd
            if pid not in still:
                continue
            try:
                signal.pidfd_send_signal(fd, sig)
            except ProcessLookupError:
                continue
            self.result.signalled.add(pid)
            self.watch.follow(fd)
            self.followed.append(fd)

    def close(self) -> None:
        for fd in self.followed:
            self.watch.unfollow(fd)
        self.followed.clear()
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


_Wait = tuple[int, float]  # wait until this fd is readable, at most this many seconds


def ladder(
    cgroup: Path, watch: Watch, stop_signal: int, timeout: float
) -> Generator[_Wait, None, LadderResult]:
    """Yields what to wait for; returns who was signalled and who survived."""
    result = LadderResult()
    signaller = _Signaller(cgroup, watch, result)
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
                procs(cgroup),
                timeout,
            )
            (cgroup / "cgroup.kill").write_bytes(b"1")
            kill_end = time.monotonic() + KILL_PHASE_LIMIT_S
            while watch.populated() and time.monotonic() < kill_end:
                yield watch.fd, kill_end - time.monotonic()
            result.survivors = sorted(procs(cgroup))
        # a process leaves its cgroup a moment before it becomes a zombie its parent can
        # reap; wait for the pidfds too, so the leader's exit status is there to collect
        # (a wait may end early: run_async's hold on the loop is shorter; so each fd is
        # waited for until it is readable or the deadline has passed)
        end = time.monotonic() + KILL_PHASE_LIMIT_S
        for fd in signaller.followed:
            while not result.survivors and not _readable(fd) and time.monotonic() < end:
                yield fd, end - time.monotonic()
        return result
    finally:
        signaller.close()


def run_sync(ladder: Generator[_Wait, None, LadderResult]) -> LadderResult:
    try:
        wait = next(ladder)
        while True:
            wait_sync(*wait)
            wait = ladder.send(None)
    except StopIteration as done:
        result: LadderResult = done.value
        return result


async def run_async(
    ladder: Generator[_Wait, None, LadderResult], signalled: Callable[[], None]
) -> LadderResult:
    try:
        try:
            wait = next(ladder)  # the stop signal goes out here
        finally:
            signalled()
        hold_until = time.monotonic() + LOOP_HOLD_S
        while True:
            held = hold_until - time.monotonic()
            if held > 0:
                wait_sync(wait[0], min(wait[1], held))
            else:
                await _wait_async(*wait)
            wait = ladder.send(None)
    except StopIteration as done:
        result: LadderResult = done.value
        return result
