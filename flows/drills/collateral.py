"""Collateral: a per-program fault must leave every other program's processes as they were.

:meth:`Collateral.watch` records each other program's processes (pid and start
time) before the fault; :meth:`Collateral.check` after it says which program lost
any of them (dead, or the pid now belongs to a newer process). The result goes
into the drill's metrics as ``collateral``, ``{program: {"before": n, "lost": k}}``
(numbers only, like every metric; the lost pids are in the log); any damage is a
FAIL naming the program.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psutil

from flows.drills._log import DrillLog
from flows.drills.harness import Supervisor


def _identity(procs: list[psutil.Process]) -> dict[int, float]:
    out = {}
    for proc in procs:
        try:
            out[proc.pid] = proc.create_time()
        except psutil.Error:  # gone before we looked: it was not there to lose
            continue
    return out


def _same_and_alive(pid: int, created: float) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@dataclass(frozen=True)
class Collateral:
    """The other programs' processes (pid -> start time) before a fault on ``target``."""

    target: str
    before: dict[str, dict[int, float]]

    @classmethod
    def watch(cls, sup: Supervisor, target: str, log: DrillLog) -> Collateral:
        groups = sup.workload_by_program()
        before = {
            name: _identity(procs)
            for name, procs in sorted(groups.items(), key=lambda kv: str(kv[0]))
            if name is not None and name != target
        }
        for name, ids in before.items():
            log.line(f"collateral watch: program {name}: {len(ids)} process(es) {sorted(ids)}")
        return cls(target, before)

    def check(self, log: DrillLog) -> tuple[dict[str, Any], str | None]:
        """(the ``collateral`` metric, a FAIL message naming each damaged program or None)."""
        metric: dict[str, Any] = {}
        damage = []
        for name, ids in self.before.items():
            lost = sorted(pid for pid, created in ids.items() if not _same_and_alive(pid, created))
            metric[name] = {"before": len(ids), "lost": len(lost)}
            if lost:
                damage.append(f"program {name} lost {len(lost)} of {len(ids)} process(es) {lost}")
                log.line(f"collateral damage: program {name} lost pid(s) {lost}")
        if not damage:
            log.line(f"collateral: {len(metric)} other program(s) untouched")
            return metric, None
        return metric, f"collateral damage while drilling {self.target}: " + "; ".join(damage)
