"""The one harness: launch a real supervisor, find its workload by marker, clean up.

The drills use it at run time and the tests use the same code. The workload is
found through an environment variable (``CHAOS_DRILL_MARKER``) that the harness
sets on the supervisor and every program inherits, read with psutil; never by
asking the supervisor, so a supervisor that loses track of a child cannot hide
it. A marker is ``<runner pid>-<runner start time>-<uuid>``: a later run kills
the leftovers of runners that no longer exist, and never a live runner's.

The supervisor binds port 0 and the harness reads the port from its
``event=listening`` log line, so no other process can take the port between a
choice and a bind.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil

from flows.drills._log import DrillLog
from flows.errors import DrillSetupError

MARKER_ENV = "CHAOS_DRILL_MARKER"
DEMO_MIN_PROCS = 4  # the demo worker: leader, two children, one grandchild
HEALTH_DEADLINE_S = 20.0
REAL_SUPERVISOR = (sys.executable, "-m", "supervisor")
_LISTENING = re.compile(r"event=listening url=http://[^ ]+:(\d+) ")

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

T = TypeVar("T")
Note = Callable[[str], None]


# ----- markers and the processes that carry them ------------------------------


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
    me = os.getpid()
    for proc in psutil.process_iter():
        try:
            if proc.pid == me:
                continue
            value = proc.environ().get(MARKER_ENV)
            if value is not None and predicate(value) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def find_marked(marker: str, exclude: Iterable[int] = ()) -> list[psutil.Process]:
    """Every live process carrying exactly this marker, ``exclude`` left out."""
    skip = set(exclude)
    return [p for p in marked_processes(lambda v: v == marker) if p.pid not in skip]


def kill_marked(predicate: Callable[[str], bool], timeout: float = 10.0) -> list[int]:
    """SIGSTOP then SIGKILL every matching process until a scan finds none; their pids.

    SIGSTOP first, so a process cannot fork between our scan and its SIGKILL.
    """
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs = marked_processes(predicate)
        if not procs:
            break
        for proc in procs:
            for sig in (signal.SIGSTOP, signal.SIGKILL):
                try:
                    proc.send_signal(sig)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            killed.add(proc.pid)
        psutil.wait_procs(procs, timeout=0.2)
    return sorted(killed)


def kill_leftovers(note: Note | None = None) -> list[int]:
    """Kill processes left by drill runners that no longer exist; return their pids."""
    pids = kill_marked(lambda value: not _owner_alive(value))
    if pids and note:
        note(f"killed {len(pids)} leftover process(es) of dead drill runs: {pids}")
    return pids


# ----- small helpers ---------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for servers that cannot bind 0."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(
    condition: Callable[[], T], timeout: float, what: str | None = None, interval: float = 0.01
) -> T:
    """Poll ``condition`` until it returns something truthy or ``timeout`` passes.

    Returns the last value. With ``what``, a deadline reached raises
    :class:`TimeoutError` naming what was awaited instead.
    """
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= end:
            if what is not None:
                raise TimeoutError(
                    f"timed out after {timeout}s waiting for {what}; last: {value!r}"
                )
            return value
        time.sleep(interval)


# ----- one real supervisor -------------------------------------------------------------


@dataclass
class Supervisor:
    """One real ``serve`` subprocess and what a drill or a test needs to judge it."""

    popen: subprocess.Popen[bytes]
    marker: str
    workdir: Path
    config: Path
    db: Path
    token: str | None
    stderr_path: Path
    base_url: str = ""
    _client: httpx.Client | None = field(default=None, repr=False)

    @classmethod
    def launch(
        cls,
        workdir: Path,
        marker: str,
        config: Path,
        *,
        db: Path | None = None,
        token: str | None = "",
        command: Sequence[str] = REAL_SUPERVISOR,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        host: str | None = None,
        port: int = 0,
        wait_healthy: bool = True,
        name: str = "supervisor",
        note: Note | None = None,
    ) -> Supervisor:
        """Start ``COMMAND serve``; ``token=""`` means a fresh random token, None means none."""
        workdir.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(24) if token == "" else token
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")}
        full_env.update({MARKER_ENV: marker, "PYTHONUNBUFFERED": "1"})
        if token is not None:
            full_env["SUPERVISOR_TOKEN"] = token
        full_env.update(env or {})
        db = db or workdir / "state.db"
        argv = [*command, "serve", "--config", str(config), "--port", str(port), "--db", str(db)]
        argv += ["--host", host] if host else []
        argv += list(args)
        stderr_path = workdir / f"{name}-{len(list(workdir.glob(f'{name}-*.log')))}.log"
        if note:
            note(f"start supervisor: {' '.join(argv)}")
        with open(stderr_path, "wb") as err:
            popen = subprocess.Popen(
                argv, cwd=workdir, env=full_env, stdin=subprocess.DEVNULL, stdout=err, stderr=err
            )
        sup = cls(popen, marker, workdir, config, db, token, stderr_path)
        if port:
            sup.base_url = f"http://127.0.0.1:{port}"
        if wait_healthy:
            started = time.monotonic()
            try:
                sup.wait_healthy()
            except BaseException:
                popen.kill()
                popen.wait()
                raise
            if note:
                note(
                    f"supervisor pid={sup.pid} healthy on {sup.base_url} after"
                    f" {(time.monotonic() - started) * 1000:.0f} ms"
                )
        return sup

    def wait_up(self, timeout: float = HEALTH_DEADLINE_S) -> bool:
        """Wait for the listening line (port 0) and a 200 from /healthz: True; False if it exited.

        Raises :class:`DrillSetupError` when it did neither within ``timeout``.
        """
        end = time.monotonic() + timeout
        if not self.base_url:
            bound = wait_for(lambda: _LISTENING.search(self.log()) or self.exited(), timeout)
            if isinstance(bound, re.Match):
                self.base_url = f"http://127.0.0.1:{bound.group(1)}"
        if self.base_url:
            wait_for(lambda: self.healthy() or self.exited(), end - time.monotonic(), interval=0.02)
        if self.exited():
            return False
        if not self.base_url or not self.healthy():
            raise DrillSetupError(
                f"supervisor pid {self.pid} neither answered /healthz nor exited within"
                f" {timeout}s; its log ends: {self.log()[-1500:]!r}"
            )
        return True

    def wait_healthy(self, timeout: float = HEALTH_DEADLINE_S) -> None:
        """Wait until /healthz answers 200; raise :class:`DrillSetupError` if it exited."""
        if not self.wait_up(timeout):
            raise DrillSetupError(
                f"supervisor pid {self.pid} exited with status {self.popen.poll()} before"
                f" /healthz answered; its log ends: {self.log()[-1500:]!r}"
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def client(self) -> httpx.Client:
        """A shared keep-alive client that sends the bearer token."""
        if self._client is None:
            self._client = self.new_client()
        return self._client

    def new_client(self, **kwargs: Any) -> httpx.Client:
        """A client of its own (for concurrent callers); the caller closes it."""
        return httpx.Client(base_url=self.base_url, headers=self.auth, timeout=30.0, **kwargs)

    def close_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def log(self) -> str:
        """What the supervisor wrote to stdout and stderr so far."""
        if not self.stderr_path.exists():
            return ""
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def exited(self) -> bool:
        return self.popen.poll() is not None

    def healthy(self) -> bool:
        try:
            return httpx.get(self.base_url + "/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def workload(self) -> list[psutil.Process]:
        """Every live process carrying our marker, the supervisor itself left out."""
        return find_marked(self.marker, exclude={self.pid})

    def state(self, name: str | None = None) -> dict[str, Any]:
        response = self.client.get("/process", params={"name": name} if name else None)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def events(self, limit: int = 1000) -> list[dict[str, Any]]:
        response = self.client.get("/events", params={"limit": limit})
        response.raise_for_status()
        events: list[dict[str, Any]] = response.json()["events"]
        return events

    def wait_state(
        self, states: str | set[str], name: str | None = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        wanted = {states} if isinstance(states, str) else states
        what = f"program {name or ''} in {sorted(wanted)}"

        def reached() -> dict[str, Any] | None:
            state = self.state(name)
            return state if state["state"] in wanted else None

        found = wait_for(reached, timeout, what)
        if found is None:  # wait_for raises first when it is told what it waits for
            raise TimeoutError(what)
        return found

    def wait_workload(
        self, count: int, timeout: float = 10.0, stable_s: float = 0.0
    ) -> list[psutil.Process]:
        """Wait until at least ``count`` workload processes exist, unchanged for ``stable_s``.

        Gives up early, as a setup error, when the supervisor reports every program
        fatal (say, a command that does not exist): that is an error, not a hang.
        """
        end = time.monotonic() + timeout
        last: set[int] = set()
        since = next_state_check = time.monotonic()
        while time.monotonic() < end:
            procs = self.workload()
            pids = {p.pid for p in procs}
            if pids != last:
                last, since = pids, time.monotonic()
            if len(pids) >= count and time.monotonic() - since >= stable_s:
                return procs
            if not pids and time.monotonic() >= next_state_check:
                next_state_check = time.monotonic() + 0.25
                self._raise_if_all_fatal()
            time.sleep(0.02)
        raise DrillSetupError(
            f"workload never reached {count} stable process(es) within {timeout}s"
            f" (saw {len(last)}); check the program's command"
        )

    def _raise_if_all_fatal(self) -> None:
        try:
            body = self.client.get("/processes", timeout=2.0).json()
        except (httpx.HTTPError, ValueError):
            return
        programs = body.get("processes", []) if isinstance(body, dict) else []
        if programs and all(p.get("state") == "fatal" for p in programs):
            errors = "; ".join(f"{p.get('name')}: {p.get('last_error')}" for p in programs)
            raise DrillSetupError(f"supervisor reports every program fatal: {errors}")

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        """The exit status; raises :class:`subprocess.TimeoutExpired` if it is still running."""
        return self.popen.wait(timeout=timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; the workload check is the caller's."""
        if self.exited():
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def stop_all(supervisors: Iterable[Supervisor], marker: str, note: Note | None = None) -> None:
    """SIGKILL every supervisor still running, then every process carrying ``marker``."""
    for sup in supervisors:
        sup.close_client()
        if not sup.exited():
            if note:
                note(f"cleanup: supervisor pid={sup.pid} still running; SIGKILL")
            sup.popen.kill()
        try:
            sup.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass  # unkillable (D state); the marker sweep below still reports it
    left = kill_marked(lambda v: v == marker)
    if left and note:
        note(f"cleanup: killed {len(left)} leftover marked process(es): {left}")


# ----- what a drill runs against ---------------------------------------------------


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
