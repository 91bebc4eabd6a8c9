"""The ``nightly-drills`` flow end to end under a Prefect test server, and ``make drill``.

The flow runs in this process (``prefect_test_harness``, started once), so a test
may swap the drill options for ones that start a broken supervisor
(``tests/broken_supervisor.py``): that is how a drill is made to FAIL against a
really broken supervisor without a public fault parameter on the flow.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.testing.utilities import prefect_test_harness

import flows.pipeline.nightly as nightly
import flows.runner as runner
from flows.drills import DrillOptions
from flows.drills.markers import marked_processes
from flows.evidence import verify
from flows.pipeline.nightly import nightly_drills
from tests import broken_supervisor
from tests.conftest import free_port

REPO = Path(__file__).resolve().parent.parent
KEYS = {"drill-results", "drill-evidence", "drill-site"}


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """One temporary Prefect server (SQLite in a temp dir) for the whole session."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with prefect_test_harness(server_startup_timeout=90):
        yield str(PREFECT_API_URL.value())


def artifacts_of(flow_run_id: UUID) -> dict[str, Any]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found}


def only_run(root: Path) -> Path:
    (run_dir,) = root.glob("chaos-drill-*")
    return run_dir


def test_passing_run_completes_with_evidence_artifacts_and_site(
    prefect_api: str, tmp_path: Path
) -> None:
    """Two passing drills: state Completed, a sealed run folder, three artifacts, a built site."""
    root, site = tmp_path / "art", tmp_path / "site"
    state = nightly_drills(
        drills=["bad_input", "api_kill"], artifacts_root=str(root), site_dir=str(site),
        return_state=True,
    )  # fmt: skip
    assert state.is_completed(), state.message
    run_dir = only_run(root)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["verdict"] == "pass" and results["status"] == "complete"
    assert [d["id"] for d in results["drills"]] == ["api_kill", "bad_input"]  # registry order
    assert verify(run_dir).ok
    outcome = state.result()
    assert outcome["run_dir"] == str(run_dir) and Path(outcome["site_index"]).is_file()

    arts = artifacts_of(state.state_details.flow_run_id)
    assert KEYS <= set(arts)
    table = arts["drill-results"].data
    table = json.loads(table) if isinstance(table, str) else table
    assert [(r["drill"], r["status"]) for r in table] == [
        ("api_kill", "PASS"),
        ("bad_input", "PASS"),
    ]
    assert table[0]["key metric"].startswith("kill_round_trip_ms=")
    evidence = arts["drill-evidence"].data
    assert "PASS" in evidence and f"python -m flows verify {run_dir}" in evidence
    site_note = arts["drill-site"].data  # no NIGHTLY_SITE_URL: the page's path as text
    assert "file://" not in site_note and arts["drill-site"].type == "markdown"
    (page,) = re.findall(r"`([^`]+/index\.html)`", site_note)
    assert run_dir.name in page and Path(page).is_file()


def test_failing_drill_fails_the_run_after_keeping_every_drills_evidence(
    prefect_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A supervisor whose kill answers 500: api_kill FAILs, bad_input still passes and is
    recorded, the site is built, the artifacts name the FAIL line, and the run is Failed."""
    broken = DrillOptions(supervisor_command=tuple(broken_supervisor.command("kill_500")))
    monkeypatch.setattr(nightly, "_options", lambda config: broken)
    root, site = tmp_path / "art", tmp_path / "site"
    state = nightly_drills(
        drills=["api_kill", "bad_input"], artifacts_root=str(root), site_dir=str(site),
        return_state=True,
    )  # fmt: skip
    assert state.is_failed()
    assert "api_kill fail" in state.message
    run_dir = only_run(root)
    results = json.loads((run_dir / "results.json").read_text())
    statuses = {d["id"]: d["status"] for d in results["drills"]}
    assert statuses == {"api_kill": "fail", "bad_input": "pass"}
    assert results["verdict"] == "fail" and verify(run_dir).ok
    assert (site / "generated" / "runs" / run_dir.name / "index.html").is_file()

    arts = artifacts_of(state.state_details.flow_run_id)
    assert KEYS <= set(arts)
    api_kill = next(d for d in results["drills"] if d["id"] == "api_kill")
    assert api_kill["summary"].startswith("FAIL: ") and "HTTP 500" in api_kill["summary"]
    assert api_kill["summary"] in arts["drill-evidence"].data
    assert "FAIL" in arts["drill-evidence"].data.splitlines()[0]


def test_task_that_raises_is_recorded_as_error_and_the_others_still_run(
    prefect_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If a drill's task itself crashes, its entry is ``error`` with a FAIL line, the
    next drill runs, and the run is sealed and Failed."""
    real = runner.run_drill

    def crashing(drill_id: str, log_path: Path, options: DrillOptions) -> Any:
        if drill_id == "api_kill":
            raise RuntimeError("harness exploded")
        return real(drill_id, log_path, options)

    monkeypatch.setattr(runner, "run_drill", crashing)
    state = nightly_drills(
        drills=["api_kill", "bad_input"], artifacts_root=str(tmp_path / "art"), publish=False,
        return_state=True,
    )  # fmt: skip
    assert state.is_failed()
    run_dir = only_run(tmp_path / "art")
    results = json.loads((run_dir / "results.json").read_text())
    api_kill, bad_input = results["drills"]
    assert api_kill["status"] == "error" and "harness exploded" in api_kill["summary"]
    assert bad_input["status"] == "pass"
    log = (run_dir / "drill_api_kill.log").read_text().splitlines()
    assert log[-1].split(" ", 1)[1] == api_kill["summary"]
    assert verify(run_dir).ok
    arts = artifacts_of(state.state_details.flow_run_id)
    assert KEYS <= set(arts)
    assert "No site was built" in arts["drill-site"].data
    assert f"`{run_dir.resolve()}`" in arts["drill-site"].data
    assert "file://" not in arts["drill-site"].data


def test_drill_over_its_timeout_is_an_error_and_leaves_no_process(
    prefect_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drill that outlives the task timeout is stopped, cleaned up and recorded as error."""
    mine = f"{os.getpid()}-"  # the flow runs in this process, so its drills carry our pid
    assert not marked_processes(lambda v: v.startswith(mine))
    monkeypatch.setattr(nightly, "DRILL_TIMEOUT_S", 0.5)  # the supervisor alone needs ~1 s
    state = nightly_drills(
        drills=["api_kill"], artifacts_root=str(tmp_path / "art"), publish=False,
        return_state=True,
    )  # fmt: skip
    assert state.is_failed()
    run_dir = only_run(tmp_path / "art")
    (drill,) = json.loads((run_dir / "results.json").read_text())["drills"]
    assert drill["status"] == "error", drill
    assert drill["summary"].startswith("FAIL: ")
    log = (run_dir / "drill_api_kill.log").read_text()
    assert sum(" FAIL: " in line for line in log.splitlines()) == 1
    assert not marked_processes(lambda v: v.startswith(mine))


def _cli(*args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows", "nightly", *args],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout,
    )  # fmt: skip


def test_cli_exits_1_on_a_broken_target_and_still_prints_the_evidence(
    prefect_api: str, tmp_path: Path
) -> None:
    """``--config`` naming a program that cannot start: drill error, exit 1, table and folder."""
    config = tmp_path / "broken.toml"
    config.write_text('[[programs]]\nname = "ghost"\ncommand = ["/nonexistent/ghost"]\n')
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PREFECT_HOME": str(tmp_path / "ph")}
    out = _cli("--artifacts", str(tmp_path / "art"), "--drill", "api_kill", "--config",
               str(config), "--no-publish", env=env)  # fmt: skip
    assert out.returncode == 1, out.stderr[-3000:]
    assert "api_kill  ERROR" in out.stdout
    assert f"run folder: {only_run(tmp_path / 'art')}" in out.stdout
    assert "verdict:    FAIL" in out.stdout


@pytest.mark.slow
def test_make_drill_command_runs_the_flow_on_a_temporary_server(tmp_path: Path) -> None:
    """What ``make drill`` runs, with no Prefect server configured: exit 0, the verdict
    table, the run folder and the site index; the repository is left untouched."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false"
    )
    out = _cli("--artifacts", str(tmp_path / "art"), "--site-dir", str(tmp_path / "site"),
               "--drill", "api_kill", env=env)  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "Starting temporary server" in out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("api_kill  PASS") for line in lines), out.stdout
    run_dir = only_run(tmp_path / "art")
    assert f"run folder: {run_dir}" in lines
    assert f"site:       {tmp_path / 'site' / 'index.html'}" in lines
    assert (tmp_path / "site" / "index.html").is_file()
    assert verify(run_dir).ok


def test_run_page_link_is_a_url_under_nightly_site_url_else_a_plain_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With NIGHTLY_SITE_URL the run page is a link under it; without, a path, never file://."""
    index = tmp_path / "site" / "index.html"
    monkeypatch.delenv("NIGHTLY_SITE_URL", raising=False)
    path = nightly.run_page_link(index, "chaos-drill-20260101-000000")
    assert path == str(tmp_path / "site" / "generated/runs/chaos-drill-20260101-000000/index.html")
    monkeypatch.setenv("NIGHTLY_SITE_URL", "http://127.0.0.1:8000")
    url = nightly.run_page_link(index, "chaos-drill-20260101-000000")
    assert url == "http://127.0.0.1:8000/generated/runs/chaos-drill-20260101-000000/"


def test_run_page_link_of_a_host_of_a_store_is_under_its_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A root <store>/hosts/<host>/ is that host's part of the store, and its run pages sit
    under hosts/<host>/ in a path or a NIGHTLY_SITE_URL link; a plain root has no host."""
    store = tmp_path / "store"
    assert nightly.store_and_host(store / "hosts" / "drill-02") == (store.resolve(), "drill-02")
    assert nightly.store_and_host(store) == (store, "")
    monkeypatch.delenv("NIGHTLY_SITE_URL", raising=False)
    run = "chaos-drill-20260101-000000"
    assert nightly.run_page_link(None, run, "drill-02") is None
    path = nightly.run_page_link(tmp_path / "site" / "index.html", run, "drill-02")
    assert path == str(tmp_path / "site" / f"generated/hosts/drill-02/runs/{run}/index.html")
    monkeypatch.setenv("NIGHTLY_SITE_URL", "https://evidence.example/")
    url = nightly.run_page_link(None, run, "drill-02")
    assert url == f"https://evidence.example/generated/hosts/drill-02/runs/{run}/"


def test_run_under_a_host_folder_links_its_page_in_the_stores_site(
    prefect_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """publish=True under <store>/hosts/drill-01/: the site is the store's (every host) and
    the link is the run's built page under its host; publish=False with NIGHTLY_SITE_URL
    links the page the publisher's site will have."""
    monkeypatch.delenv("NIGHTLY_SITE_URL", raising=False)
    store, site = tmp_path / "store", tmp_path / "site"
    state = nightly_drills(drills=["bad_input"], artifacts_root=str(store / "hosts" / "drill-01"),
                           site_dir=str(site), return_state=True)  # fmt: skip
    assert state.is_completed(), state.message
    outcome = state.result()
    run_id = outcome["run_id"]
    page = Path(outcome["site_page"])
    assert page == site / "generated" / "hosts" / "drill-01" / "runs" / run_id / "index.html"
    assert page.is_file() and run_id in page.read_text()

    monkeypatch.setenv("NIGHTLY_SITE_URL", "http://127.0.0.1:8000")
    state = nightly_drills(drills=["bad_input"], artifacts_root=str(store / "hosts" / "drill-02"),
                           publish=False, return_state=True)  # fmt: skip
    assert state.is_completed(), state.message
    outcome = state.result()
    assert outcome["site_index"] is None
    assert outcome["site_page"] == (
        f"http://127.0.0.1:8000/generated/hosts/drill-02/runs/{outcome['run_id']}/"
    )
    arts = artifacts_of(state.state_details.flow_run_id)
    assert arts["drill-site"].type == "markdown"  # a link artifact is stored as markdown
    assert f"]({outcome['site_page']})" in arts["drill-site"].data


def test_drills_parameter_is_a_list_of_the_registry_ids_and_comes_first() -> None:
    """The rerun form's schema: drills first, an array whose items are exactly the ids."""
    from prefect.utilities.callables import parameter_schema

    from flows.registry import DRILL_IDS

    schema = parameter_schema(nightly_drills).model_dump()
    drills = schema["properties"]["drills"]
    assert drills["position"] == 0
    (array,) = [a for a in drills["anyOf"] if a.get("type") == "array"]
    assert array["items"]["enum"] == list(DRILL_IDS)


def test_nightly_help_lists_every_drill_id() -> None:
    """``python -m flows nightly --help`` names each drill id of the registry."""
    from flows.registry import DRILL_IDS

    out = subprocess.run(
        [sys.executable, "-m", "flows", "nightly", "--help"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0
    assert all(drill in out.stdout for drill in DRILL_IDS), out.stdout


def test_every_entry_point_defaults_prefect_home_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unset PREFECT_HOME becomes ./.prefect of the working directory; a set one is kept."""
    from flows.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PREFECT_HOME", raising=False)
    assert main(["drills"]) == 0
    assert os.environ["PREFECT_HOME"] == str(tmp_path / ".prefect")
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "mine"))
    assert main(["drills"]) == 0
    assert os.environ["PREFECT_HOME"] == str(tmp_path / "mine")


def test_nightly_uses_a_running_local_server_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server answering /api/health on the make-serve port is used and named; without one
    the output says a temporary server runs; PREFECT_API_URL wins over both."""
    import http.server
    import threading

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200 if self.path == "/api/health" else 404)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with temporary_settings(updates={PREFECT_API_URL: None}):
            monkeypatch.setattr(nightly, "LOCAL_SERVER_PORT", httpd.server_address[1])
            api, which = nightly._which_server()
            assert api == f"http://127.0.0.1:{httpd.server_address[1]}/api"
            assert "make serve" in which
            monkeypatch.setattr(nightly, "LOCAL_SERVER_PORT", free_port())
            api, which = nightly._which_server()
            assert api is None and "temporary" in which
        with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
            api, which = nightly._which_server()
            assert api is None and "PREFECT_API_URL" in which
    finally:
        httpd.shutdown()
        httpd.server_close()
