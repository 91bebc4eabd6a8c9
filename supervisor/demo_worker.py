"""The demo workload: a leader, two children and one grandchild doing light work.

``python -m supervisor.demo_worker`` starts the tree and exits cleanly on
SIGTERM. The leader deliberately does not forward SIGTERM to its children: like
many real programs it relies on its supervisor to stop the whole group, which
is exactly what the drills check.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def _exit_now(signum: int, frame: object) -> None:
    sys.stdout.flush()
    os._exit(0)


def _work(role: str, spawn: list[str]) -> None:
    signal.signal(signal.SIGTERM, _exit_now)
    signal.signal(signal.SIGINT, _exit_now)
    children = [
        subprocess.Popen([sys.executable, "-m", "supervisor.demo_worker", "--role", r])
        for r in spawn
    ]
    print(f"demo_worker {role} pid={os.getpid()} children={[c.pid for c in children]}", flush=True)
    while True:
        time.sleep(0.5)


def main(argv: list[str]) -> int:
    role = argv[argv.index("--role") + 1] if "--role" in argv else "leader"
    spawn = {"leader": ["child-a", "child-b"], "child-a": ["grandchild"]}.get(role, [])
    _work(role, spawn)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
