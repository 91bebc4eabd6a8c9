"""The ``nightly`` deployment: its schedule and parameters, and ``make serve`` for real.

The served test runs ``python -m flows serve --with-server`` as a child process
(a real Prefect server on a free loopback port plus the runner), triggers the
deployment through the API the UI's Run button uses, and stops both with Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.deployments import run_deployment
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.errors import DeployError
from flows.evidence import verify
from flows.pipeline.deploy import (
    LocalServer,
    deploy_to_pool,
    nightly_deployment,
    nightly_schedule,
)
from tests import conftest
from tests.conftest import free_port

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float, what: str) -> T:
    """Poll gently: each check here is a Prefect API call."""
    return conftest.wait_for(condition, timeout, what, interval=0.2)


def test_default_deployment_is_nightly_at_two_utc_with_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No flag, no env: cron 0 2 * * * in UTC, limit 1, tags, and absolute parameters."""
    monkeypatch.delenv("NIGHTLY_CRON", raising=False)
    monkeypatch.delenv("NIGHTLY_TIMEZONE", raising=False)
    monkeypatch.chdir(tmp_path)
    dep = nightly_deployment()
    (schedule,) = dep.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 2 * * *", "UTC")
    assert dep.name == "nightly" and dep.flow_name == "nightly-drills"
    assert dep.concurrency_limit == 1
    assert {"chaos-drills", "nightly"} <= set(dep.tags) and dep.description
    assert dep.parameters == {
        "artifacts_root": str(tmp_path / "pilot_artifacts"),
        "site_dir": str(tmp_path / "site"),
        "config": None,
        "publish": True,
    }
    assert dep.entrypoint == "flows.pipeline.nightly.nightly_drills"


def test_schedule_comes_from_env_then_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    """NIGHTLY_CRON / NIGHTLY_TIMEZONE override the default; flags override the env."""
    monkeypatch.setenv("NIGHTLY_CRON", "30 3 * * 1-5")
    monkeypatch.setenv("NIGHTLY_TIMEZONE", "Europe/Berlin")
    env = nightly_schedule()
    assert (env.cron, env.timezone) == ("30 3 * * 1-5", "Europe/Berlin")
    flag = nightly_schedule("15 1 * * *", "America/New_York")
    assert (flag.cron, flag.timezone) == ("15 1 * * *", "America/New_York")


@pytest.mark.parametrize(
    ("cron", "timezone", "message"),
    [("0 2 * *", "UTC", "not a valid cron"), ("0 2 * * *", "Mars/Olympus", "not an IANA zone")],
)
def test_bad_schedule_is_refused_with_the_value(cron: str, timezone: str, message: str) -> None:
    """A malformed cron or an unknown timezone is refused before anything is served."""
    with pytest.raises(DeployError, match=message):
        nightly_schedule(cron, timezone)


def test_serve_refuses_a_bad_timezone_with_exit_2() -> None:
    """``python -m flows serve --timezone nowhere`` exits 2 naming the value."""
    out = subprocess.run(
        [sys.executable, "-m", "flows", "serve", "--timezone", "Nowhere/Land"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2 and "'Nowhere/Land' is not an IANA zone" in out.stderr


def _wait_registered(api: str) -> Any:
    """The served deployment appears with its cron in UTC, its parameters and its limit."""
    with temporary_settings(updates={PREFECT_API_URL: api}):
        with get_client(sync_client=True) as client:

            def registered():
                try:
                    return client.read_deployment_by_name("nightly-drills/nightly")
                except Exception:  # ObjectNotFound until the runner has applied it
                    return None

            dep = wait_for(registered, 60, "deployment nightly-drills/nightly")
    (schedule,) = dep.schedules
    assert schedule.schedule.cron == "0 2 * * *"
    assert schedule.schedule.timezone == "UTC" and schedule.active
    assert dep.global_concurrency_limit.limit == 1
    return dep


def _ui_rerun_of_one_drill(api: str, tmp_path: Path, output) -> None:
    """A Custom run with drills=["bad_input"] completes and writes its own verified folder."""
    with temporary_settings(updates={PREFECT_API_URL: api}):
        run = run_deployment(
            "nightly-drills/nightly", parameters={"drills": ["bad_input"]}, timeout=180
        )
    assert run.state.is_completed(), (run.state, output()[-3000:])
    (run_dir,) = (tmp_path / "art").glob("chaos-drill-*")
    results = json.loads((run_dir / "results.json").read_text())
    assert [d["id"] for d in results["drills"]] == ["bad_input"]
    assert results["verdict"] == "pass" and verify(run_dir).ok
    assert (tmp_path / "site" / "index.html").is_file()


def _typo_is_refused(api: str) -> None:
    """enforce_parameter_schema: drills=["api-kill"] is refused by the API, no run made."""
    with temporary_settings(updates={PREFECT_API_URL: api}):
        with get_client(sync_client=True) as client:
            dep = client.read_deployment_by_name("nightly-drills/nightly")
            assert dep.enforce_parameter_schema
            with pytest.raises(PrefectHTTPStatusError, match="api-kill"):
                client.create_flow_run_from_deployment(dep.id, parameters={"drills": ["api-kill"]})


def _pool_deployment_registers(api: str, tmp_path: Path) -> None:
    """A work-pool deployment lands on its queue, publish off, loaded by module path from
    the installed package and started in its working directory."""
    with temporary_settings(updates={PREFECT_API_URL: api}):
        with get_client(sync_client=True) as client:
            client.create_work_pool(WorkPoolCreate(name="chaos-drills", type="process"))
        pool_dep = deploy_to_pool(
            "chaos-drills", "drill-01", "nightly-drill-01", working_dir=tmp_path,
            artifacts_root=tmp_path / "shared", cron="0 2 * * *", timezone="UTC",
        )  # fmt: skip
        with get_client(sync_client=True) as client:
            pooled = client.read_deployment(pool_dep)
    assert (pooled.work_pool_name, pooled.work_queue_name) == ("chaos-drills", "drill-01")
    assert pooled.parameters["publish"] is False
    assert pooled.entrypoint == "flows.pipeline.nightly.nightly_drills"
    assert pooled.job_variables == {"working_dir": str(tmp_path)}


def stop_serve(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Ctrl-C a ``flows serve`` process; SIGKILL it if it is still there after ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()  # its server gets SIGTERM from PR_SET_PDEATHSIG
            proc.wait()


def start_serve(tmp_path: Path, port: int, cwd: Path) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    """``python -m flows serve --with-server`` on ``port`` with its own PREFECT_HOME, its
    evidence and site under ``tmp_path``; output goes to ``serve.log`` (the caller closes it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PYTHONUNBUFFERED="1")
    log = open(tmp_path / "serve.log", "w+b")  # noqa: SIM115 - the caller closes it
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows", "serve", "--with-server", "--port", str(port),
         "--artifacts", str(tmp_path / "art"), "--site-dir", str(tmp_path / "site")],
        cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    return proc, log


@pytest.mark.slow
def test_make_serve_serves_nightly_runs_a_ui_rerun_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    """``serve --with-server``: the server answers, the deployment is registered with its
    cron in UTC, a Custom run with drills=["bad_input"] completes and writes its own run
    folder, a work-pool deployment registers too, and Ctrl-C stops runner and server
    without pausing the schedule."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    proc, log = start_serve(tmp_path, port, cwd=REPO)

    def output() -> str:
        log.seek(0)
        return log.read().decode(errors="replace")

    try:
        wait_for(lambda: f"Prefect UI: http://127.0.0.1:{port}" in output() or proc.poll(),
                 150, "the Prefect server")  # fmt: skip
        assert proc.poll() is None, output()
        assert httpx.get(f"{api}/health", timeout=5).status_code == 200
        dep = _wait_registered(api)
        assert dep.parameters["artifacts_root"] == str(tmp_path / "art")
        _ui_rerun_of_one_drill(api, tmp_path, output)
        _typo_is_refused(api)
        _pool_deployment_registers(api, tmp_path)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, output()[-3000:]
        assert "Prefect server stopped" in output()
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{api}/health", timeout=2)
    finally:
        stop_serve(proc)
        log.close()

    # pause_on_shutdown=False: on the next server start the schedule is still active.
    server = LocalServer(port, home=tmp_path / "prefect-home")
    server.start()
    try:
        with temporary_settings(updates={PREFECT_API_URL: api}):
            with get_client(sync_client=True) as client:
                dep = client.read_deployment_by_name("nightly-drills/nightly")
        assert not dep.paused and dep.schedules[0].active
    finally:
        server.stop()
