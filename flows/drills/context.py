"""What a drill runs against (:class:`DrillOptions`) and what it holds (:class:`DrillContext`)."""

from __future__ import annotations

import tempfile
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from flows.drills import _toml
from flows.drills._log import DrillLog
from flows.drills.collateral import Collateral
from flows.drills.harness import REAL_SUPERVISOR, Supervisor, stop_all
from flows.drills.markers import PROGRAM_ENV
from flows.errors import DrillSetupError

DEMO_MIN_PROCS = 4  # the demo worker: leader, two children, one grandchild
DEMO_CONFIG = """\
[[programs]]
name = "worker"
command = ["python", "-m", "supervisor.demo_worker"]
autostart = true
autorestart = true
stop_signal = "TERM"
stop_timeout = 5.0
backoff_initial = 0.1
"""
# how the target was chosen, as results.json records it, and as the logs say it
CHOSEN_BY = {
    "--program": "named by --program",
    "first": "the first program in the config; --program NAME picks another",
}


@dataclass(frozen=True)
class DrillOptions:
    """What a drill runs against.

    ``supervisor_command`` is the argv that ``serve ...`` is appended to: the real
    supervisor by default; tests that prove a drill can fail pass a broken one.
    ``program`` names the program the per-program drills target; None: the first.
    """

    config: Path | None = None
    supervisor_command: tuple[str, ...] = REAL_SUPERVISOR
    program: str | None = None

    def is_real(self) -> bool:
        return self.supervisor_command == REAL_SUPERVISOR

    def config_text(self) -> str:
        if self.config is None:
            return DEMO_CONFIG
        try:
            return self.config.read_text(encoding="utf-8")
        except OSError as exc:
            raise DrillSetupError(f"drill config {self.config} cannot be read: {exc}") from exc

    def _raw(self) -> dict[str, Any]:
        try:
            return tomllib.loads(self.config_text())
        except tomllib.TOMLDecodeError as exc:
            raise DrillSetupError(f"drill config {self.config} is not valid TOML: {exc}") from exc

    def programs(self) -> list[dict[str, Any]]:
        programs: list[dict[str, Any]] = self._raw().get("programs") or []
        if not programs:
            raise DrillSetupError(f"drill config {self.config} has no [[programs]]")
        return programs

    def program_names(self) -> list[str]:
        return [str(p.get("name")) for p in self.programs()]

    def target(self) -> tuple[str, str]:
        """(the program the per-program drills target, how it was chosen: ``--program``
        or ``first``; :data:`CHOSEN_BY` says each in words).

        An unknown ``program`` is a :class:`DrillSetupError` listing the known names.
        """
        names = self.program_names()
        if self.program is None:
            return names[0], "first"
        if self.program not in names:
            where = self.config or "the built-in demo config"
            raise DrillSetupError(
                f"--program {self.program!r}: no such program in {where}; "
                f"known programs: {', '.join(names)}"
            )
        return self.program, "--program"

    def drill_config(self, extra_programs: Sequence[Mapping[str, Any]] = ()) -> str:
        """The config as the drill's supervisor gets it: every program (``extra_programs``
        appended) carries ``CHAOS_DRILL_PROGRAM=<name>`` in its ``env``."""
        raw = self._raw()
        programs = [dict(p) for p in self.programs()] + [dict(p) for p in extra_programs]
        for program in programs:
            env = program.get("env", {})
            if not isinstance(env, Mapping):
                raise DrillSetupError(
                    f"drill config {self.config}: program {program.get('name')!r} has env "
                    f"{env!r}; env must be a table of strings"
                )
            program["env"] = {**env, PROGRAM_ENV: str(program.get("name"))}
        raw["programs"] = programs
        return _toml.dumps(raw)

    @property
    def min_procs(self) -> int:
        return DEMO_MIN_PROCS if self.config is None else 1


@dataclass
class DrillContext:
    """One drill's options, log, marker, metrics, the supervisors it started, the
    containment they reported, and the collateral damage it found."""

    options: DrillOptions
    log: DrillLog
    marker: str
    metrics: dict[str, Any] = field(default_factory=dict)
    supervisors: list[Supervisor] = field(default_factory=list)
    containment: str = "unknown"
    collateral_problems: list[str] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def workdir(self) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="chaos-drill-")
        return Path(self._tmp.name)

    def supervisor(
        self,
        db: Path | None = None,
        wait_workload: bool = True,
        wait_healthy: bool = True,
        *,
        extra_programs: Sequence[Mapping[str, Any]] = (),
        target: str | None = None,
    ) -> Supervisor:
        """Start a supervisor on the drill's config (``extra_programs`` added); wait for
        health and a stable workload in which every autostart program has a process."""
        config = self.workdir / "supervisor.toml"
        config.write_text(self.options.drill_config(extra_programs), encoding="utf-8")
        sup = Supervisor.launch(
            self.workdir,
            self.marker,
            config,
            db=db,
            command=self.options.supervisor_command,
            host="127.0.0.1",  # a drill's supervisor is loopback-only, whatever [server] says
            wait_healthy=wait_healthy,
            note=self.log.line,
        )
        self.supervisors.append(sup)
        if wait_healthy:
            self.read_containment(sup)
        if wait_healthy and wait_workload:
            target = target or self.program_name()
            autostart = [
                str(p.get("name"))
                for p in [*self.options.programs(), *extra_programs]
                if p.get("autostart", True)
            ]
            count = self.options.min_procs if target == self.program_name() else 1
            sup.wait_workload(count, stable_s=0.25, program=target, programs=autostart)
        return sup

    def read_containment(self, sup: Supervisor) -> str:
        """The containment ``sup`` reports; the drill's is the first one read."""
        found = sup.containment()
        self.log.line(f"supervisor pid={sup.pid} containment: {found} (from /healthz)")
        if self.containment == "unknown":
            self.containment = found
        return found

    def program_name(self) -> str:
        """The program the per-program checks concern (``--program``, else the first)."""
        return self.options.target()[0]

    def workload(self, sup: Supervisor) -> list[psutil.Process]:
        """The live processes of the drilled program only."""
        return sup.workload(self.program_name())

    def watch_collateral(self, sup: Supervisor, target: str | None = None) -> Collateral:
        """Record the other programs' processes before a fault on ``target``."""
        return Collateral.watch(sup, target or self.program_name(), self.log)

    def check_collateral(self, guard: Collateral) -> bool:
        """After the fault: ``collateral`` into the metrics; damage makes the drill FAIL."""
        metric, problem = guard.check(self.log)
        self.metrics["collateral"] = metric
        if problem:
            self.collateral_problems.append(problem)
        return problem is None

    def cleanup(self) -> None:
        """Kill every supervisor we started and every marked process, then run the
        drill's own cleanups (what no marker finds); log it if needed."""
        stop_all(self.supervisors, self.marker, self.log.line)
        for cleanup in self.cleanups:
            cleanup()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
