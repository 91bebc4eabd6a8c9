"""``escapee``: descendants that double-fork, call ``setsid``, exec with an empty
environment, ignore SIGTERM and keep forking must all die on every path: a kill
through the API, SIGTERM to the supervisor, SIGKILL to the supervisor.

The workload (:mod:`flows.drills._escapee_workload`) runs as a program of its own,
beside the config's programs, which the API kill must leave untouched. Escapees
carry no marker in their environment, so the drill finds them by a token in
their argv (``chaos-drill-marker=<runner marker>``: unique to this drill run, and
no other process has it; a later run kills them if this runner died). Each path
runs against a fresh supervisor; whatever survives is named (pid and command
line) and then killed by pid, before the next path starts.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from flows.drills._escapee_workload import FLIGHT_S, FORK_EVERY_S, LINEAGES
from flows.drills._http import call
from flows.drills.context import DrillContext
from flows.drills.harness import Supervisor, stop_all, wait_for
from flows.drills.markers import argv_token, find_by_argv, kill_found
from flows.errors import DrillSetupError

PROGRAM = "chaos-escapee"
WORKLOAD = Path(__file__).with_name("_escapee_workload.py")
LIFETIME_S = 120.0  # no escapee outlives this, whatever the supervisor does
STOP_TIMEOUT_S = 0.5
VANISH_LIMIT_S = 2.0  # after the kill answer, or the supervisor's exit
# "gone" must hold this long: a successor in flight decides within FLIGHT_S whether
# it carries a killed lineage on, and one scan may miss a process forked during it
SETTLE_S = 4 * (FORK_EVERY_S + FLIGHT_S)
READY_TIMEOUT_S = 10.0
CLEANUP_SWEEPS = 5


def _program(token: str) -> dict[str, Any]:
    deadline = time.time() + LIFETIME_S
    return {
        "name": PROGRAM,
        "command": [sys.executable, "-I", "-S", str(WORKLOAD), "leader", token, repr(deadline)],
        "autorestart": False,
        "stop_signal": "TERM",
        "stop_timeout": STOP_TIMEOUT_S,
    }


def _describe(procs: list[psutil.Process]) -> list[str]:
    """``pid=N cmd=...`` for each process still alive (one that exited meanwhile is left out)."""
    out = []
    for proc in sorted(procs, key=lambda p: p.pid):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                out.append(f"pid={proc.pid} cmd={' '.join(proc.cmdline())}")
        except psutil.Error:
            continue
    return out


class _Escapees:
    """The processes of this drill's workload, found by the argv token."""

    def __init__(self, ctx: DrillContext) -> None:
        self.ctx = ctx
        self.token = argv_token(ctx.marker)
        self._empty_since = 0.0

    def find(self) -> list[psutil.Process]:
        return find_by_argv(self.ctx.marker)

    def wait_ready(self) -> list[psutil.Process]:
        """The leader and every lineage's escapee are up."""

        def ready() -> list[psutil.Process]:
            procs = self.find()
            roles = [p.info["cmdline"][4] for p in procs if len(p.info["cmdline"]) > 4]
            ok = "leader" in roles and roles.count("escapee") >= LINEAGES
            return procs if ok else []

        try:
            return wait_for(ready, READY_TIMEOUT_S, what="the escapee workload")
        except TimeoutError as exc:
            raise DrillSetupError(f"escapee: {exc}; check {WORKLOAD} runs") from exc

    def _gone_for_good(self) -> bool:
        """No escapee in any scan for SETTLE_S (a scan that finds one ends it early)."""
        self._empty_since = time.monotonic()
        if self.find():
            return False
        seen = wait_for(lambda: bool(self.find()), SETTLE_S, interval=0.01)
        return not seen

    def survivors(self, started: float, path: str) -> list[str]:
        """Wait up to VANISH_LIMIT_S for none to stay gone; name every one still alive."""
        gone = wait_for(self._gone_for_good, VANISH_LIMIT_S + SETTLE_S, interval=0.01)
        if gone:
            ms = round((self._empty_since - started) * 1000, 1)
            self.ctx.metrics[f"vanish_ms_{path}"] = ms
            self.ctx.log.line(
                f"{path}: every escapee gone {ms} ms after the fault, and none for {SETTLE_S}s"
            )
            return []
        named = wait_for(lambda: _describe(self.find()), SETTLE_S, interval=0.01)
        if not named:
            limit = VANISH_LIMIT_S + SETTLE_S
            return [f"(escapees kept appearing for {limit}s, each gone before it was listed)"]
        for line in named:
            self.ctx.log.line(f"{path}: SURVIVOR {line}")
        return named

    def kill(self, why: str) -> None:
        """Kill every escapee by pid until none stays gone (a successor in flight may
        carry a lineage on after one sweep)."""
        killed: list[int] = []
        for _ in range(CLEANUP_SWEEPS):
            killed += kill_found(self.find)
            if self._gone_for_good():
                break
        if killed:
            self.ctx.log.line(f"cleanup ({why}): killed escapee pid(s) {sorted(set(killed))}")


def _start(ctx: DrillContext, escapees: _Escapees, path: str) -> Supervisor:
    sup = ctx.supervisor(
        db=ctx.workdir / f"{path}.db", extra_programs=[_program(escapees.token)], target=PROGRAM
    )
    procs = escapees.wait_ready()
    ctx.metrics[f"escapees_seen_{path}"] = len(procs)
    ctx.log.line(f"{path}: workload up: " + "; ".join(_describe(procs)))
    return sup


def _api_kill(ctx: DrillContext, sup: Supervisor, escapees: _Escapees) -> list[str]:
    guard = ctx.watch_collateral(sup, target=PROGRAM)
    with sup.new_client() as client:
        started = time.monotonic()
        answer = call(client, ctx.log, "POST", "/process/kill", json={"name": PROGRAM})
    ctx.metrics["kill_http_status"] = answer.status or 0
    survivors = escapees.survivors(started, "api_kill")
    ctx.check_collateral(guard)
    sup.stop()
    if answer.status != 200:
        survivors.append(f"(the kill answered {answer.status or '000 (no response)'})")
    return survivors


Fault = Callable[[DrillContext, Supervisor, _Escapees], list[str]]


def _signal(sig: signal.Signals) -> Fault:
    path = "sigterm" if sig == signal.SIGTERM else "sigkill"

    def fault(ctx: DrillContext, sup: Supervisor, escapees: _Escapees) -> list[str]:
        stop_timeouts = [float(p.get("stop_timeout", 5.0)) for p in ctx.options.programs()]
        limit = max([*stop_timeouts, STOP_TIMEOUT_S]) + 10.0
        ctx.log.line(f"{path}: send {sig.name} to supervisor pid={sup.pid}")
        started = time.monotonic()
        sup.signal(sig)
        try:
            sup.wait_exit(limit)
        except subprocess.TimeoutExpired:
            return [f"(supervisor pid {sup.pid} still running {limit:.0f}s after {sig.name})"]
        return escapees.survivors(started, path)

    return fault


PATHS: tuple[tuple[str, Fault], ...] = (
    ("api_kill", _api_kill),
    ("sigterm", _signal(signal.SIGTERM)),
    ("sigkill", _signal(signal.SIGKILL)),
)


def run(ctx: DrillContext) -> tuple[bool, str]:
    if PROGRAM in ctx.options.program_names():
        raise DrillSetupError(
            f"escapee: the config already has a program named {PROGRAM!r}, the name this "
            "drill gives its own workload; rename that program"
        )
    ctx.log.line(
        f"escapee drills its own program {PROGRAM} beside the config's programs"
        f" ({', '.join(ctx.options.program_names())}), which must stay untouched"
    )
    escapees = _Escapees(ctx)
    ctx.cleanups.append(lambda: escapees.kill("end of drill"))
    found: dict[str, list[str]] = {}
    for path, fault in PATHS:
        sup = _start(ctx, escapees, path)
        found[path] = fault(ctx, sup, escapees)
        ctx.metrics[f"survivors_{path}"] = len([s for s in found[path] if s.startswith("pid=")])
        stop_all([sup], ctx.marker, ctx.log.line)  # the next path starts from nothing
        escapees.kill(f"after {path}")
    total = sum(ctx.metrics[f"survivors_{path}"] for path, _ in PATHS)
    ctx.metrics["survivors"] = total
    bad = {path: lines for path, lines in found.items() if lines}
    if bad:
        detail = "; ".join(f"{path}: {', '.join(lines)}" for path, lines in bad.items())
        return False, (
            f"{total} escapee(s) survived (containment {ctx.containment}) on"
            f" {len(bad)} of {len(PATHS)} paths: {detail}"
        )
    return True, (
        f"every escapee died on all {len(PATHS)} paths (API kill, supervisor SIGTERM,"
        f" supervisor SIGKILL; containment {ctx.containment})"
    )
