"""Launch a real supervisor for a drill, find its workload by marker, clean up.

The workload is found through an environment variable that the harness sets on
the supervisor and every program inherits, read with psutil; never by asking
the supervisor, so a supervisor that loses track of a child cannot hide it.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from flows.drills._log import DrillLog
from flows.errors import DrillSetupError

MARKER_ENV = "CHAOS_DRILL_MARKER"
DEMO_MIN_PROCS = 4  # the demo worker: leader, two children, one grandchild
HEALTH_DEADLINE_S = 15.0

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
    supervisor_command: tuple[str, ...] = (sys.executable, "-m", "supervisor")

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
        programs = raw.get("programs") or []
        if not programs:
            raise DrillSetupError(f"drill config {self.config} has no [[programs]]")
        return programs

    def is_real(self) -> bool:
        return self.supervisor_command == (sys.executable, "-m", "supervisor")

    @property
    def min_procs(self) -> int:
        return DEMO_MIN_PROCS if self.config is None else 1


def runner_marker() -> str:
    """``<runner pid>-<runner start time>-<uuid>``: lets a later run spot our leftovers."""
    me = psutil.Process()
    return f"{me.pid}-{me.create_time():.2f}-{uuid.uuid4().hex[:12]}"


def _owner_alive(marker: str) -> bool:
    try:
        pid, created, _ = marker.split("-", 2)
        return abs(psutil.Process(int(pid)).create_time() - float(created)) < 0.05
    except (ValueError, psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def marked_processes(predicate: Callable[[str], bool]) -> list[psutil.Process]:
    """Live (non-zombie) processes whose drill marker satisfies ``predicate``."""
    found = []
    for proc in psutil.process_iter():
        try:
            value = proc.environ().get(MARKER_ENV)
            if value is not None and predicate(value) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _kill_all(procs: list[psutil.Process]) -> None:
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


def kill_leftovers(log: Callable[[str], None] | None = None) -> list[int]:
    """SIGKILL processes left by drill runners that no longer exist; return their pids."""
    leftovers = marked_processes(lambda value: not _owner_alive(value))
    _kill_all(leftovers)
    if leftovers and log:
        log(
            f"killed {len(leftovers)} leftover process(es) of dead drill runs:"
            f" {sorted(p.pid for p in leftovers)}"
        )
    return sorted(p.pid for p in leftovers)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], Any], deadline_s: float, interval_s: float = 0.01) -> Any:
    """Poll ``condition`` until it returns something truthy or the deadline passes."""
    end = time.monotonic() + deadline_s
    while True:
        value = condition()
        if value or time.monotonic() >= end:
            return value
        time.sleep(interval_s)


@dataclass
class Supervisor:
    """One real supervisor subprocess, its temp dir, DB, token, port and marker."""

    options: DrillOptions
    log: DrillLog
    workdir: Path
    marker: str
    db: Path
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    port: int = 0
    popen: subprocess.Popen[bytes] | None = None
    stderr_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self, wait_workload: bool = True) -> None:
        config = self.workdir / "supervisor.toml"
        config.write_text(self.options.config_text(), encoding="utf-8")
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")}
        env.update(
            {
                MARKER_ENV: self.marker,
                "SUPERVISOR_TOKEN": self.token,
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.stderr_path = self.workdir / f"supervisor-{int(time.time() * 1000)}.log"
        cmd = [
            *self.options.supervisor_command,
            "serve",
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--db",
            str(self.db),
        ]
        self.log.line(f"start supervisor: {' '.join(cmd)}")
        with open(self.stderr_path, "wb") as err:
            self.popen = subprocess.Popen(
                cmd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        started = time.monotonic()
        healthy = wait_for(self._healthy, HEALTH_DEADLINE_S, 0.02)
        if not healthy:
            tail = self.supervisor_log()[-1500:]
            raise DrillSetupError(
                f"supervisor pid {self.pid} did not answer /healthz within {HEALTH_DEADLINE_S}s"
                f" (exit status {self.popen.poll()}); its log ends: {tail!r}"
            )
        self.log.line(
            f"supervisor pid={self.pid} healthy on {self.base_url} after"
            f" {(time.monotonic() - started) * 1000:.0f} ms"
        )
        if wait_workload:
            self.wait_workload()

    def _healthy(self) -> bool:
        if self.popen is None or self.popen.poll() is not None:
            return True  # stop waiting: it died; start() reports it
        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def workload(self) -> list[psutil.Process]:
        """Every live process carrying our marker except the supervisor itself."""
        me = self.popen.pid if self.popen else -1
        return [p for p in marked_processes(lambda v: v == self.marker) if p.pid != me]

    def wait_workload(
        self, deadline_s: float = 10.0, stable_s: float = 0.25
    ) -> list[psutil.Process]:
        """Wait until the workload has at least min_procs processes, unchanged for stable_s.

        Gives up early, as a setup error, when the supervisor reports every program
        fatal (say, a command that does not exist): that is an error, not a hang.
        """
        end = time.monotonic() + deadline_s
        last: set[int] = set()
        since = next_state_check = time.monotonic()
        while time.monotonic() < end:
            procs = self.workload()
            pids = {p.pid for p in procs}
            if pids != last:
                last, since = pids, time.monotonic()
            elif len(pids) >= self.options.min_procs and time.monotonic() - since >= stable_s:
                return procs
            if not pids and time.monotonic() >= next_state_check:
                next_state_check = time.monotonic() + 0.25
                self._raise_if_all_fatal()
            time.sleep(0.02)
        raise DrillSetupError(
            f"workload never reached {self.options.min_procs} stable process(es) within"
            f" {deadline_s}s (saw {len(last)}); check the program's command"
        )

    def _raise_if_all_fatal(self) -> None:
        try:
            with self.client() as client:
                body = client.get("/processes", timeout=2.0).json()
        except (httpx.HTTPError, ValueError):
            return
        programs = body.get("processes", []) if isinstance(body, dict) else []
        if programs and all(p.get("state") == "fatal" for p in programs):
            errors = "; ".join(f"{p.get('name')}: {p.get('last_error')}" for p in programs)
            raise DrillSetupError(f"supervisor reports every program fatal: {errors}")

    def client(self, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30.0, **kwargs)

    def supervisor_log(self) -> str:
        if self.stderr_path is None or not self.stderr_path.exists():
            return ""
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        self.log.line(f"send {sig.name} to supervisor pid={self.pid}")
        os.kill(self.pid, sig)

    def wait_exit(self, timeout: float) -> int | None:
        assert self.popen is not None
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; the workload check is the caller's."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        if self.wait_exit(10.0) is None:
            self.popen.kill()
            self.popen.wait()


@dataclass
class DrillContext:
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

    def supervisor(self, db: Path | None = None) -> Supervisor:
        sup = Supervisor(
            self.options, self.log, self.workdir, self.marker, db or self.workdir / "state.db"
        )
        self.supervisors.append(sup)
        return sup

    def program_name(self) -> str:
        return str(self.options.programs()[0]["name"])

    def cleanup(self) -> None:
        """Kill every supervisor we started and every marked process; log it if needed."""
        for sup in self.supervisors:
            if sup.popen is not None and sup.popen.poll() is None:
                self.log.line(f"cleanup: supervisor pid={sup.pid} still running; SIGKILL")
                sup.popen.kill()
                sup.popen.wait()
        end = time.monotonic() + 5.0
        while time.monotonic() < end:
            left = marked_processes(lambda v: v == self.marker)
            if not left:
                break
            self.log.line(
                f"cleanup: killing {len(left)} leftover marked process(es):"
                f" {sorted(p.pid for p in left)}"
            )
            _kill_all(left)
            time.sleep(0.05)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
