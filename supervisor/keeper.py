"""The keeper: kills every program process when the supervisor dies.

``python -m supervisor.keeper INSTANCE`` reads its stdin, a pipe whose write end
only the supervisor holds. When the supervisor dies, even by SIGKILL, the
kernel closes that end and the read returns EOF; the keeper then SIGKILLs every
process whose environment carries ``SUPERVISOR_INSTANCE=INSTANCE`` (every
program process inherits it, double-forked ``setsid`` ones included), repeats
until a scan finds none, and exits. ``PR_SET_PDEATHSIG`` cannot do this: it
covers only a direct child and follows the spawning thread.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from supervisor import _linux

MARKER_KEY = b"SUPERVISOR_INSTANCE"
SWEEP_DEADLINE_S = 1.5


def find_marked(instance: bytes, exclude: set[int]) -> list[_linux.ProcInfo]:
    found = []
    for info in _linux.scan().values():
        if info.pid in exclude or info.zombie:
            continue
        if _linux.read_environ(info.pid).get(MARKER_KEY) == instance:
            found.append(info)
    return found


def sweep(instance: bytes, exclude: set[int], deadline_s: float = SWEEP_DEADLINE_S) -> int:
    """SIGKILL every marked process until two scans in a row find none; return the count."""
    killed: set[int] = set()
    quiet_scans = 0
    end = time.monotonic() + deadline_s
    while quiet_scans < 2 and time.monotonic() < end:
        marked = find_marked(instance, exclude)
        if not marked:
            quiet_scans += 1
            time.sleep(0.01)
            continue
        quiet_scans = 0
        for info in marked:
            # stop first so nothing forks between our scan and the kill
            handle = _linux.PidHandle.open(info.pid, info.start_ticks)
            if handle is None:
                continue
            handle.send(signal.SIGSTOP)
            handle.send(signal.SIGKILL)
            handle.close()
            killed.add(info.pid)
        time.sleep(0.005)
    return len(killed)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m supervisor.keeper INSTANCE", file=sys.stderr)
        return 2
    instance = argv[0].encode()
    # the terminal's Ctrl-C is the supervisor's to handle; we act only on EOF
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        try:
            chunk = os.read(0, 4096)
        except InterruptedError:
            continue
        if not chunk:
            break
    count = sweep(instance, exclude={os.getpid()})
    if count:
        print(f"supervisor.keeper: supervisor gone; killed {count} program process(es)",
              file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
