"""The monitor thread: wakes when a leader exits, a timer is due, or every tick.

It owns no program logic. Each pass it hands every program to ``check`` (the
manager's state machine), scans /proc at most once per tick for ``on_scan``,
and calls ``every_pass`` (the keeper's health check). Leaders are watched
through their pidfds, so an exit wakes it at once instead of at the next tick.
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

    def _wait(self, busy: set[str]) -> None:
        """Sleep until a watched leader exits, a backoff is due, or the tick ends."""
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        for prog in self._programs.values():
            if prog.leader_fd >= 0 and prog.name not in busy:
                poller.register(prog.leader_fd, select.POLLIN)
        timeout = BUSY_RECHECK_S if busy else TICK_S
        for prog in self._programs.values():
            if prog.state is State.BACKOFF and prog.next_start_at is not None:
                timeout = min(timeout, max(0.0, prog.next_start_at - time.monotonic()))
        try:
            events = poller.poll(timeout * 1000)
        except OSError:  # a leader fd closed under us; the next pass polls again
            return
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
