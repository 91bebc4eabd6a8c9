"""Deployments of the ``nightly-drills`` flow: served locally, or on a work pool.

``python -m flows serve`` (``make serve``) serves deployment ``nightly`` from this
process: nightly on a cron in an explicit timezone, one run at a time, and
``pause_on_shutdown=False`` so that stopping the process never silently pauses
the schedule. ``--with-server`` also runs a local Prefect server (SQLite under
``PREFECT_HOME``, loopback, analytics off) and stops it on Ctrl-C.

:func:`deploy_to_pool` registers the same deployment on a work pool instead, for
process workers on several hosts (``docs/scaling.md``).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from prefect import serve
from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron, Schedule
from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings
from prefect.types.entrypoint import EntrypointType

from flows.errors import DeployError
from flows.pipeline.nightly import nightly_drills

__all__ = [
    "DEFAULT_CRON",
    "DEFAULT_TIMEZONE",
    "DEPLOYMENT_NAME",
    "LocalServer",
    "cmd_serve",
    "deploy_to_pool",
    "nightly_deployment",
    "nightly_schedule",
]

DEPLOYMENT_NAME = "nightly"
DEFAULT_CRON = "0 2 * * *"
DEFAULT_TIMEZONE = "UTC"
CRON_ENV = "NIGHTLY_CRON"
TIMEZONE_ENV = "NIGHTLY_TIMEZONE"
TAGS = ["chaos-drills", "nightly"]
DESCRIPTION = (
    "Chaos drills against the process supervisor, one at a time, into a new evidence "
    "run folder; then trends and the evidence site. Rerun one drill: Run > Custom run, "
    'drills = ["api_kill"]. Ends Failed when any drill fails or errors.'
)
SERVER_HEALTH_DEADLINE_S = 120.0


def nightly_schedule(cron: str | None = None, timezone: str | None = None) -> Schedule:
    """The nightly ``Cron``: argument, else ``$NIGHTLY_CRON`` / ``$NIGHTLY_TIMEZONE``, else 02:00 UTC."""
    cron = cron or os.environ.get(CRON_ENV) or DEFAULT_CRON
    timezone = timezone or os.environ.get(TIMEZONE_ENV) or DEFAULT_TIMEZONE
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise DeployError(
            f"schedule: timezone {timezone!r} is not an IANA zone name; "
            "use e.g. UTC or Europe/Berlin (--timezone or $NIGHTLY_TIMEZONE)"
        ) from exc
    try:
        CronSchedule(cron=cron, timezone=timezone)
    except ValueError as exc:
        raise DeployError(
            f"schedule: {cron!r} is not a valid cron expression; use five fields, "
            'e.g. "0 2 * * *" (--cron or $NIGHTLY_CRON)'
        ) from exc
    return Cron(cron, timezone=timezone)


def _parameters(
    artifacts_root: str | Path, site_dir: str | Path, config: str | Path | None, publish: bool
) -> dict[str, Any]:
    # Absolute: a worker or a restarted server may run the flow from another directory.
    return {
        "artifacts_root": str(Path(artifacts_root).resolve()),
        "site_dir": str(Path(site_dir).resolve()),
        "config": str(Path(config).resolve()) if config else None,
        "publish": publish,
    }


def nightly_deployment(
    cron: str | None = None,
    timezone: str | None = None,
    artifacts_root: str | Path = "pilot_artifacts",
    site_dir: str | Path = "site",
    config: str | Path | None = None,
    name: str = DEPLOYMENT_NAME,
) -> RunnerDeployment:
    """Deployment ``nightly`` of ``nightly-drills``, ready for :func:`prefect.serve`."""
    # Prefect's sync_compatible methods are typed "value or coroutine"; called from
    # synchronous code, as here, they return the value.
    return cast(
        RunnerDeployment,
        nightly_drills.to_deployment(
            name=name,
            schedule=nightly_schedule(cron, timezone),
            concurrency_limit=1,
            parameters=_parameters(artifacts_root, site_dir, config, publish=True),
            tags=TAGS,
            description=DESCRIPTION,
            entrypoint_type=EntrypointType.MODULE_PATH,
        ),
    )


def deploy_to_pool(
    work_pool: str,
    work_queue: str,
    name: str,
    *,
    artifacts_root: str | Path,
    working_dir: str | Path | None = None,
    site_dir: str | Path = "site",
    config: str | Path | None = None,
    publish: bool = False,
    cron: str | None = None,
    timezone: str | None = None,
    env: dict[str, str] | None = None,
) -> UUID:
    """Register the nightly deployment on a work pool's queue; its id.

    The pool must exist (``prefect work-pool create POOL --type process``). The
    flow is loaded by module path (``flows.pipeline.nightly.nightly_drills``)
    from the package installed where the queue's worker runs, not from a
    checkout; each run starts in ``working_dir`` (the worker's default: a
    temporary folder) with ``env`` added to the worker's environment.
    """
    job_variables: dict[str, Any] = {}
    if working_dir is not None:
        job_variables["working_dir"] = str(Path(working_dir).resolve())
    if env:
        job_variables["env"] = dict(env)
    # sync_compatible, called from synchronous code: values, not coroutines (see above)
    deployment = cast(
        RunnerDeployment,
        nightly_drills.to_deployment(
            name=name,
            work_pool_name=work_pool,
            work_queue_name=work_queue,
            job_variables=job_variables,
            schedule=nightly_schedule(cron, timezone),
            concurrency_limit=1,
            parameters=_parameters(artifacts_root, site_dir, config, publish),
            tags=[*TAGS, work_queue],
            description=DESCRIPTION,
            entrypoint_type=EntrypointType.MODULE_PATH,
        ),
    )
    return cast(UUID, deployment.apply())


def _die_with_parent_fn() -> Callable[[], None] | None:
    """A preexec_fn: the child gets SIGTERM when we die, even by SIGKILL (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork, not in the child
    return lambda: prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As uvicorn binds: a port whose last connections sit in TIME_WAIT is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


class LocalServer:
    """``prefect server start`` on 127.0.0.1 as a child process; SQLite under PREFECT_HOME."""

    def __init__(
        self,
        port: int,
        home: Path | None = None,
        *,
        host: str = "127.0.0.1",
        env: dict[str, str] | None = None,
        python: str | None = None,
    ) -> None:
        self.port = port
        self.host = host
        self.home = Path(home or get_current_settings().home)
        self.log_path = self.home / f"server-{port}.log"
        self.env = dict(env or {})  # e.g. PREFECT_API_DATABASE_CONNECTION_URL
        self.python = python or sys.executable
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.ui_url}/api"

    def start(self, deadline_s: float = SERVER_HEALTH_DEADLINE_S) -> None:
        if not _port_free(self.port, self.host):
            raise DeployError(
                f"server: port {self.port} on {self.host} is in use (another Prefect server?); "
                "pass --port N, or drop --with-server and set PREFECT_API_URL to that server"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        env.update(PREFECT_HOME=str(self.home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
        # the UI's own API address; Prefect's default is port 4200, whatever --port says
        env.update(PREFECT_UI_API_URL=self.api_url, **self.env)
        cmd = [self.python, "-m", "prefect", "server", "start",
               "--host", self.host, "--port", str(self.port)]  # fmt: skip
        with open(self.log_path, "ab") as log:
            # Its own session: Ctrl-C reaches only us, and we stop it after the runner.
            self.popen = subprocess.Popen(
                cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent_fn(),
            )  # fmt: skip
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if self.popen.poll() is not None:
                break
            if self.healthy():
                return
            time.sleep(0.25)
        tail = self.log_path.read_text(encoding="utf-8", errors="replace")[-1500:]
        status = self.popen.poll()
        self.stop()
        raise DeployError(
            f"server: `{' '.join(cmd)}` did not answer {self.api_url}/health within "
            f"{deadline_s:.0f}s (exit status {status}); its log {self.log_path} ends:\n{tail}"
        )

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.api_url}/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM the server's process group, SIGKILL it after ``timeout_s``."""
        if self.popen is None or self.popen.poll() is not None:
            return None if self.popen is None else self.popen.returncode
        for sig, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                break
            try:
                return self.popen.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        return self.popen.poll()


def _serve(deployment: RunnerDeployment) -> None:
    serve(deployment, pause_on_shutdown=False, limit=1)


def _alerts(deployment: RunnerDeployment, args: argparse.Namespace) -> None:
    """Register the deployment and upsert its automations (:mod:`flows.pipeline.alerts`)."""
    from flows.pipeline.alerts import ensure_alerts, missed_window, webhook_notifier

    window = missed_window(args.missed_window)
    deployment_id = cast(UUID, deployment.apply())
    notifier = webhook_notifier(args.notify_url) if args.notify_url else None
    ids = ensure_alerts({deployment.name: (deployment_id, "default")}, notifier, window)
    print(f"automations: {', '.join(sorted(ids))} (notify: {args.notify_url or 'nobody'})",
          flush=True)  # fmt: skip


def _run_served(deployment: RunnerDeployment, args: argparse.Namespace) -> None:
    """With a site server when ``--site-port``: flow runs then link the served pages."""
    site = None
    if args.site_port is not None:
        from flows.pipeline.static import SiteServer

        site = SiteServer(Path(args.site_dir), args.site_port)
        site.start()
        os.environ["NIGHTLY_SITE_URL"] = site.url  # inherited by the flow-run processes
        print(f"evidence site: {site.url} (serving {Path(args.site_dir).resolve()})", flush=True)
    try:
        _alerts(deployment, args)
        _serve(deployment)
    finally:
        if site is not None:
            site.stop()


def cmd_serve(args: argparse.Namespace) -> int:
    """``python -m flows serve [--with-server] [--site-port N]``: serve ``nightly`` until Ctrl-C."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        if args.config and not Path(args.config).is_file():
            raise DeployError(
                f"--config {args.config}: no such file; pass a supervisor TOML config"
            )
        schedule = nightly_schedule(args.cron, args.timezone)
        deployment = nightly_deployment(
            args.cron, args.timezone, args.artifacts, args.site_dir, args.config
        )
    except DeployError as exc:
        print(f"flows serve: {exc}", file=sys.stderr)
        return 2
    print(f"deployment nightly-drills/{deployment.name}: cron {schedule.cron!r} "
          f"in {schedule.timezone}; artifacts_root {deployment.parameters['artifacts_root']}",
          flush=True)  # fmt: skip
    if not args.with_server:
        if not PREFECT_API_URL.value():
            print("flows serve: PREFECT_API_URL is not set, so this serves to a temporary "
                  "server without a UI that dies with this process; use --with-server "
                  "(make serve) or set PREFECT_API_URL", file=sys.stderr)  # fmt: skip
        try:
            _run_served(deployment, args)
        except DeployError as exc:
            print(f"flows serve: {exc}", file=sys.stderr)
            return 2
        return 0
    server = LocalServer(args.port)
    try:
        print(f"starting a Prefect server on {server.ui_url} (log: {server.log_path}) ...",
              flush=True)  # fmt: skip
        server.start()
        print(f"Prefect UI: {server.ui_url}   (Ctrl-C stops the runner and the server)",
              flush=True)  # fmt: skip
        os.environ["PREFECT_API_URL"] = server.api_url  # for the flow-run processes
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            _run_served(deployment, args)
    except DeployError as exc:
        print(f"flows serve: {exc}", file=sys.stderr)
        return 2
    finally:
        code = server.stop()
        if code is not None:
            print(f"Prefect server stopped (exit status {code})", flush=True)
    return 0
