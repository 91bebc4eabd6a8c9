"""Containment: cgroup and session, the env-less escapee, one owner per DB, reclaiming.

The escapee (``tests/fixtures/envless_escapee.py``) clears its environment, so
the harness's marker cannot find it: it is found by a tag in its command line.
Every test kills what carries its tag at teardown and checks that no cgroup of
its supervisors is left.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from flows.drills.harness import REAL_SUPERVISOR, stop_all
from flows.drills.markers import runner_marker
from supervisor.errors import ContainmentError
from supervisor.stop import cgroup
from supervisor.stop.cgroup_ladder import Watch
from tests.conftest import FIXTURES, Supervisor, demo_program, wait_for, write_config

MODES = ["cgroup", "session"]
ESCAPEE_UP = 3  # leader, escapee, at least one of its children


def _cgroup_parent() -> Path:
    mount, _ = cgroup.find_mount()
    return mount / cgroup.own_cgroup().lstrip("/")


def _instance_cgroups(sup: Supervisor) -> list[Path]:
    """The cgroups a supervisor made (named after its pid)."""
    return sorted(_cgroup_parent().glob(f"{cgroup.PREFIX}{sup.pid}-*"))


def _pids(program_cgroup: Path) -> set[int]:
    return {int(pid) for pid in (program_cgroup / "cgroup.procs").read_text().split()}


def _tagged(tag: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if tag in (proc.info["cmdline"] or []) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _kill_tagged(tag: str) -> None:
    def gone() -> bool:
        procs = _tagged(tag)
        for proc in procs:
            for sig in (signal.SIGSTOP, signal.SIGKILL):
                try:
                    proc.send_signal(sig)
                except psutil.NoSuchProcess:
                    pass
        return not procs

    wait_for(gone, 10, f"every process tagged {tag} killed")


@pytest.fixture
def tag() -> Iterator[str]:
    """A tag for one test's escapees; whatever carries it dies at teardown."""
    value = f"escapee-{uuid.uuid4().hex[:12]}"
    yield value
    _kill_tagged(value)


@pytest.fixture
def launch(supervisor_factory, tag, tmp_path):
    """``launch(mode, **kw)``: a supervisor running the escapee under ``mode``; teardown checks
    that no cgroup of any launched supervisor is left."""
    started: list[Supervisor] = []

    def start(mode: str, programs: list | None = None, **kwargs) -> Supervisor:
        program = {
            "name": "escapee",
            "command": ["python", str(FIXTURES / "envless_escapee.py"), tag],
            "stop_timeout": 0.5,
            "autorestart": False,
        }
        kwargs.setdefault("db", tmp_path / f"state-{len(started)}.db")
        sup = supervisor_factory(
            programs or [program], server={"containment": mode}, name=f"sup-{mode}", **kwargs
        )
        started.append(sup)
        return sup

    yield start
    for sup in started:
        if not sup.exited():
            sup.stop()
        wait_for(lambda s=sup: not _instance_cgroups(s), 5, f"cgroups of pid {sup.pid} removed")


def _escapee_up(tag: str) -> list[psutil.Process]:
    return wait_for(lambda: len(_tagged(tag)) >= ESCAPEE_UP and _tagged(tag), 15, "the escapee")


def _escapee_has_no_env(tag: str) -> None:
    sids = {p.pid: psutil.Process(p.pid) for p in _tagged(tag)}
    envs = [p.environ() for p in sids.values()]
    assert any(env == {} for env in envs), envs


@pytest.mark.parametrize("mode", MODES)
def test_kill_endpoint_and_the_envless_escapee(launch, tag, mode):
    """cgroup: kill answers 200 with the whole tree gone at the answer; session: the known
    limit, the env-less escapee survives (so this check can fail)."""
    sup = launch(mode)
    _escapee_up(tag)
    _escapee_has_no_env(tag)
    response = sup.client.post("/process/kill", json={"name": "escapee"})
    assert response.status_code == 200, response.text
    assert response.json()["survivors"] == []
    left = _tagged(tag)
    if mode == "cgroup":
        assert left == [], f"alive at the answer: {left}"
    else:
        assert left, "session containment cannot attribute an env-less setsid escapee"
    assert sup.healthy()


@pytest.mark.parametrize("mode", MODES)
def test_sigterm_to_supervisor_and_the_envless_escapee(launch, tag, mode):
    """SIGTERM: exit 0 and nothing tagged left, in both modes (session: the descendant sweep)."""
    sup = launch(mode)
    _escapee_up(tag)
    sup.signal(signal.SIGTERM)
    assert sup.wait_exit(timeout=30) == 0, sup.log()
    assert _tagged(tag) == []
    assert not _instance_cgroups(sup)


@pytest.mark.parametrize("mode", MODES)
def test_sigkill_to_supervisor_and_the_envless_escapee(launch, tag, mode):
    """SIGKILL: cgroup's keeper kills the whole subtree; session's marker sweep misses the
    escapee (the known limit)."""
    sup = launch(mode)
    _escapee_up(tag)
    sup.signal(signal.SIGKILL)
    sup.wait_exit(timeout=5)
    if mode == "cgroup":
        wait_for(lambda: not _tagged(tag), 2.0, "the keeper's cgroup.kill")
        wait_for(lambda: not _instance_cgroups(sup), 5, "the keeper to remove the cgroups")
    else:
        wait_for(lambda: not sup.workload(), 5, "the keeper's sweep of marked processes")
        assert _tagged(tag), "session containment cannot attribute an env-less setsid escapee"


def test_containment_is_reported_by_healthz_and_the_log(launch):
    """/healthz and the startup log name the containment and why it was chosen."""
    auto = launch("auto", [demo_program()])
    assert auto.client.get("/healthz").json() == {"status": "ok", "containment": "cgroup"}
    assert "event=containment mode=cgroup configured=auto reason='cgroup v2 at" in auto.log()
    assert _instance_cgroups(auto), "no cgroup made for the running worker"
    forced = launch("session", [demo_program()])
    assert forced.client.get("/healthz").json() == {"status": "ok", "containment": "session"}
    assert "mode=session configured=session" in forced.log()
    assert "reason='forced by server.containment = \"session\"'" in forced.log()
    assert not _instance_cgroups(forced)


def test_program_processes_live_in_the_program_cgroup(launch, tag):
    """Each program's whole tree, escapee included, is in its own cgroup; the supervisor is not."""
    sup = launch("cgroup")
    procs = _escapee_up(tag)
    (instance,) = _instance_cgroups(sup)
    members = {int(p) for p in (instance / "escapee" / "cgroup.procs").read_text().split()}
    assert {p.pid for p in procs} <= members | {p.pid for p in procs if not p.is_running()}
    assert sup.pid not in members
    assert (instance / "cgroup.procs").read_text() == "", "an inner node holds processes"


def test_second_supervisor_on_the_same_db_exits_2_and_touches_nothing(launch):
    """A second supervisor on a live DB exits 2 naming the owner; the first's tree and rows stay."""
    first = launch("cgroup", [demo_program()])
    first.wait_state("running")  # no transition of its own may land between the two reads
    before = {p.pid for p in first.wait_workload(4, stable_s=0.2)}
    rows_before = _rows(first.db)
    second = launch("cgroup", [demo_program()], db=first.db, wait_healthy=False)
    assert second.wait_exit(timeout=20) == 2
    message = second.log()
    assert f"owned by another supervisor: pid {first.pid}, listening on {first.base_url}" in message
    assert "Nothing was touched" in message
    assert {p.pid for p in first.workload()} == before
    assert _rows(first.db) == rows_before
    assert not _instance_cgroups(second)
    assert first.healthy()


def _rows(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return list(conn.execute("SELECT * FROM processes")) + list(
            conn.execute("SELECT * FROM events")
        )
    finally:
        conn.close()


def test_reclaim_kills_a_dead_instance_subtree_and_spares_a_live_one(launch, tag, tmp_path):
    """A supervisor with no keeper is SIGKILLed: the next start (another DB) kills and removes
    its cgroup subtree, and leaves a live supervisor's subtree and programs alone."""
    dead = launch("cgroup", broken=("no_keeper",))
    orphans = _escapee_up(tag)
    live = launch("cgroup", [demo_program()], db=tmp_path / "live.db")
    (live_cgroup,) = _instance_cgroups(live)
    live_tree = wait_for(
        lambda: len(_pids(live_cgroup / "worker")) == 4 and _pids(live_cgroup / "worker"),
        10,
        "the live worker tree",
    )
    dead.signal(signal.SIGKILL)
    dead.wait_exit(timeout=5)
    (leftover,) = _instance_cgroups(dead)
    assert (leftover / "escapee" / "cgroup.procs").read_text().split(), "nothing left to reclaim"
    third = launch("cgroup", [demo_program(autostart=False)], db=tmp_path / "third.db")
    assert not leftover.exists()
    assert orphans and _tagged(tag) == []
    assert f"event=reclaimed instance={leftover.name[len(cgroup.PREFIX) :]}" in third.log()
    assert _pids(live_cgroup / "worker") == live_tree, "a live supervisor's tree was touched"
    assert live.state()["state"] in ("starting", "running")


def _readable(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def test_watch_wakes_once_when_a_followed_member_exits():
    """A kill's watch turns readable when a followed member exits, not only on a change of
    cgroup.events (which the kernel sends at most every 10 ms), and reading it disarms
    that member: an exited pidfd wakes the waiter once."""
    node = _cgroup_parent() / f"watch-test-{uuid.uuid4().hex[:12]}"
    node.mkdir()
    sleeper = subprocess.Popen(["sleep", "1000"])
    pidfd = os.pidfd_open(sleeper.pid)
    watch = Watch(node)
    try:
        watch.follow(pidfd)
        assert not watch.populated()  # as the ladder does first: reading re-arms the file
        assert not _readable(watch.fd)
        sleeper.kill()
        sleeper.wait()
        wait_for(lambda: _readable(watch.fd), 5, "the watch readable after the member's exit")
        assert not watch.populated()
        assert not _readable(watch.fd), "an exited member woke the watch a second time"
        watch.unfollow(pidfd)
    finally:
        watch.close()
        os.close(pidfd)
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
        node.rmdir()


def test_find_mount_without_cgroup2_names_the_file(tmp_path):
    """A mountinfo with only cgroup v1 lines: a ContainmentError naming the file and the way out."""
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "35 25 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    )
    with pytest.raises(ContainmentError, match=f"no cgroup v2 mount in {mountinfo}"):
        cgroup.find_mount(mountinfo)
    with pytest.raises(ContainmentError, match='server.containment = "session"'):
        cgroup.CgroupContainment.create("0-0-x", mountinfo=mountinfo)


def _readonly_cgroup_supervisor(workdir: Path, marker: str, mode: str) -> Supervisor:
    """A real supervisor in its own mount namespace where the cgroup2 mount is read-only."""
    mount, _ = cgroup.find_mount()
    readonly = ["unshare", "--mount", "--propagation", "private", "sh", "-c"]
    readonly += [f'mount -o remount,bind,ro "{mount}" && exec "$@"', "sh"]
    config = write_config(workdir / f"{mode}.toml", [demo_program()], server={"containment": mode})
    return Supervisor.launch(
        workdir / mode,
        marker,
        config,
        command=[*readonly, *REAL_SUPERVISOR],
        wait_healthy=False,
        name=f"readonly-{mode}",
    )


def test_cgroup_containment_on_a_read_only_cgroup_tree_fails_start(tmp_path):
    """containment = "cgroup" in a mount namespace whose cgroup2 is read-only: exit 2 naming the
    mount and what is missing; "auto" there falls back to session and says why."""
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare --mount is not allowed here: {probe.stderr!r}")
    mount, _ = cgroup.find_mount()
    marker = runner_marker()
    started: list[Supervisor] = []
    try:
        strict = _readonly_cgroup_supervisor(tmp_path, marker, "cgroup")
        started.append(strict)
        assert strict.wait_exit(timeout=20) == 2
        assert f"cgroup v2 at {mount}: cannot create" in strict.log()
        assert "Read-only file system" in strict.log()
        assert 'server.containment = "session"' in strict.log()
        auto = _readonly_cgroup_supervisor(tmp_path, marker, "auto")
        started.append(auto)
        auto.wait_healthy()
        assert auto.client.get("/healthz").json()["containment"] == "session"
        assert "reason='auto: no usable cgroup v2 tree: cgroup v2 at" in auto.log()
        auto.wait_workload(4)
    finally:
        stop_all(started, marker)
    assert not [p for sup in started for p in _instance_cgroups(sup)]


def test_lock_file_names_the_owner(launch):
    """The lock beside the DB says the owner's pid and address while it runs."""
    sup = launch("cgroup", [demo_program()])
    owner = json.loads(sup.db.with_name(sup.db.name + ".lock").read_text())
    assert owner == {"pid": sup.pid, "url": sup.base_url}


def test_leader_is_in_its_cgroup_when_the_start_answers(launch):
    """No window: right at each start's answer the new leader is already in its
    program's cgroup (it waits as ``sh`` until the supervisor has put it there)."""
    sup = launch("cgroup", programs=[{"name": "idle", "command": ["sleep", "600"]}])
    (instance,) = _instance_cgroups(sup)
    for cycle in range(20):
        assert sup.client.post("/process/kill", json={}).status_code == 200
        answer = sup.client.post("/process/start", json={})
        assert answer.status_code == 200, answer.text
        pid = answer.json()["pid"]
        assert pid in _pids(instance / "idle"), f"cycle {cycle}: pid {pid} not in its cgroup yet"


@pytest.mark.parametrize(("line", "runs"), [(b"go\n", True), (b"", False)])
def test_the_hold_image_execs_the_program_only_after_its_line(tmp_path, line, runs):
    """``HOLD_SH`` execs the program once it reads a line; at EOF (its supervisor died
    before placing it) it exits 125 and runs nothing."""
    marker = tmp_path / "ran"
    hold = subprocess.Popen(
        ["/bin/sh", "-c", cgroup.HOLD_SH, "supervisor-hold", "touch", str(marker)],
        stdin=subprocess.PIPE,
    )
    hold.communicate(line, timeout=10)
    assert hold.returncode == (0 if runs else 125)
    assert marker.exists() is runs
