"""Our kill against supervisord 4.3's on the same workload: prints figures, asserts nothing.

Workload on both sides: ``sh -c 'sleep 1000 & sleep 1001 & wait'`` (a leader and
two children). supervisord runs it with ``stopasgroup``/``killasgroup`` and
``startsecs=0``; ours with the containment it picks (cgroup here). Cycles are
interleaved (ours, then supervisord's) so both see the same machine load, and
every request opens a NEW HTTP connection on both sides:

- ours: ``POST /process/kill`` (the answer comes once the whole tree is gone);
- supervisord: XML-RPC ``supervisor.stopProcess(name, wait=True)`` over its
  ``inet_http_server`` on 127.0.0.1.

Each kill is sent once the whole tree of 3 processes exists and both sleeps
have exec'd, and each restart is waited for the same way before the other side's
kill: a start answers (on either side) before its sleeps have exec'd, so one
side's fork and execs used to overlap the other side's next kill (ratio
1.20-1.31 over 5 runs that way, 1.01-1.15 waiting for them; load ~1 here).
Right at the answer the benchmark checks whether any of the 3 is still alive
("tree gone at the answer"). It also times a request that does nothing on each
side (``GET /healthz``; XML-RPC ``getState``), the same client's HTTP floor.
200 cycles by default: the ratio's spread over runs at load ~1 was 0.93-1.18 with
60 cycles, 1.08-1.14 with 200 (about 15 s a run). It prints both medians, the ratio ours/supervisord (target <= 1.2),
both resident memories (ours with its keeper) and the 1-minute load average before
and after: on a shared 2-CPU machine the ratio moves with the load (0.7 to 2.5 in
runs under other jobs), so compare runs made under the same load.

supervisord is installed with pip into its own venv under
``$XDG_CACHE_HOME/chaos-drills/supervisord-4.3.0`` the first time.

Run ``python benchmarks/vs_supervisord.py [--cycles N]``; ``main()`` returns the
figures as a dict for ``benchmarks/run_all.py``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flows.drills.harness import Supervisor, free_port, stop_all, wait_for  # noqa: E402
from flows.drills.markers import runner_marker  # noqa: E402

SUPERVISORD_VERSION = "4.3.0"
TARGET_RATIO = 1.2
WORKLOAD = "sh -c 'sleep 1000 & sleep 1001 & wait'"
TREE = 3
OURS = """\
[[programs]]
name = "sh"
command = ["sh", "-c", "sleep 1000 & sleep 1001 & wait"]
start_seconds = 0.1
stop_timeout = 5.0
"""
THEIRS = """\
[supervisord]
nodaemon = true
logfile = {dir}/supervisord.log
pidfile = {dir}/supervisord.pid
childlogdir = {dir}

[inet_http_server]
port = 127.0.0.1:{port}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[program:sh]
command = {workload}
startsecs = 0
stopasgroup = true
killasgroup = true
stopwaitsecs = 5
autorestart = false
stdout_logfile = {dir}/sh.log
redirect_stderr = true
"""


# ----- supervisord's own venv ------------------------------------------------------------


def supervisord_venv() -> Path:
    """A venv holding supervisor==4.3.0, made once under the user's cache directory."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    venv = cache / "chaos-drills" / f"supervisord-{SUPERVISORD_VERSION}"
    binary = venv / "bin" / "supervisord"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", f"supervisor=={SUPERVISORD_VERSION}"],
            check=True,
        )
    return venv


# ----- one request, one connection -----------------------------------------------------------


def _post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class Ours:
    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self.port = int(sup.base_url.rsplit(":", 1)[1])
        self.headers = {**sup.auth, "Content-Type": "application/json"}

    def leader(self) -> int | None:
        pid: int | None = self.sup.state("sh")["pid"]
        return pid

    def kill(self) -> None:
        status, body = _post(self.port, "/process/kill", b'{"name": "sh"}', self.headers)
        if status != 200 or json.loads(body)["survivors"]:
            raise RuntimeError(f"benchmark: our kill answered {status}: {body!r}")

    def nothing(self) -> None:
        """GET /healthz: a new connection, the app, an answer; no work."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", "/healthz")
            conn.getresponse().read()
        finally:
            conn.close()

    def start(self) -> None:
        status, body = _post(self.port, "/process/start", b'{"name": "sh"}', self.headers)
        if status != 200:
            raise RuntimeError(f"benchmark: our start answered {status}: {body!r}")

    def rss(self) -> int:
        me = psutil.Process(self.sup.pid)
        keepers = [p for p in me.children() if "supervisor-keeper" in " ".join(p.cmdline())]
        keepers += [p for p in me.children() if "supervisor.stop.keeper" in " ".join(p.cmdline())]
        return me.memory_info().rss + sum(p.memory_info().rss for p in keepers)

    def keeper_rss(self) -> int:
        me = psutil.Process(self.sup.pid)
        return sum(p.memory_info().rss for p in me.children() if "keeper" in " ".join(p.cmdline()))


class Theirs:
    def __init__(self, popen: subprocess.Popen[bytes], port: int) -> None:
        self.popen = popen
        self.port = port

    def _call(self, method: str, *params: Any) -> Any:
        body = xmlrpc.client.dumps(params, method).encode()
        status, raw = _post(self.port, "/RPC2", body, {"Content-Type": "text/xml"})
        if status != 200:
            raise RuntimeError(f"benchmark: supervisord {method} answered {status}: {raw!r}")
        return xmlrpc.client.loads(raw)[0][0]

    def leader(self) -> int | None:
        info = self._call("supervisor.getProcessInfo", "sh")
        return int(info["pid"]) or None

    def kill(self) -> None:
        self._call("supervisor.stopProcess", "sh", True)

    def nothing(self) -> None:
        """XML-RPC supervisor.getState: a new connection, the app, an answer; no work."""
        self._call("supervisor.getState")

    def start(self) -> None:
        self._call("supervisor.startProcess", "sh", True)

    def rss(self) -> int:
        return psutil.Process(self.popen.pid).memory_info().rss


# ----- measuring ----------------------------------------------------------------------------


def _tree(leader: int) -> list[psutil.Process] | None:
    """The leader and its two sleeps, once all three exist and the sleeps run ``sleep``
    (exec'd: what a start sets going is over)."""
    try:
        root = psutil.Process(leader)
        procs = [root, *root.children(recursive=True)]
        if len(procs) < TREE or any(p.cmdline()[:1] != ["sleep"] for p in procs[1:]):
            return None
    except psutil.NoSuchProcess:
        return None
    return procs


def _alive(procs: list[psutil.Process]) -> int:
    count = 0
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                count += 1
        except psutil.NoSuchProcess:
            pass
    return count


def _cycle(side: Ours | Theirs) -> tuple[float, int]:
    """One kill of a full tree: (round trip ms, processes alive at the answer); then a
    restart, waited for until its whole tree runs, so the other side's next kill does not
    share the machine with this side's fork and execs."""
    tree = _running_tree(side)
    started = time.perf_counter()
    side.kill()
    took = (time.perf_counter() - started) * 1000
    alive = _alive(tree)
    side.start()
    _running_tree(side)
    return took, alive


def _running_tree(side: Ours | Theirs) -> list[psutil.Process]:
    leader = wait_for(side.leader, 10, "a leader pid", interval=0.002)
    tree: list[psutil.Process] = wait_for(
        lambda: _tree(leader), 10, "the whole tree", interval=0.002
    )
    return tree


def _start_supervisord(workdir: Path) -> Theirs:
    venv = supervisord_venv()
    port = free_port()
    conf = workdir / "supervisord.conf"
    conf.write_text(THEIRS.format(dir=workdir, port=port, workload=WORKLOAD))
    # without PYTHONPATH: ours names a package `supervisor` too, which would shadow theirs
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    popen = subprocess.Popen(
        [str(venv / "bin" / "supervisord"), "-c", str(conf)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    theirs = Theirs(popen, port)

    def up() -> bool:
        try:
            return theirs._call("supervisor.getState")["statename"] == "RUNNING"
        except (OSError, RuntimeError):
            return False

    wait_for(up, 20, "supervisord's XML-RPC")
    return theirs


def _stop_supervisord(theirs: Theirs) -> None:
    theirs.popen.terminate()
    try:
        theirs.popen.wait(timeout=15)
    except subprocess.TimeoutExpired:
        theirs.popen.kill()
        theirs.popen.wait()


def main(cycles: int = 200, quiet: bool = False) -> dict[str, Any]:
    """Interleaved kill cycles on both; print a table unless ``quiet``; return the figures."""
    marker = runner_marker()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="vs-supervisord-") as tmp:
        workdir = Path(tmp)
        (workdir / "ours").mkdir()
        (workdir / "theirs").mkdir()
        config = workdir / "ours" / "bench.toml"
        config.write_text(OURS)
        sup = Supervisor.launch(workdir / "ours", marker, config, name="bench")
        theirs: Theirs | None = None
        try:
            ours = Ours(sup)
            theirs = _start_supervisord(workdir / "theirs")
            for side in (ours, theirs):  # one warm-up cycle each
                _cycle(side)
            times: dict[str, list[float]] = {"ours": [], "theirs": []}
            alive: dict[str, int] = {"ours": 0, "theirs": 0}
            for _ in range(cycles):
                for name, side in (("ours", ours), ("theirs", theirs)):
                    took, left = _cycle(side)
                    times[name].append(took)
                    alive[name] += left > 0
            floor: dict[str, list[float]] = {"ours": [], "theirs": []}
            for _ in range(cycles):  # what the same client pays for a request that does nothing
                for name, side in (("ours", ours), ("theirs", theirs)):
                    started = time.perf_counter()
                    side.nothing()
                    floor[name].append((time.perf_counter() - started) * 1000)
            rss_ours, rss_keeper, rss_theirs = ours.rss(), ours.keeper_rss(), theirs.rss()
            containment = sup.client.get("/healthz").json()["containment"]
        finally:
            if theirs is not None:
                _stop_supervisord(theirs)
            stop_all([sup], marker)
    figures = {
        "vs_cycles": cycles,
        "vs_ours_median_ms": round(statistics.median(times["ours"]), 3),
        "vs_supervisord_median_ms": round(statistics.median(times["theirs"]), 3),
        "vs_ours_tree_alive_at_answer": alive["ours"],
        "vs_supervisord_tree_alive_at_answer": alive["theirs"],
        "vs_ours_rss_mib": round(rss_ours / 2**20, 1),
        "vs_keeper_rss_mib": round(rss_keeper / 2**20, 1),
        "vs_supervisord_rss_mib": round(rss_theirs / 2**20, 1),
        "vs_containment": containment,
        "vs_load_before": round(load_before, 2),
        "vs_load_after": round(os.getloadavg()[0], 2),
        "vs_ours_floor_ms": round(statistics.median(floor["ours"]), 3),
        "vs_supervisord_floor_ms": round(statistics.median(floor["theirs"]), 3),
    }
    figures["vs_ratio"] = round(
        figures["vs_ours_median_ms"] / figures["vs_supervisord_median_ms"], 3
    )
    if not quiet:
        _print(figures)
    return figures


def _print(f: dict[str, Any]) -> None:
    n = f["vs_cycles"]
    print(f"workload: {WORKLOAD}; {n} interleaved cycles, a new connection per request")
    print(f"{'':<34} {'ours':>12} {'supervisord':>12}")
    print(
        f"{'kill round trip, median (ms)':<34} {f['vs_ours_median_ms']:>12.2f}"
        f" {f['vs_supervisord_median_ms']:>12.2f}"
    )
    print(
        f"{'a request doing nothing, median (ms)':<34} {f['vs_ours_floor_ms']:>12.2f}"
        f" {f['vs_supervisord_floor_ms']:>12.2f}   (/healthz; XML-RPC getState)"
    )
    print(
        f"{'cycles with tree alive at answer':<34} {f['vs_ours_tree_alive_at_answer']:>9}/{n}"
        f" {f['vs_supervisord_tree_alive_at_answer']:>9}/{n}"
    )
    print(
        f"{'resident memory (MiB)':<34} {f['vs_ours_rss_mib']:>12.1f}"
        f" {f['vs_supervisord_rss_mib']:>12.1f}   (ours incl. keeper {f['vs_keeper_rss_mib']} MiB)"
    )
    met = "met" if f["vs_ratio"] <= TARGET_RATIO else "NOT met"
    print(
        f"ratio ours/supervisord: {f['vs_ratio']:.2f} (target <= {TARGET_RATIO}: {met});"
        f" containment: {f['vs_containment']}; cpus: {os.cpu_count()};"
        f" load average {f['vs_load_before']} before, {f['vs_load_after']} after"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cycles", type=int, default=200, help="kill cycles per side (default 200)"
    )
    args = parser.parse_args()
    main(args.cycles)
