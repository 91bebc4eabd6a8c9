"""Shared fixtures: free ports, polling with deadlines, and a real supervisor subprocess.

``supervisor_factory`` starts ``python -m supervisor serve`` in ``tmp_path`` with
a bearer token and a unique ``CHAOS_TEST_MARKER`` in its environment. Every
process it starts inherits that marker, so a test finds the whole tree with
``marked()`` (psutil over the machine, never by asking the supervisor), and
teardown kills every marked process and the supervisor whatever happened.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
import pytest

from tests import broken_supervisor

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
PYTHON = sys.executable
MARKER_ENV = "CHAOS_TEST_MARKER"
HEALTH_DEADLINE_S = 20.0
_LISTENING = re.compile(r"event=listening url=http://[^ ]+:(\d+) ")

T = TypeVar("T")


# ----- small helpers --------------------------------------------------------


def flows_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "flows", *args]


def run_flows(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m flows ARGS`` from the repository, output captured as text."""
    return subprocess.run(
        flows_cmd(*args), cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.01) -> T:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {value!r}")
        time.sleep(interval)


def observe(sample: Callable[[], T], seconds: float, interval: float = 0.02) -> list[T]:
    """Sample a value for ``seconds``: an observation window for "stays so", not a sync."""
    end = time.monotonic() + seconds
    seen = []
    while time.monotonic() < end:
        seen.append(sample())
        time.sleep(interval)
    return seen


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def write_config(
    path: Path, programs: list[dict[str, Any]], server: dict[str, Any] | None = None
) -> Path:
    """Write a supervisor TOML config with these ``[[programs]]`` tables."""
    lines = []
    if server:
        lines.append("[server]")
        lines += [f"{k} = {toml_value(v)}" for k, v in server.items()]
    for program in programs:
        lines.append("[[programs]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in program.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def demo_program(**overrides: Any) -> dict[str, Any]:
    """The demo worker (leader, two children, one grandchild) with a short stop_timeout."""
    program = {
        "name": "worker",
        "command": ["python", "-m", "supervisor.demo_worker"],
        "stop_timeout": 2.0,
        "backoff_initial": 0.05,
    }
    program.update(overrides)
    return program


def fixture_program(fixture: str, **overrides: Any) -> dict[str, Any]:
    """A hostile fixture from tests/fixtures as a program named after it."""
    program = {
        "name": fixture,
        "command": ["python", str(FIXTURES / f"{fixture}.py")],
        "stop_timeout": 1.0,
        "backoff_initial": 0.05,
    }
    program.update(overrides)
    return program


def _has_marker(proc: psutil.Process, marker: str) -> bool:
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return proc.environ().get(MARKER_ENV) == marker
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def find_marked(marker: str, exclude: set[int] = frozenset()) -> list[psutil.Process]:
    """Every live, non-zombie process whose environment carries this marker."""
    me = os.getpid()
    return [
        p
        for p in psutil.process_iter()
        if p.pid != me and p.pid not in exclude and _has_marker(p, marker)
    ]


def is_keeper(proc: psutil.Process) -> bool:
    try:
        return "supervisor.stop.keeper" in proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def kill_marked(marker: str, exclude: set[int] = frozenset(), timeout: float = 10.0) -> None:
    """SIGSTOP then SIGKILL every marked process until a scan finds none."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs = find_marked(marker, exclude)
        if not procs:
            return
        for proc in procs:
            for sig in (signal.SIGSTOP, signal.SIGKILL):
                try:
                    proc.send_signal(sig)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
        psutil.wait_procs(procs, timeout=0.2)


# ----- the supervisor under test ---------------------------------------------


@dataclass
class Supervisor:
    """One ``python -m supervisor serve`` subprocess and what a test needs to judge it."""

    popen: subprocess.Popen[bytes]
    base_url: str
    token: str | None
    marker: str
    workdir: Path
    config: Path
    db: Path
    stderr_path: Path
    _client: httpx.Client | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def client(self) -> httpx.Client:
        """A keep-alive client that sends the bearer token."""
        if self._client is None:
            self._client = httpx.Client(base_url=self.base_url, headers=self.auth, timeout=30)
        return self._client

    def close_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def log(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def marked(self) -> list[psutil.Process]:
        """Every live process carrying the marker, the supervisor itself excluded."""
        return find_marked(self.marker, exclude={self.pid})

    def workload(self) -> list[psutil.Process]:
        """The marked processes that belong to programs (the keeper excluded)."""
        return [p for p in self.marked() if not is_keeper(p)]

    def state(self, name: str | None = None) -> dict[str, Any]:
        params = {"name": name} if name else None
        response = self.client.get("/process", params=params)
        response.raise_for_status()
        return response.json()

    def events(self, limit: int = 1000) -> list[dict[str, Any]]:
        response = self.client.get("/events", params={"limit": limit})
        response.raise_for_status()
        return response.json()["events"]

    def wait_state(self, states: str | set[str], name: str | None = None, timeout=10.0) -> dict:
        wanted = {states} if isinstance(states, str) else states
        return wait_for(
            lambda: (s := self.state(name))["state"] in wanted and s,
            timeout,
            f"program {name or ''} in {sorted(wanted)}",
        )

    def wait_workload(self, count: int, timeout: float = 10.0) -> list[psutil.Process]:
        def grown() -> list[psutil.Process] | None:
            procs = self.workload()
            return procs if len(procs) >= count else None

        return wait_for(
            grown,
            timeout,
            f"at least {count} workload process(es)",
        )

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def healthy(self) -> bool:
        try:
            return httpx.get(self.base_url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


def _launch(
    workdir: Path,
    marker: str,
    programs: list[dict[str, Any]],
    *,
    server: dict[str, Any] | None = None,
    db: Path | None = None,
    token: str | None = "",
    args: list[str] | None = None,
    env: dict[str, str] | None = None,
    port: int | None = None,
    host: str | None = None,
    wait_healthy: bool = True,
    name: str = "supervisor",
    broken: tuple[str, ...] = (),
) -> Supervisor:
    """Start a supervisor; ``token=""`` means a fresh random SUPERVISOR_TOKEN, None means none."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = write_config(workdir / f"{name}.toml", programs, server)
    db = db or workdir / "state.db"
    if token == "":
        token = secrets.token_urlsafe(24)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")}
    full_env[MARKER_ENV] = marker
    full_env["PYTHONUNBUFFERED"] = "1"
    if token is not None:
        full_env["SUPERVISOR_TOKEN"] = token
    full_env.update(env or {})
    # port 0 by default: the supervisor binds a free port itself and logs it, so no other
    # process on a busy machine can take the port between our choice and its bind
    # broken: parts replaced by faulty ones (tests/broken_supervisor.py), to show a check can fail
    start = broken_supervisor.command(*broken) if broken else [PYTHON, "-m", "supervisor"]
    argv = [*start, "serve", "--config", str(config), "--port", str(port or 0)]
    argv += ["--db", str(db)]
    if host:
        argv += ["--host", host]
    argv += args or []
    n = len(list(workdir.glob(f"{name}*.stderr")))
    stderr_path = workdir / f"{name}{n or ''}.stderr"
    with open(stderr_path, "wb") as err:
        popen = subprocess.Popen(
            argv,
            cwd=REPO,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
        )
    sup = Supervisor(
        popen=popen,
        base_url=f"http://127.0.0.1:{port or 0}",
        token=token,
        marker=marker,
        workdir=workdir,
        config=config,
        db=db,
        stderr_path=stderr_path,
    )
    if wait_healthy:
        if not port:
            bound = wait_for(
                lambda: _LISTENING.search(sup.log()) or popen.poll() is not None,
                HEALTH_DEADLINE_S,
                "the supervisor's event=listening line",
            )
            if popen.poll() is None:
                sup.base_url = f"http://127.0.0.1:{bound.group(1)}"
        wait_for(
            lambda: sup.healthy() or popen.poll() is not None,
            HEALTH_DEADLINE_S,
            "GET /healthz to answer 200",
            interval=0.02,
        )
        if popen.poll() is not None:
            raise AssertionError(
                f"supervisor exited with {popen.returncode} before it was healthy:\n{sup.log()}"
            )
    return sup


def _teardown(sups: list[Supervisor], marker: str) -> None:
    for sup in sups:
        sup.close_client()
        if sup.popen.poll() is None:
            sup.popen.kill()
        try:
            sup.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    kill_marked(marker)


@contextmanager
def supervisor_launcher(workdir: Path) -> Iterator[Callable[..., Supervisor]]:
    """A launcher whose supervisors share one marker; everything marked dies at exit."""
    marker = uuid.uuid4().hex
    started: list[Supervisor] = []

    def launch(programs: list[dict[str, Any]] | None = None, **kwargs: Any) -> Supervisor:
        sup = _launch(workdir, marker, programs or [demo_program()], **kwargs)
        started.append(sup)
        return sup

    launch.marker = marker  # type: ignore[attr-defined]
    try:
        yield launch
    finally:
        _teardown(started, marker)


@pytest.fixture
def supervisor_factory(tmp_path: Path) -> Iterator[Callable[..., Supervisor]]:
    """``launch(programs, **options)`` starts a real supervisor; teardown kills it all."""
    with supervisor_launcher(tmp_path) as launch:
        yield launch


@pytest.fixture
def supervisor(supervisor_factory: Callable[..., Supervisor]) -> Supervisor:
    """A healthy supervisor running the demo worker."""
    return supervisor_factory([demo_program()])
