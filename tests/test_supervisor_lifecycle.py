"""Autorestart, FATAL, and reconciliation after a SIGKILLed supervisor."""

from __future__ import annotations

import os
import signal
import sqlite3

import psutil
import pytest

from tests.conftest import demo_program, fixture_program, observe, wait_for

DEMO_TREE = 4


def test_worker_killed_from_outside_is_restarted_with_new_pid(supervisor_factory):
    """SIGKILL to the leader: the old tree goes, a new leader starts, events record it."""
    sup = supervisor_factory([demo_program(start_seconds=0.3)])
    sup.wait_state("running")
    old_tree = {p.pid for p in sup.wait_workload(DEMO_TREE)}
    old_pid = sup.state()["pid"]
    os.kill(old_pid, signal.SIGKILL)
    state = wait_for(
        lambda: (s := sup.state())["pid"] not in (None, old_pid) and s, 10, "a new leader pid"
    )
    assert state["restarts"] == 1
    assert state["state"] in ("starting", "running")
    wait_for(lambda: not old_tree & {p.pid for p in sup.workload()}, 5, "the old tree gone")
    sup.wait_state("running")
    events = [(e["kind"], e["detail"]) for e in sup.events()]
    assert any(k == "exited" and "SIGKILL" in d for k, d in events), events
    assert sum(k == "started" for k, _ in events) == 2


def test_program_that_exits_at_once_goes_fatal_and_stays_down(supervisor_factory):
    """After max_quick_failures quick exits the program is FATAL until POST /process/start."""
    program = {
        "name": "flaky",
        "command": ["python", "-c", "raise SystemExit(3)"],
        "backoff_initial": 0.02,
        "backoff_max": 0.1,
        "max_quick_failures": 3,
    }
    sup = supervisor_factory([program])
    state = sup.wait_state("fatal", timeout=15)
    assert state["exit_code"] == 3
    assert "failed 3 times" in state["last_error"]
    assert state["restarts"] == 2
    assert set(observe(lambda: sup.state()["state"], 0.6)) == {"fatal"}
    assert sup.state()["restarts"] == 2
    started = sup.client.post("/process/start", json={"name": "flaky"})
    assert started.status_code == 200
    assert started.json()["state"] == "starting"
    sup.wait_state("fatal", timeout=15)
    kinds = [e["kind"] for e in sup.events()]
    assert kinds.count("fatal") == 2 and kinds.count("started") == 6
    assert sup.healthy()


def test_missing_command_goes_fatal_with_os_error(supervisor_factory):
    """A command that does not exist is FATAL with the OS error; the supervisor stays up."""
    program = {"name": "ghost", "command": ["/nonexistent/bin/ghost-program", "--flag"]}
    sup = supervisor_factory([program, demo_program()])
    state = sup.wait_state("fatal", name="ghost")
    assert "No such file or directory" in state["last_error"]
    assert "/nonexistent/bin/ghost-program" in state["last_error"]
    assert sup.popen.poll() is None and sup.healthy()
    assert sup.state("worker")["state"] in ("starting", "running")
    again = sup.client.post("/process/start", json={"name": "ghost"})
    assert again.status_code == 409, again.text
    assert "No such file or directory" in again.json()["detail"]
    assert "ghost" in again.json()["detail"]
    assert sup.state("ghost")["state"] == "fatal"
    assert "event=start_failed program=ghost" in sup.log()
    assert "WARNING" in next(line for line in sup.log().splitlines() if "start_failed" in line)
    killed = sup.client.post("/process/kill", json={"name": "ghost"})
    assert killed.status_code == 200 and killed.json()["already_stopped"] is True


@pytest.mark.slow
def test_restart_after_sigkill_reconciles_and_records_recovered(supervisor_factory):
    """SIGKILL, then a new supervisor on the same DB comes up healthy and logs `recovered`."""
    first = supervisor_factory([demo_program()])
    first.wait_workload(DEMO_TREE)
    old_pid = first.state()["pid"]
    first.signal(signal.SIGKILL)
    first.wait_exit(timeout=5)
    wait_for(lambda: not first.workload(), 2.0, "the keeper to sweep the tree")
    second = supervisor_factory([demo_program()], db=first.db)
    events = second.events()
    recovered = [e for e in events if e["kind"] == "recovered"]
    assert len(recovered) == 1, events
    assert recovered[0]["program"] == "worker"
    assert str(old_pid) in recovered[0]["detail"]
    assert "recovered" in second.log()
    new_pid = second.state()["pid"]
    assert new_pid != old_pid
    second.wait_workload(DEMO_TREE)


def test_reconcile_stops_leftovers_when_the_keeper_is_gone(supervisor_factory):
    """A tree the keeper could not sweep is stopped by the next supervisor at start."""
    first = supervisor_factory([demo_program()], broken=("no_keeper",))
    leftovers = first.wait_workload(DEMO_TREE)
    first.signal(signal.SIGKILL)
    first.wait_exit(timeout=5)
    assert {p.pid for p in first.workload()} >= {p.pid for p in leftovers}
    second = supervisor_factory([demo_program(autostart=False)], db=first.db)
    gone = psutil.wait_procs(leftovers, timeout=2)[1]
    assert gone == [], gone
    detail = next(e["detail"] for e in second.events() if e["kind"] == "recovered")
    assert "stopped 4 leftover" in detail, detail


def test_sigterm_writes_stopped_state_for_every_program(supervisor_factory):
    """SIGTERM: exit code 0, every program row says stopped, and no marked process is left."""
    sup = supervisor_factory(
        [
            demo_program(),
            fixture_program("ignores_sigterm"),
            {"name": "idle", "command": ["true"], "autostart": False},
        ]
    )
    sup.wait_workload(DEMO_TREE + 2)
    sup.signal(signal.SIGTERM)
    assert sup.wait_exit(timeout=15) == 0, sup.log()
    assert sup.workload() == []
    conn = sqlite3.connect(sup.db)
    try:
        rows = dict(conn.execute("SELECT name, status FROM processes"))
        pids = [r[0] for r in conn.execute("SELECT pid FROM processes")]
    finally:
        conn.close()
    assert rows == {"worker": "stopped", "ignores_sigterm": "stopped", "idle": "stopped"}
    assert pids == [None, None, None]
    assert "shutdown_complete" in sup.log()
    assert not sup.db.with_name(sup.db.name + "-wal").exists()


def test_start_after_exit_with_vanished_command_goes_fatal(supervisor_factory, tmp_path):
    """An EXITED program whose executable was removed answers start with 409 and goes FATAL."""
    script = tmp_path / "once.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    sup = supervisor_factory([{"name": "once", "command": [str(script)], "autorestart": False}])
    sup.wait_state("exited")
    script.unlink()
    response = sup.client.post("/process/start", json={"name": "once"})
    assert response.status_code == 409, response.text
    assert "No such file or directory" in response.json()["detail"]
    assert sup.state("once")["state"] == "fatal"
    assert "No such file or directory" in sup.state("once")["last_error"]
    assert sup.events()[0]["kind"] == "fatal"


def test_crash_after_a_good_run_restarts_even_with_one_allowed_quick_failure(supervisor_factory):
    """Only failures to stay up count toward FATAL: a worker that ran fine is restarted."""
    sup = supervisor_factory([demo_program(start_seconds=0.2, max_quick_failures=1)])
    for _ in range(2):
        old = sup.wait_state("running")["pid"]
        os.kill(old, signal.SIGKILL)
        wait_for(lambda o=old: sup.state()["pid"] not in (None, o), 10, "a restart")
    assert sup.state()["state"] in ("starting", "running")
    assert not any(e["kind"] == "fatal" for e in sup.events())


def test_kill_stops_leftovers_of_an_already_stopped_program(supervisor_factory):
    """Leftovers found after a program is stopped are stopped by the next kill (200, not 500)."""
    sup = supervisor_factory([fixture_program("leader_exits_early", autorestart=False)])
    wait_for(lambda: sup.state()["state"] in ("exited", "stopped"), 15, "the leader's exit")
    again = sup.client.post("/process/kill", json={"name": "leader_exits_early"})
    assert again.status_code == 200
    wait_for(lambda: not sup.workload(), 5, "no leftovers")
