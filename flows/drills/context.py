"""What a drill runs against (:class:`DrillOptions`) and what it holds (:class:`DrillContext`)."""

from __future__ import annotations

import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.drills._log import DrillLog
from flows.drills.harness import REAL_SUPERVISOR, Supervisor, stop_all
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


@dataclass(frozen=True)
class DrillOptions:
    """What a drill runs against.

    ``supervisor_command`` is the argv that ``serve ...`` is appended to: the real
    supervisor by default; tests that prove a drill can fail pass a broken one.
    """

    config: Path | None = None
    supervisor_command: tuple[str, ...] = REAL_SUPERVISOR

    def is_real(self) -> bool:
        return self.supervisor_command == REAL_SUPERVISOR

    def config_text(self) -> str:
        if self.config is None:
            return DEMO_CONFIG
        try:
            return self.config.read_text(encoding="utf-8")
        except OSError as exc:
            raise DrillSetupError(f"drill config {self.config} cannot be read: {exc}") from exc

    def programs(self) -> list[dict[str, Any]]:
        try:
            raw = tomllib.loads(self.config_text())
        except tomllib.TOMLDecodeError as exc:
            raise DrillSetupError(f"drill config {self.config} is not valid TOML: {exc}") from exc
        programs: list[dict[str, Any]] = raw.get("programs") or []
        if not programs:
            raise DrillSetupError(f"drill config {self.config} has no [[programs]]")
        return programs

    @property
    def min_procs(self) -> int:
        return DEMO_MIN_PROCS if self.config is None else 1


@dataclass
class DrillContext:
    """One drill's options, log, marker, metrics and the supervisors it started."""

    options: DrillOptions
    log: DrillLog
    marker: str
    metrics: dict[str, Any] = field(default_factory=dict)
    supervisors: list[Supervisor] = field(default_factory=list)
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def workdir(self) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="chaos-drill-")
        return Path(self._tmp.name)

    def supervisor(
        self, db: Path | None = None, wait_workload: bool = True, wait_healthy: bool = True
    ) -> Supervisor:
        """Start a supervisor on the drill's config; wait for health and a stable workload."""
        config = self.workdir / "supervisor.toml"
        if not config.exists():
            config.write_text(self.options.config_text(), encoding="utf-8")
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
        if wait_healthy and wait_workload:
            sup.wait_workload(self.options.min_procs, stable_s=0.25)
        return sup

    def program_name(self) -> str:
        return str(self.options.programs()[0]["name"])

    def cleanup(self) -> None:
        """Kill every supervisor we started and every marked process; log it if needed."""
        stop_all(self.supervisors, self.marker, self.log.line)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
