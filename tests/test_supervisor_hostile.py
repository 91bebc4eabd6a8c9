"""Hostile programs x {SIGTERM to the supervisor, POST /process/kill, SIGKILL to the supervisor}
x {cgroup, session} containment (the session fallback forced by ``server.containment``).

Survivors are found by the test's environment marker through psutil, never by
asking the supervisor.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time

import psutil
import pytest

from tests.conftest import Supervisor, fixture_program, wait_for

STOP_TIMEOUT = 1.0
# slack for interpreter start-up, uvicorn's shutdown and a loaded 2-core machine
EXIT_SLACK_S = 2.5

# fixture name -> workload processes to wait for before the fault, so it hits a grown tree
HOSTILE = {
    "ignores_sigterm": 2,
    "leader_exits_early": 1,
    "double_fork_escapee": 2,
    "fork_bomb_while_stopping": 3,
}


MODES = ["cgroup", "session"]


def _start(supervisor_factory, fixture: str, mode: str = "auto") -> Supervisor:
    sup = supervisor_factory(
        [fixture_program(fixture, stop_timeout=STOP_TIMEOUT)], server={"containment": mode}
    )
    assert sup.client.get("/healthz").json()["containment"] == (
        "cgroup" if mode == "auto" else mode
    )
    sup.wait_workload(HOSTILE[fixture])
    return sup


def _gone(sup: Supervisor, timeout: float) -> None:
    wait_for(lambda: not sup.workload(), timeout, "no marked process left")


def _db_states(sup: Supervisor) -> dict[str, str]:
    conn = sqlite3.connect(sup.db)
    try:
        return dict(conn.execute("SELECT name, status FROM processes"))
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fixture", sorted(HOSTILE))
def test_sigterm_to_supervisor_stops_hostile_tree(supervisor_factory, fixture, mode):
    """SIGTERM: the supervisor exits within stop_timeout + ~1 s, writes stopped, leaves nothing."""
    sup = _start(supervisor_factory, fixture, mode)
    started = time.monotonic()
    sup.signal(signal.SIGTERM)
    code = sup.wait_exit(timeout=30)
    took = time.monotonic() - started
    assert code == 0, sup.log()
    assert took <= STOP_TIMEOUT + 1.0 + EXIT_SLACK_S, f"exit took {took:.2f}s"
    assert not sup.workload(), f"survivors: {sup.workload()}"
    assert _db_states(sup)[fixture] == "stopped"


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fixture", sorted(HOSTILE))
def test_kill_endpoint_stops_hostile_tree(supervisor_factory, fixture, mode):
    """POST /process/kill answers 200 with no survivors, and no marked workload process is left."""
    sup = _start(supervisor_factory, fixture, mode)
    response = sup.client.post("/process/kill", json={"name": fixture})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["survivors"] == []
    assert body["name"] == fixture
    _gone(sup, 2.0)
    assert sup.popen.poll() is None
    assert sup.state(fixture)["state"] == "stopped"


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fixture", sorted(HOSTILE))
def test_sigkill_to_supervisor_leaves_no_hostile_process(supervisor_factory, fixture, mode):
    """SIGKILL: no program process outlives the supervisor by more than 2 s."""
    sup = _start(supervisor_factory, fixture, mode)
    sup.signal(signal.SIGKILL)
    sup.wait_exit(timeout=5)
    killed_at = time.monotonic()
    _gone(sup, 2.0)
    assert time.monotonic() - killed_at <= 2.0


def test_double_fork_escapee_really_escapes_its_session(supervisor_factory):
    """The fixture is hostile: its grandchild runs in another session than the leader."""
    sup = _start(supervisor_factory, "double_fork_escapee")
    leader = sup.state()["pid"]
    sessions = wait_for(
        lambda: {p.pid: _sid(p.pid) for p in sup.workload()} if len(sup.workload()) >= 2 else None,
        5,
        "leader and escapee",
    )
    assert len(set(sessions.values())) == 2, sessions
    assert sessions[leader] == leader


def test_leader_exit_takes_its_children_down(supervisor_factory):
    """When the leader exits on its own, the children it left behind are stopped too."""
    sup = supervisor_factory(
        [fixture_program("leader_exits_early", autorestart=False, stop_timeout=STOP_TIMEOUT)]
    )
    state = sup.wait_state("exited", timeout=10)
    assert state["exit_code"] == 0
    _gone(sup, 2.0)
    kinds = [e["kind"] for e in sup.events()]
    assert "exited" in kinds and "started" in kinds


def test_fork_bomb_keeps_forking_while_stopped(supervisor_factory):
    """The fixture is hostile: SIGTERM makes it fork more, so a leader-only stop leaves many."""
    sup = _start(supervisor_factory, "fork_bomb_while_stopping")
    before = len(sup.workload())
    leader = psutil.Process(sup.state()["pid"])
    leader.send_signal(signal.SIGTERM)
    wait_for(lambda: len(sup.workload()) > before + 5, 5, "the bomb to fork after SIGTERM")
    assert leader.is_running() and leader.status() != psutil.STATUS_ZOMBIE


@pytest.mark.parametrize(
    ("fixture", "fault"),
    [("double_fork_escapee", "leader_only_kill"), ("fork_bomb_while_stopping", "leader_only_kill")],
)
def test_marker_check_catches_a_leader_only_kill(supervisor_factory, fixture, fault):
    """Against a supervisor that signals only the leader, the marker scan finds survivors."""
    sup = supervisor_factory([fixture_program(fixture, stop_timeout=0.3)], broken=(fault,))
    sup.wait_workload(HOSTILE[fixture])
    response = sup.client.post("/process/kill")
    assert response.status_code == 200
    assert sup.workload(), "the check could not fail: nothing survived a leader-only kill"


def _sid(pid: int) -> int:
    return os.getsid(pid)
