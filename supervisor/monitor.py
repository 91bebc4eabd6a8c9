"""The monitor thread: wakes when a leader exits, a timer is due, or every tick.

It owns no program logic. Each pass it hands every program to ``check`` (the
manager's state machine), scans /proc at most once per tick for ``on_scan``,
and calls ``every_pass`` (the keeper's health check). Leaders are watched
through their pidfds, so an exit wakes it at once instead of at the next tick.

The pidfds sit in one epoll set, so another thread can take a leader out of it
at once (``hold``): a kill does so before it signals, because the leader's exit
would otherwise wake this thread in the middle of the kill, only to find the
program held, and the two threads' GIL hand-offs cost the kill about 0.15 ms of
its 1.2 ms (measured with ``benchmarks/vs_supervisord.py``'s workload).
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections.abc import Callable, Mapping

from supervisor.program import Program
from supervisor.states import State
from supervisor.stop import proc

log = logging.getLogger("supervisor.process")

TICK_S = 0.25
BUSY_RECHECK_S = 0.02


class Monitor:
    def __init__(
        self,
        programs: Mapping[str, Program],
        *,
        check: Callable[[Program], bool],
        on_scan: Callable[[dict[int, proc.ProcInfo]], None],
        every_pass: Callable[[], None],
    ) -> None:
        self._programs = programs
        self._check = check
        self._on_scan = on_scan
        self._every_pass = every_pass
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._epoll = select.epoll()
        self._epoll.register(self._wake_r, select.EPOLLIN)
        self._watched: list[int] = []  # the leader pidfds in the set
        self._held: set[str] = set()  # programs an operation took out of the set
        self._set_lock = threading.Lock()  # the set, _watched and _held change together

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="monitor", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Make the loop re-read the programs now (a new leader fd, a new timer)."""
        os.write(self._wake_w, b"x")

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        if not (self._thread is not None and self._thread.is_alive()):
            self._epoll.close()

    def hold(self, name: str) -> None:
        """Stop watching ``name``'s leader until ``release``: an operation on the program
        (a kill) handles its exit itself. Safe from any thread, while the loop waits."""
        with self._set_lock:
            self._held.add(name)
            fd = self._programs[name].leader_fd
            if fd in self._watched:
                self._watched.remove(fd)
                self._forget(fd)

    def release(self, name: str) -> None:
        """Watch ``name``'s leader again from the next pass on."""
        with self._set_lock:
            self._held.discard(name)

    def _forget(self, fd: int) -> None:
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):  # closed meanwhile: the kernel dropped it already
            pass

    def _watch(self, busy: set[str]) -> None:
        """The set holds the leaders of the programs neither busy nor held, and no other."""
        with self._set_lock:
            for fd in self._watched:  # fd numbers are reused: rebuilt, never diffed
                self._forget(fd)
            watched = []
            for prog in self._programs.values():
                fd = prog.leader_fd
                if fd >= 0 and prog.name not in busy | self._held:
                    try:
                        self._epoll.register(fd, select.EPOLLIN)
                    except OSError:  # closed by an operation meanwhile; next pass
                        continue
                    watched.append(fd)
            self._watched = watched

    def watching(self, fd: int) -> bool:
        """Whether ``fd`` is in the wait set now."""
        with self._set_lock:
            return fd in self._watched

    def _wait(self, busy: set[str]) -> None:
        """Sleep until a watched leader exits, a backoff is due, or the tick ends."""
        self._watch(busy)
        timeout = BUSY_RECHECK_S if busy else TICK_S
        for prog in self._programs.values():
            if prog.state is State.BACKOFF and prog.next_start_at is not None:
                timeout = min(timeout, max(0.0, prog.next_start_at - time.monotonic()))
        events = self._epoll.poll(timeout)
        if any(fd == self._wake_r for fd, _ in events):
            os.read(self._wake_r, 4096)

    def _loop(self) -> None:
        last_scan = 0.0
        busy: set[str] = set()  # held by an operation: their leader fds would only spin us
        while not self._stopping.is_set():
            self._wait(busy)
            if self._stopping.is_set():
                break
            try:
                busy = {p.name for p in self._programs.values() if not self._check(p)}
                # one /proc scan per tick at most: a wake-up for a leader's exit usually
                # comes mid-kill, and a scan then would only compete with the kill's own
                if time.monotonic() - last_scan >= TICK_S:
                    last_scan = time.monotonic()
                    self._on_scan(proc.scan())
                self._every_pass()
            except Exception:
                log.exception("event=monitor_error")
                time.sleep(TICK_S)
