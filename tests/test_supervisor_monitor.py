"""Monitor.hold: a kill takes its program's leader out of the monitor's wait set.

A real child (``sleep``) and its pidfd; the monitor thread runs for real. What is
checked is the monitor's epoll set itself: the leader is out of it from ``hold``
on, stays out across passes even once the leader has exited (it would otherwise
wake the monitor in the middle of the kill), and is back after ``release``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.config import load
from supervisor.monitor import Monitor
from supervisor.program import Program
from tests.conftest import wait_for


class Passes:
    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    def __call__(self) -> None:
        with self.lock:
            self.count += 1

    def after(self, n: int) -> None:
        """Wait until ``n`` more passes have run."""
        target = self.count + n
        wait_for(lambda: self.count >= target, 10, f"{n} monitor passes")


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[Monitor, Program, Passes, subprocess.Popen[bytes]]]:
    (tmp_path / "c.toml").write_text('[[programs]]\nname = "p"\ncommand = ["sleep", "60"]\n')
    prog = Program(load(tmp_path / "c.toml").programs[0], 1)
    child = subprocess.Popen(["sleep", "60"])
    prog.popen, prog.leader_fd = child, os.pidfd_open(child.pid)
    passes = Passes()
    monitor = Monitor(
        {"p": prog}, check=lambda p: True, on_scan=lambda procs: None, every_pass=passes
    )
    monitor.start()
    try:
        yield monitor, prog, passes, child
    finally:
        monitor.stop()
        if child.poll() is None:
            child.kill()
        child.wait()
        os.close(prog.leader_fd)


def test_held_leader_is_out_of_the_wait_set_until_released(watched):
    """hold() removes the leader at once; passes do not put it back, not even after it
    exited; release() lets the next pass watch it again."""
    monitor, prog, passes, child = watched
    wait_for(lambda: monitor.watching(prog.leader_fd), 10, "the leader in the wait set")
    monitor.hold("p")
    assert not monitor.watching(prog.leader_fd)
    child.send_signal(signal.SIGKILL)
    child.wait()
    monitor.wake()
    passes.after(2)
    assert not monitor.watching(prog.leader_fd)
    monitor.release("p")
    monitor.wake()
    passes.after(2)
    assert monitor.watching(prog.leader_fd)
