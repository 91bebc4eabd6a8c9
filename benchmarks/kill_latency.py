"""Kill latency of the supervisor: prints figures, asserts nothing.

- ``POST /process/kill`` round trip over 50 kill/start cycles of the demo worker
  (leader, two children, one grandchild), each kill sent once the whole tree of
  4 processes exists, over one keep-alive connection; after every answer the
  tree is checked to be gone.
- SIGTERM-to-exit of the supervisor over 5 starts, each with the demo tree up.
- For scale, the floor: how long the demo tree itself takes to exit after
  ``killpg(SIGTERM)`` with no supervisor in between (pidfds, no HTTP).

Run ``python benchmarks/kill_latency.py``; ``main()`` returns the figures as a
dict for ``benchmarks/run_all.py``. Target: median kill round trip <= 5 ms.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flows.drills.harness import Supervisor, stop_all, wait_for  # noqa: E402
from flows.drills.markers import runner_marker  # noqa: E402
from flows.trends.stats import percentile  # noqa: E402

DEMO_TREE = 4
TARGET_MEDIAN_KILL_MS = 5.0
CONFIG = """\
[[programs]]
name = "worker"
command = ["python", "-m", "supervisor.demo_worker"]
stop_timeout = 5.0
"""


def _tree(leader: int) -> list[psutil.Process]:
    """The leader and its live descendants."""
    try:
        root = psutil.Process(leader)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    alive = []
    for proc in procs:
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            pass
    return alive


def _settled(leader: int) -> list[psutil.Process] | None:
    """The whole tree, once every process exists and sleeps in its work loop.

    A steady state: not interpreters still importing and competing with the
    supervisor for the CPUs.
    """
    tree = _tree(leader)
    if len(tree) < DEMO_TREE:
        return None
    try:
        idle = all(p.status() == psutil.STATUS_SLEEPING for p in tree)
    except psutil.NoSuchProcess:
        return None
    return tree if idle else None


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except psutil.NoSuchProcess:
            pass
    return out


def _launch(workdir: Path) -> Supervisor:
    """A real supervisor on the demo worker, through the one harness (port 0, marked)."""
    config = workdir / "bench.toml"
    config.write_text(CONFIG)
    return Supervisor.launch(workdir, runner_marker(), config, name="bench")


def _full_tree(sup: Supervisor) -> list[psutil.Process]:
    leader = wait_for(lambda: sup.state()["pid"], 10, "a leader pid", interval=0.002)
    return wait_for(lambda: _settled(leader), 10, "the demo tree, settled", interval=0.002)


def _close(sup: Supervisor) -> None:
    stop_all([sup], sup.marker)


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median_ms": round(statistics.median(values), 3),
        "p95_ms": round(percentile(values, 0.95), 3),
        "min_ms": round(min(values), 3),
        "max_ms": round(max(values), 3),
    }


def measure_kill(cycles: int, workdir: Path) -> dict[str, Any]:
    sup = _launch(workdir)
    round_trips, server_side, leftovers = [], [], 0
    try:
        for _ in range(cycles):
            tree = _full_tree(sup)
            started = time.perf_counter()
            response = sup.client.post("/process/kill", json={})
            round_trips.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"benchmark: kill answered {response.status_code}")
            body = response.json()
            server_side.append(body["duration_ms"])
            leftovers += len(_alive(tree)) + len(body["survivors"])
            sup.client.post("/process/start", json={}).raise_for_status()
    finally:
        _close(sup)
    return {
        "kill_round_trip": _summary(round_trips),
        "kill_server_duration": _summary(server_side),
        "leftover_processes": leftovers,
    }


def measure_floor(cycles: int) -> dict[str, Any]:
    """The workload's own exit time, no supervisor: killpg(SIGTERM) until every pidfd fires."""
    times = []
    for _ in range(cycles):
        leader = subprocess.Popen(
            [sys.executable, "-m", "supervisor.demo_worker"],
            cwd=REPO,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
        )
        tree = wait_for(partial(_settled, leader.pid), 10, "the demo tree, settled", 0.002)
        fds = [os.pidfd_open(p.pid) for p in tree]
        started = time.perf_counter()
        os.killpg(leader.pid, signal.SIGTERM)
        pending = set(fds)
        while pending:
            poller = select.poll()
            for fd in pending:
                poller.register(fd, select.POLLIN)
            pending -= {fd for fd, _ in poller.poll(5000)}
        times.append((time.perf_counter() - started) * 1000)
        for fd in fds:
            os.close(fd)
        leader.wait()
    return _summary(times)


def measure_sigterm(runs: int, workdir: Path) -> dict[str, Any]:
    exits, leftovers, codes = [], 0, []
    for i in range(runs):
        run_dir = workdir / f"sigterm-{i}"
        run_dir.mkdir()
        sup = _launch(run_dir)
        try:
            tree = _full_tree(sup)
            started = time.perf_counter()
            sup.popen.send_signal(signal.SIGTERM)
            codes.append(sup.popen.wait(timeout=60))
            exits.append((time.perf_counter() - started) * 1000)
            leftovers += len(_alive(tree))
        finally:
            _close(sup)
    return {
        "sigterm_to_exit": _summary(exits),
        "exit_codes": codes,
        "leftover_processes": leftovers,
    }


def main(cycles: int = 50, sigterm_runs: int = 5, quiet: bool = False) -> dict[str, Any]:
    """Run both measurements; print a table unless ``quiet``; return the figures."""
    with tempfile.TemporaryDirectory(prefix="kill-latency-") as tmp:
        kill_dir, term_dir = Path(tmp) / "kill", Path(tmp) / "sigterm"
        kill_dir.mkdir()
        term_dir.mkdir()
        kill = measure_kill(cycles, kill_dir)
        term = measure_sigterm(sigterm_runs, term_dir)
    floor = measure_floor(min(cycles, 20))
    figures: dict[str, Any] = {}
    for prefix, summary in (
        ("kill", kill["kill_round_trip"]),
        ("kill_server", kill["kill_server_duration"]),
        ("sigterm_exit", term["sigterm_to_exit"]),
        ("workload_exit_floor", floor),
    ):
        figures[f"{prefix}_n"] = summary["n"]
        for stat in ("median", "p95", "min", "max"):
            figures[f"{prefix}_{stat}_ms"] = summary[f"{stat}_ms"]
    figures["sigterm_exit_codes"] = term["exit_codes"]
    figures["kill_leftover_processes"] = kill["leftover_processes"] + term["leftover_processes"]
    figures["kill_target_met"] = figures["kill_median_ms"] <= TARGET_MEDIAN_KILL_MS
    if not quiet:
        _print(figures)
    return figures


def _print(figures: dict[str, Any]) -> None:
    rows = [
        ("POST /process/kill round trip", "kill"),
        ("  of which server duration_ms", "kill_server"),
        ("SIGTERM to supervisor exit", "sigterm_exit"),
        ("floor: demo tree exit, no sup.", "workload_exit_floor"),
    ]
    print(f"{'measure':<32} {'n':>4} {'median':>9} {'p95':>9} {'min':>9} {'max':>9}  (ms)")
    for label, key in rows:
        print(
            f"{label:<32} {figures[key + '_n']:>4} {figures[key + '_median_ms']:>9.2f}"
            f" {figures[key + '_p95_ms']:>9.2f} {figures[key + '_min_ms']:>9.2f}"
            f" {figures[key + '_max_ms']:>9.2f}"
        )
    met = "met" if figures["kill_target_met"] else "NOT met"
    print(
        f"target: median kill <= {TARGET_MEDIAN_KILL_MS:.0f} ms: {met};"
        f" processes left after kills/SIGTERMs: {figures['kill_leftover_processes']};"
        f" SIGTERM exit codes: {figures['sigterm_exit_codes']}; cpus: {os.cpu_count()}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=50, help="kill/start cycles (default 50)")
    parser.add_argument("--sigterm-runs", type=int, default=5, help="supervisor starts (default 5)")
    args = parser.parse_args()
    main(args.cycles, args.sigterm_runs)
