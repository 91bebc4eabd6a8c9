"""The keeper: kills every program process when the supervisor dies.

``python -m supervisor.stop.keeper INSTANCE`` reads its stdin, a pipe whose write end
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

from supervisor.stop.sweep import sweep


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m supervisor.stop.keeper INSTANCE", file=sys.stderr)
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
        print(
            f"supervisor.stop.keeper: supervisor gone; killed {count} program process(es)",
            file=sys.stderr,
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
