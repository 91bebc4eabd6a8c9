"""The drills against a real supervisor: each passes, and each fails against a broken one."""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest

import flows.drills as drills
from flows.drills import DrillOptions, escapee, run_drill
from flows.drills.harness import wait_for
from flows.drills.markers import argv_token, find_by_argv, find_marked, kill_found, kill_leftovers
from flows.evidence import verify
from flows.runner import run_drills
from supervisor import config as supervisor_config
from supervisor.errors import ConfigError
from tests import broken_supervisor
from tests.conftest import run_flows, supervisor_launcher, write_config

ROOT = Path(__file__).resolve().parent.parent


def last_line(path: Path) -> str:
    return path.read_text(encoding="utf-8").rstrip("\n").splitlines()[-1]


def verdict_lines(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [ln for ln in lines if " PASS: " in ln or " FAIL: " in ln]


def _expected_status(drill: dict) -> str:
    """Every drill passes against the real supervisor, but escapee passes only where it
    contains programs by cgroup: session containment cannot hold a setsid escapee."""
    return "pass" if drill["id"] != "escapee" or drill["containment"] == "cgroup" else "fail"


@pytest.mark.slow
def test_every_drill_passes_against_the_real_supervisor(tmp_path: Path) -> None:
    """All eight drills pass in one run (escapee: with cgroup containment), and the
    sealed run folder verifies."""
    run_dir = tmp_path / "chaos-drill-20261128-020000"
    results = run_drills(run_dir, None, DrillOptions(), command="pytest", progress=lambda m: None)
    statuses = {d["id"]: (d["status"], d["summary"]) for d in results["drills"]}
    expected = {d["id"]: _expected_status(d) for d in results["drills"]}
    assert {i: s for i, (s, _) in statuses.items()} == expected, statuses
    assert results["verdict"] == ("pass" if set(expected.values()) == {"pass"} else "fail")
    assert [d["id"] for d in results["drills"]] == drills.DRILL_IDS
    for drill in results["drills"]:
        assert drill["containment"] in ("cgroup", "session", "unknown")
        log = run_dir / drill["log"]
        assert len(verdict_lines(log)) == 1
        assert last_line(log).split(" ", 1)[1] == drill["summary"]
        assert drill["metrics"].get(drills.KEY_METRICS[drill["id"]]) is not None
    sigterm = next(d for d in results["drills"] if d["id"] == "sigterm")
    assert sigterm["summary"] == "PASS: no orphan worker after parent SIGTERM"
    assert verify(run_dir).ok


# each reason is a pattern that only the one intended failure message matches
BROKEN = [
    ("sigterm", ("no_shutdown_stop",), r"exited without recording its programs stopped"),
    ("sigterm", ("no_shutdown_stop", "no_keeper"), r"orphan workload process\(es\) after"),
    (
        "sigterm",
        ("leader_only_kill", "no_subreaper", "no_keeper"),
        r"orphan workload process\(es\) after",
    ),
    ("api_kill", ("kill_500",), r"^FAIL: kill answered HTTP 500"),
    ("api_kill", ("kill_drop",), r"^FAIL: kill answered no response \(HTTP 000\)"),
    ("api_kill", ("leader_only_kill",), r"process\(es\) of the tree still alive"),
    ("sigkill", ("no_keeper",), r"survived the SIGKILLed supervisor"),
    ("crash_restart", ("no_autorestart",), r"worker not restarted within"),
    (
        "legacy_db",
        ("legacy_migration_error",),
        r"logged a DB problem: .*no such column: created_at",
    ),
    ("bad_input", ("no_auth",), r"probes got the wrong status: .*got 200, expected 401"),
    ("bad_input", ("no_body_limit",), r"probes got the wrong status: body over 64 KiB"),
    ("kill_under_load", ("kill_500",), r"kills and \d+ of \d+ polls did not answer 200"),
    ("kill_under_load", ("leader_only_kill",), r"round \d: \d+ process\(es\) alive after kills"),
]


def _marker_of(log: Path) -> str:
    """The runner marker a drill wrote into its first log line."""
    found = re.search(r"; marker (\S+);", log.read_text(encoding="utf-8").splitlines()[0])
    assert found, "the drill log names no marker"
    return found.group(1)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("drill_id", "faults", "reason"), BROKEN, ids=[f"{d}-{'+'.join(f)}" for d, f, _ in BROKEN]
)
def test_drill_fails_against_a_broken_supervisor(
    tmp_path: Path, drill_id: str, faults: tuple[str, ...], reason: str
) -> None:
    """A supervisor with one guarantee broken makes the drill FAIL, naming why."""
    log = tmp_path / f"drill_{drill_id}.log"
    options = DrillOptions(supervisor_command=tuple(broken_supervisor.command(*faults)))
    result = run_drill(drill_id, log, options)
    assert result.status == "fail", result.summary
    assert result.summary.startswith("FAIL: ")
    assert re.search(reason, result.summary), result.summary
    assert len(verdict_lines(log)) == 1 and last_line(log).endswith(result.summary)
    assert find_marked(_marker_of(log)) == [], "the drill left processes of its own behind"


def test_drill_with_unstartable_program_is_an_error_not_a_hang(tmp_path: Path) -> None:
    """A config whose command does not exist gives status error with the reason."""
    config = tmp_path / "broken.toml"
    config.write_text('[[programs]]\nname = "ghost"\ncommand = ["/nonexistent/ghost"]\n')
    result = run_drill("api_kill", tmp_path / "drill_api_kill.log", DrillOptions(config=config))
    assert result.status == "error"
    assert "fatal" in result.summary and "No such file or directory" in result.summary


def _capturing_drill(box: dict, exc: BaseException):
    def drill(ctx):
        box["marker"] = ctx.marker
        ctx.supervisor()
        raise exc

    return drill


@pytest.mark.parametrize(
    "exc", [RuntimeError("boom"), KeyboardInterrupt()], ids=["exception", "ctrl-c"]
)
def test_harness_leaves_no_process_when_a_drill_raises(
    tmp_path: Path, monkeypatch, exc: BaseException
) -> None:
    """Whether the drill raises or is interrupted, the supervisor and workload are killed."""
    box: dict = {}
    monkeypatch.setitem(drills.DRILLS, "api_kill", _capturing_drill(box, exc))
    log = tmp_path / "drill_api_kill.log"
    if isinstance(exc, KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            run_drill("api_kill", log)
    else:
        result = run_drill("api_kill", log)
        assert result.status == "error" and "boom" in result.summary
    assert box["marker"]
    assert find_marked(box["marker"]) == []
    text = log.read_text()
    assert "cleanup: supervisor pid=" in text
    assert last_line(log).split(" ", 1)[1].startswith("FAIL: ")


def test_custom_config_drills_the_users_own_workload(tmp_path: Path) -> None:
    """--config runs the drill on the user's program, found by the marker."""
    config = tmp_path / "mine.toml"
    config.write_text(
        '[[programs]]\nname = "sleeper"\ncommand = ["sleep", "300"]\nstop_timeout = 2.0\n'
    )
    result = run_drill("api_kill", tmp_path / "drill_api_kill.log", DrillOptions(config=config))
    assert result.status == "pass", result.summary
    assert "tree of 1 process(es) gone" in result.summary


def _script(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "scripts/recovery_drill.sh"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        **kw,
    )


def test_recovery_drill_script_rejects_unknown_drill_with_valid_ids(tmp_path: Path) -> None:
    """An unknown drill id exits 2 and lists the valid ones; no run folder is made."""
    out = _script(str(tmp_path / "run"), "nope")
    assert out.returncode == 2
    assert "invalid choice: 'nope'" in out.stderr
    for drill_id in drills.DRILL_IDS:
        assert drill_id in out.stderr
    assert not (tmp_path / "run").exists()


def test_recovery_drill_script_without_arguments_prints_usage() -> None:
    """No DIR: usage on stderr, exit 2."""
    out = _script()
    assert out.returncode == 2 and "usage:" in out.stderr


def test_recovery_drill_script_runs_one_drill_and_writes_evidence(tmp_path: Path) -> None:
    """The evidence-document command writes a verifiable run folder and a summary table."""
    run_dir = tmp_path / "chaos-drill-20260221-published"
    out = _script(str(run_dir), "bad_input")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "bad_input" in out.stdout and "PASS" in out.stdout
    results = json.loads((run_dir / "results.json").read_text())
    assert results["command"] == f"scripts/recovery_drill.sh {run_dir} bad_input"
    assert results["verdict"] == "pass"
    check = run_flows("verify", str(run_dir))
    assert check.returncode == 0, check.stdout + check.stderr


def test_failing_drill_makes_run_exit_1(tmp_path: Path) -> None:
    """python -m flows run exits 1 when a drill errors, and still seals the evidence."""
    config = tmp_path / "broken.toml"
    config.write_text('[[programs]]\nname = "ghost"\ncommand = ["/nonexistent/ghost"]\n')
    out = run_flows(
        "run", "--artifacts", str(tmp_path / "root"), "--drill", "api_kill", "--config", str(config)
    )
    assert out.returncode == 1, out.stderr[-2000:]
    assert "ERROR" in out.stdout
    (run_dir,) = (tmp_path / "root").glob("chaos-drill-*")
    assert json.loads((run_dir / "results.json").read_text())["status"] == "complete"


# ----- escapee: only a cgroup holds a setsid, environment-less, forking descendant -------


def _session_config(tmp_path: Path) -> Path:
    """A config that forces session containment (``[server] containment = "session"``);
    on a supervisor from before the key existed, session is all there is, so it is left out."""
    programs = [{"name": "bystander", "command": ["sleep", "300"], "stop_timeout": 1.0}]
    path = write_config(tmp_path / "session.toml", programs, {"containment": "session"})
    try:
        supervisor_config.load(path)
    except ConfigError:
        path = write_config(tmp_path / "session.toml", programs)
    return path


@pytest.mark.slow
def test_escapee_drill_fails_against_session_containment(tmp_path: Path) -> None:
    """With session containment the escapees outlive the API kill and the SIGKILLed
    supervisor: FAIL naming every survivor by pid and command line; none is left after."""
    log = tmp_path / "drill_escapee.log"
    result = run_drill("escapee", log, DrillOptions(config=_session_config(tmp_path)))
    assert result.status == "fail", result.summary
    assert result.containment in ("session", "unknown")
    assert re.match(
        r"FAIL: \d+ escapee\(s\) survived \(containment (session|unknown)\)", result.summary
    )
    survivors = re.findall(
        r" (api_kill|sigterm|sigkill): SURVIVOR (pid=\d+ cmd=.*)$", log.read_text(), re.M
    )
    assert {path for path, _ in survivors} >= {"api_kill", "sigkill"}, survivors
    for path, named in survivors:
        assert f"{path}: " in result.summary and named in result.summary
        assert "_escapee_workload.py" in named and "chaos-drill-marker=" in named
    assert result.metrics["survivors"] == len(survivors)
    assert result.metrics["collateral"] == {"bystander": {"before": 1, "lost": 0}}
    marker = _marker_of(log)
    assert find_by_argv(marker) == [] and find_marked(marker) == []


def _containment_of_real_supervisor(tmp_path: Path) -> str:
    probe = tmp_path / "probe"
    probe.mkdir()
    with supervisor_launcher(probe) as launch:
        return launch([{"name": "probe", "command": ["sleep", "300"]}]).containment()


@pytest.mark.slow
def test_escapee_drill_passes_with_cgroup_containment(tmp_path: Path) -> None:
    """Where the supervisor contains programs by cgroup, no escapee survives any path."""
    containment = _containment_of_real_supervisor(tmp_path)
    if containment != "cgroup":
        pytest.skip(
            f"the supervisor's /healthz reports containment {containment!r}, not 'cgroup': "
            "this supervisor has no cgroup containment, or no writable cgroup v2 tree here"
        )
    log = tmp_path / "drill_escapee.log"
    result = run_drill("escapee", log, DrillOptions())
    assert result.status == "pass", result.summary
    assert result.containment == "cgroup" and result.metrics["survivors"] == 0
    assert find_by_argv(_marker_of(log)) == []


def test_escapees_of_a_dead_runner_are_killed_by_the_next_run() -> None:
    """Escapees carry their runner's marker in argv only; a later run's leftover sweep
    finds them by it once that runner is gone (here: our pid with another start time)."""
    marker = f"{os.getpid()}-0.00-{uuid.uuid4().hex[:12]}"
    workload = subprocess.Popen(escapee._program(argv_token(marker))["command"])
    try:
        wait_for(lambda: len(find_by_argv(marker)) >= 3, 10, "the escapee workload")
        killed = kill_leftovers()
        assert workload.pid in killed
        assert wait_for(lambda: not find_by_argv(marker), 2.0), "an escapee outlived the sweep"
    finally:
        kill_found(lambda: find_by_argv(marker))
        workload.wait()
