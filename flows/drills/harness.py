"""The one harness: launch a real supervisor, judge it, and kill what it left.

The drills use it at run time (through :mod:`flows.drills.context`) and the
tests use the same code. The workload is found by the marker every process of a
launch inherits (:mod:`flows.drills.markers`), read with psutil; never by
asking the supervisor, so a supervisor that loses track of a child cannot hide it.

The supervisor binds port 0 and the harness reads the port from its
``event=listening`` log line, so no other process can take the port between a
choice and a bind.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil

from flows.drills.markers import MARKER_ENV, Note, by_program, find_marked, kill_marked
from flows.errors import DrillSetupError

HEALTH_DEADLINE_S = 20.0
REAL_SUPERVISOR = (sys.executable, "-m", "supervisor")
_LISTENING = re.compile(r"event=listening url=http://[^ ]+:(\d+) ")

T = TypeVar("T")


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

    def containment(self) -> str:
        """How it contains its programs, as ``/healthz`` says (``cgroup``, ``session``);
        ``unknown`` when it does not say (a supervisor from before containment existed)."""
        try:
            body = httpx.get(self.base_url + "/healthz", timeout=2.0).json()
        except (httpx.HTTPError, ValueError):
            return "unknown"
        value = body.get("containment") if isinstance(body, dict) else None
        return value if isinstance(value, str) and value else "unknown"

    def workload(self, program: str | None = None) -> list[psutil.Process]:
        """Every live process carrying our marker, the supervisor itself left out; with
        ``program``, only that program's (by the program marker the drill config sets)."""
        return find_marked(self.marker, exclude={self.pid}, program=program)

    def workload_by_program(self) -> dict[str | None, list[psutil.Process]]:
        """The workload grouped by program marker (None: processes without one)."""
        return by_program(self.marker, exclude={self.pid})

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
        self,
        count: int,
        timeout: float = 10.0,
        stable_s: float = 0.0,
        *,
        program: str | None = None,
        programs: Iterable[str] = (),
    ) -> list[psutil.Process]:
        """Wait until at least ``count`` workload processes exist (of ``program`` when
        given), each of ``programs`` has one, and the whole workload is unchanged for
        ``stable_s``; return the counted ones.

        Gives up early, as a setup error, when the supervisor reports every program
        fatal (say, a command that does not exist): that is an error, not a hang.
        """
        end = time.monotonic() + timeout
        required = set(programs)
        last: set[int] = set()
        since = next_state_check = time.monotonic()
        while time.monotonic() < end:
            groups = self.workload_by_program()
            procs = [p for name, ps in groups.items() if program in (None, name) for p in ps]
            pids = {p.pid for ps in groups.values() for p in ps}
            if pids != last:
                last, since = pids, time.monotonic()
            ready = len(procs) >= count and required <= groups.keys()
            if ready and time.monotonic() - since >= stable_s:
                return procs
            if not pids and time.monotonic() >= next_state_check:
                next_state_check = time.monotonic() + 0.25
                self._raise_if_all_fatal()
            time.sleep(0.02)
        missing = sorted(required - self.workload_by_program().keys())
        raise DrillSetupError(
            f"workload never reached {count} stable process(es)"
            f"{f' of program {program}' if program else ''} within {timeout}s"
            f" (saw {len(last)} in all{f'; no process of {missing}' if missing else ''});"
            " check the program's command"
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
