"""POST /process/kill against a real supervisor and the real demo worker tree.

The main kill tests run under both containments (``contained``): cgroup, and the
session fallback forced by ``server.containment``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from supervisor.stop import cgroup
from tests.conftest import Supervisor, demo_program, fixture_program, observe, wait_for

CYCLES = 100
DEMO_TREE = 4  # leader, two children, one grandchild
KILL_KEYS = {"name", "pid", "already_stopped", "exit_code", "signal", "duration_ms", "survivors"}


@pytest.fixture(params=["cgroup", "session"])
def contained(request, supervisor_factory) -> Supervisor:
    """The demo worker under each containment, the one in use checked through /healthz."""
    sup = supervisor_factory([demo_program()], server={"containment": request.param})
    assert sup.client.get("/healthz").json()["containment"] == request.param
    return sup


def _check_kill_body(body: dict, pid: int | None, already_stopped: bool) -> None:
    assert set(body) == KILL_KEYS, body
    assert body["name"] == "worker"
    assert body["pid"] == pid
    assert body["already_stopped"] is already_stopped
    assert body["survivors"] == []
    assert isinstance(body["duration_ms"], float) and body["duration_ms"] >= 0
    if not already_stopped:
        # exactly one of the two says how the leader ended
        assert (body["exit_code"] is None) != (body["signal"] is None), body


@pytest.mark.slow
def test_kill_endpoint_acknowledges_and_terminates_worker(contained: Supervisor):
    supervisor = contained
    """100 kill/start cycles: every kill answers 200 with a valid body and leaves no process."""
    client = supervisor.client
    pid = supervisor.state()["pid"]
    for cycle in range(CYCLES):
        if cycle % 2 == 0:
            # half the cycles kill a grown tree, half kill it while it is still forking
            supervisor.wait_workload(DEMO_TREE)
        response = client.post("/process/kill", json={})
        assert response.status_code == 200, f"cycle {cycle}: {response.text}"
        _check_kill_body(response.json(), pid, already_stopped=False)
        left = supervisor.workload()
        assert left == [], f"cycle {cycle}: alive right after the kill answered: {left}"
        assert supervisor.popen.poll() is None
        response = client.post("/process/start", json={})
        assert response.status_code == 200, f"cycle {cycle}: {response.text}"
        assert response.json()["state"] == "starting"
        assert response.json()["pid"] != pid
        pid = response.json()["pid"]
    assert supervisor.healthy()


def test_kill_of_stopped_program_answers_already_stopped(supervisor: Supervisor):
    """A second kill answers 200 with already_stopped true and the last pid."""
    supervisor.wait_workload(DEMO_TREE)
    pid = supervisor.state()["pid"]
    first = supervisor.client.post("/process/kill")
    assert first.status_code == 200
    _check_kill_body(first.json(), pid, already_stopped=False)
    second = supervisor.client.post("/process/kill", json={"name": "worker"})
    assert second.status_code == 200
    _check_kill_body(second.json(), pid, already_stopped=True)


def test_concurrent_kills_all_answer_and_exactly_one_stops(contained: Supervisor):
    supervisor = contained
    """Five simultaneous kills all answer 200; exactly one reports already_stopped false."""
    supervisor.wait_workload(DEMO_TREE)
    barrier = threading.Barrier(5)
    answers: list[httpx.Response] = []

    def kill() -> None:
        with httpx.Client(base_url=supervisor.base_url, headers=supervisor.auth) as client:
            barrier.wait()
            answers.append(client.post("/process/kill", json={"name": "worker"}, timeout=30))

    threads = [threading.Thread(target=kill) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [200] * 5, [a.text for a in answers]
    assert sorted(a.json()["already_stopped"] for a in answers) == [False] + [True] * 4
    assert all(a.json()["survivors"] == [] for a in answers)
    assert supervisor.workload() == []
    assert supervisor.popen.poll() is None and supervisor.healthy()


def test_concurrent_kills_under_status_polling(supervisor: Supervisor):
    """Kills racing status polls on other connections all answer 200, and the tree is gone."""
    supervisor.wait_workload(DEMO_TREE)
    stop = threading.Event()
    poll_codes: list[int] = []

    def poll() -> None:
        with httpx.Client(base_url=supervisor.base_url, headers=supervisor.auth) as client:
            while not stop.is_set():
                poll_codes.append(client.get("/processes").status_code)

    pollers = [threading.Thread(target=poll) for _ in range(3)]
    for t in pollers:
        t.start()
    try:
        for _ in range(3):
            codes: list[int] = []

            def kill(codes: list[int] = codes) -> None:
                response = httpx.post(
                    supervisor.base_url + "/process/kill", headers=supervisor.auth, timeout=30
                )
                codes.append(response.status_code)

            threads = [threading.Thread(target=kill) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert codes == [200] * 4
            assert supervisor.workload() == []
            supervisor.client.post("/process/start").raise_for_status()
            supervisor.wait_workload(DEMO_TREE)
    finally:
        stop.set()
        for t in pollers:
            t.join()
    assert poll_codes and set(poll_codes) == {200}


def test_killed_program_stays_down_until_started(supervisor_factory):
    """After a kill there is no autorestart; POST /process/start brings it back."""
    sup = supervisor_factory([demo_program(backoff_initial=0.05, start_seconds=0.2)])
    sup.wait_state("running")
    assert sup.client.post("/process/kill").status_code == 200
    # observe well past the backoff: the program must not come back by itself
    watched = observe(lambda: sup.state()["state"], 1.0)
    assert len(watched) > 5 and set(watched) == {"stopped"}, watched
    assert sup.workload() == []
    started = sup.client.post("/process/start")
    assert started.status_code == 200 and started.json()["state"] == "starting"
    sup.wait_state("running")
    sup.wait_workload(DEMO_TREE)


def test_restart_gives_a_new_tree(contained: Supervisor):
    supervisor = contained
    """POST /process/restart kills the whole old tree and starts a new leader."""
    old = {p.pid for p in supervisor.wait_workload(DEMO_TREE)}
    old_pid = supervisor.state()["pid"]
    response = supervisor.client.post("/process/restart", json={"name": "worker"})
    assert response.status_code == 200, response.text
    body = response.json()
    _check_kill_body(body["kill"], old_pid, already_stopped=False)
    assert body["process"]["state"] == "starting"
    assert body["process"]["pid"] != old_pid
    new = {p.pid for p in supervisor.wait_workload(DEMO_TREE)}
    assert not old & new
    kinds = [e["kind"] for e in supervisor.events()]
    assert kinds[:3] == ["started", "stopped", "stopping"]


def _program_cgroup(sup: Supervisor, program: str) -> Path:
    mount, _ = cgroup.find_mount()
    parent = mount / cgroup.own_cgroup().lstrip("/")
    (instance,) = parent.glob(f"{cgroup.PREFIX}{sup.pid}-*")
    return instance / program


def test_kill_rows_log_lines_and_cgroup_removal_follow_the_answer(supervisor_factory):
    """What a kill holds until its answer is out still happens, in order: /events has both
    rows right after the answer, the log has both lines before the next start's, and the
    stopped program's empty cgroup is removed (and made again by the start)."""
    sup = supervisor_factory([demo_program()], server={"containment": "cgroup"})
    sup.wait_workload(DEMO_TREE)
    place = _program_cgroup(sup, "worker")
    assert place.is_dir()
    response = sup.client.post("/process/kill")
    assert response.status_code == 200, response.text
    assert [e["kind"] for e in sup.events()][:2] == ["stopped", "stopping"]
    wait_for(lambda: not place.exists(), 5, f"the stopped program's cgroup {place} removed")
    assert sup.client.post("/process/start").status_code == 200
    sup.wait_workload(DEMO_TREE)
    assert place.is_dir()
    log = sup.log()
    stopping = log.index("event=stopping program=worker")
    stopped = log.index("event=stopped program=worker")
    restarted = log.rindex("event=started program=worker")
    assert stopping < stopped < restarted, log


def test_kill_with_timeout_escalates_on_a_sigterm_ignorer(supervisor_factory):
    """A kill's timeout overrides stop_timeout: an ignorer is SIGKILLed after it."""
    sup = supervisor_factory([fixture_program("ignores_sigterm", stop_timeout=30.0)])
    sup.wait_workload(2)
    response = sup.client.post("/process/kill", json={"timeout": 0.2})
    assert response.status_code == 200
    body = response.json()
    assert body["signal"] == 9 and body["survivors"] == []
    assert body["duration_ms"] < 10_000
    assert sup.workload() == []


def test_wait_for_reports_what_it_waited_for():
    """The polling helper fails with the condition's name at its deadline."""
    with pytest.raises(TimeoutError, match="the impossible"):
        wait_for(lambda: False, 0.05, "the impossible")
