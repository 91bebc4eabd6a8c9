"""The evidence store: run folders, results.json, junit.xml, manifests and the chain."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import itertools
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from flows.errors import EvidenceError, FlowsError
from flows.evidence import (
    RUN_PREFIX,
    SCHEMA_VERSION,
    RunWriter,
    list_runs,
    load_results,
    new_run_dir,
    verify,
)
from flows.evidence import writer as writer_module
from flows.evidence.junit import build_junit
from flows.evidence.synthetic import write_synthetic_runs

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 11, 28, 2, 0, 0, tzinfo=UTC)
DRILLS = ["api_kill", "sigterm"]


def result(drill_id: str, status: str = "pass", **extra) -> dict:
    verdict = "PASS" if status == "pass" else "FAIL"
    return {
        "id": drill_id,
        "status": status,
        "started_at": T0.isoformat(),
        "duration_s": 1.5,
        "summary": f"{verdict}: {drill_id} {status}",
        "log": f"drill_{drill_id}.log",
        "metrics": {"kill_round_trip_ms": 3.1},
        **extra,
    }


def run_drill(writer: RunWriter, drill_id: str, status: str = "pass") -> None:
    verdict = "PASS" if status == "pass" else "FAIL"
    writer.log_path(drill_id).write_text(
        f"2026-11-28T02:00:01Z start {drill_id}\n{verdict}: {drill_id} {status}\n"
    )
    writer.record(result(drill_id, status))


def make_run(root: Path, day: int, *, finalize: bool = True, drills=DRILLS) -> Path:
    """A run started ``day`` days after T0 whose drills all pass."""
    writer = RunWriter(
        new_run_dir(root, now=T0 + timedelta(days=day)), drills=drills, command="t", config=None
    )
    for drill_id in drills:
        run_drill(writer, drill_id)
    if finalize:
        writer.finalize()
    return writer.run_dir


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


# --- writing ---------------------------------------------------------------------------


def test_results_json_is_incomplete_as_soon_as_the_writer_starts(tmp_path):
    """Before any drill runs, results.json exists, says incomplete, and carries host facts."""
    writer = RunWriter(tmp_path / "run", drills=DRILLS, command="make drill", config="x.toml")
    data = load_results(writer.run_dir)
    assert data["schema_version"] == SCHEMA_VERSION == 1
    assert data["run_id"] == "run" == writer.run_id
    assert (data["status"], data["verdict"], data["finished_at"]) == ("incomplete", None, None)
    assert [(d["id"], d["status"]) for d in data["drills"]] == [
        ("api_kill", "incomplete"),
        ("sigterm", "incomplete"),
    ]
    assert set(data["host"]) == {"hostname", "platform", "cpus"}
    assert data["versions"]["python"] == sys.version.split()[0]
    assert data["versions"]["chaos-drills"] == "0.1.0"
    assert data["git_commit"] is None or len(data["git_commit"]) == 40
    assert (data["command"], data["config"]) == ("make drill", "x.toml")
    assert writer.log_path("api_kill") == writer.run_dir / "drill_api_kill.log"


def test_git_commit_is_null_when_git_is_not_installed(tmp_path, monkeypatch):
    """No git on PATH: the run still starts and records git_commit null."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    writer = RunWriter(tmp_path / "run", drills=["sigterm"], command="t", config=None)
    assert load_results(writer.run_dir)["git_commit"] is None


def test_each_record_rewrites_results_json_atomically(tmp_path):
    """After every drill the file on disk already holds that drill's result, no temp left."""
    writer = RunWriter(tmp_path / "run", drills=DRILLS, command="t", config=None)
    run_drill(writer, "api_kill")
    drills = load_results(writer.run_dir)["drills"]
    assert [d["status"] for d in drills] == ["pass", "incomplete"]
    assert drills[0]["metrics"] == {"kill_round_trip_ms": 3.1}
    run_drill(writer, "sigterm", "fail")
    assert [d["status"] for d in load_results(writer.run_dir)["drills"]] == ["pass", "fail"]
    assert leftovers(writer.run_dir) == []


def test_record_rejects_a_status_outside_the_contract(tmp_path):
    """A status other than pass/fail/error/incomplete is a programming error."""
    writer = RunWriter(tmp_path / "run", drills=DRILLS, command="t", config=None)
    with pytest.raises(ValueError, match="status must be one of"):
        writer.record(result("api_kill", "passed"))


def test_finalize_marks_the_run_complete_with_a_verdict(tmp_path):
    """All drills pass gives verdict pass; one failure gives fail; the dict matches the file."""
    good = make_run(tmp_path, 0)
    assert (load_results(good)["status"], load_results(good)["verdict"]) == ("complete", "pass")
    assert load_results(good)["finished_at"] is not None

    writer = RunWriter(new_run_dir(tmp_path, now=T0), drills=DRILLS, command="t", config=None)
    run_drill(writer, "api_kill")
    run_drill(writer, "sigterm", "fail")
    final = writer.finalize()
    assert (final["status"], final["verdict"]) == ("complete", "fail")
    assert final == load_results(writer.run_dir)
    with pytest.raises(EvidenceError, match="already finalized"):
        run_drill(writer, "sigterm")


def test_a_drill_never_recorded_stays_incomplete_and_fails_the_verdict(tmp_path):
    """Finalizing with a drill missing never turns it into a pass it did not earn."""
    writer = RunWriter(tmp_path / "run", drills=DRILLS, command="t", config=None)
    run_drill(writer, "api_kill")
    final = writer.finalize()
    assert final["verdict"] == "fail"
    assert final["drills"][1]["status"] == "incomplete"


def test_junit_has_one_testcase_per_drill_with_failure_and_error_elements(tmp_path):
    """pass -> bare testcase, fail -> <failure>, error and incomplete -> <error>."""
    writer = RunWriter(tmp_path / "run", drills=["a", "b", "c", "d"], command="t", config=None)
    run_drill(writer, "a", "pass")
    run_drill(writer, "b", "fail")
    run_drill(writer, "c", "error")
    writer.finalize()
    suite = ET.parse(writer.run_dir / "junit.xml").getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "1", "2")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert list(cases) == ["a", "b", "c", "d"]
    assert {c.get("classname") for c in cases.values()} == {"chaos_drills"}
    assert cases["a"].find("failure") is None and cases["a"].find("error") is None
    assert cases["b"].find("failure").get("message") == "FAIL: b fail"
    assert cases["b"].find("error") is None
    assert cases["c"].find("error").get("message") == "FAIL: c error"
    assert "incomplete" in cases["d"].find("error").get("message")
    assert "FAIL: b fail" in cases["b"].find("system-out").text
    assert cases["d"].find("system-out") is None  # never ran, so no log


def test_junit_trims_a_huge_log_and_survives_control_characters(tmp_path):
    """A multi-megabyte log with NUL and ESC bytes still gives parseable, bounded XML."""
    writer = RunWriter(tmp_path / "run", drills=["a"], command="t", config=None)
    noisy = ("\x1b[31mspam\x00 line\n" * 200_000) + "PASS: a survived\n"
    writer.log_path("a").write_text(noisy)
    writer.record(result("a"))
    writer.finalize()
    out = ET.parse(writer.run_dir / "junit.xml").getroot().find(".//system-out").text
    assert len(out) < 70_000
    assert "trimmed" in out
    assert out.rstrip().endswith("PASS: a survived")


def test_an_abandoned_run_reads_as_incomplete(tmp_path):
    """A run killed before finalize: incomplete, verdict null, unfinished drills incomplete."""
    writer = RunWriter(new_run_dir(tmp_path, now=T0), drills=DRILLS, command="t", config=None)
    run_drill(writer, "api_kill")
    del writer
    (run_dir,) = list_runs(tmp_path)
    data = load_results(run_dir)
    assert (data["status"], data["verdict"]) == ("incomplete", None)
    assert [d["status"] for d in data["drills"]] == ["pass", "incomplete"]
    report = verify(run_dir)
    assert report.ok and report.incomplete == [run_dir.name]


def test_writer_refuses_a_folder_that_already_holds_a_run(tmp_path):
    """Pointing a new run at a sealed folder would destroy evidence; it is refused."""
    run_dir = make_run(tmp_path, 0)
    with pytest.raises(EvidenceError, match="already holds a run"):
        RunWriter(run_dir, drills=DRILLS, command="t", config=None)


# --- run folders -----------------------------------------------------------------------


def test_new_run_dir_adds_suffixes_when_the_second_is_taken(tmp_path):
    """Runs started in the same second get -2, -3, …; the root is created; names are UTC."""
    root = tmp_path / "missing" / "root"
    cet = timezone(timedelta(hours=1))
    names = [new_run_dir(root, now=T0.astimezone(cet)).name for _ in range(3)]
    assert names == [
        "chaos-drill-20261128-020000",
        "chaos-drill-20261128-020000-2",
        "chaos-drill-20261128-020000-3",
    ]


def test_list_runs_orders_suffix_ten_after_nine_and_ignores_other_entries(tmp_path):
    """Name order with numeric suffixes; stray files and other folders are not runs."""
    made = [new_run_dir(tmp_path, now=T0) for _ in range(11)]
    later = new_run_dir(tmp_path, now=T0 + timedelta(seconds=1))
    (tmp_path / "chaos-drill-notes.txt").write_text("not a run")
    (tmp_path / "other").mkdir()
    assert list_runs(tmp_path) == [*made, later]
    assert list_runs(tmp_path / "nowhere") == []


def test_load_results_names_the_file_when_missing_or_invalid(tmp_path):
    """A missing or garbled results.json is an EvidenceError naming the path."""
    with pytest.raises(EvidenceError, match=r"results\.json is missing"):
        load_results(tmp_path)
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(EvidenceError, match="not valid JSON"):
        load_results(tmp_path)
    assert issubclass(EvidenceError, FlowsError)


# --- disk full -------------------------------------------------------------------------


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_is_an_evidence_error_naming_the_path(tmp_path, monkeypatch):
    """ENOSPC while writing results.json says which file, why, and what to do."""
    run_dir = tmp_path / "run"
    monkeypatch.setattr(os, "replace", _disk_full)
    with pytest.raises(EvidenceError) as caught:
        RunWriter(run_dir, drills=DRILLS, command="t", config=None)
    message = str(caught.value)
    assert f"cannot write {run_dir / 'results.json'}" in message
    assert "[Errno 28] No space left on device" in message
    assert "free space" in message
    assert leftovers(run_dir) == []


def test_a_failed_record_leaves_the_previous_results_json_intact(tmp_path, monkeypatch):
    """The write is all-or-nothing: after a failed record the old file still parses."""
    writer = RunWriter(tmp_path / "run", drills=DRILLS, command="t", config=None)
    run_drill(writer, "api_kill")
    monkeypatch.setattr(os, "replace", _disk_full)
    with pytest.raises(EvidenceError, match="No space left"):
        writer.record(result("sigterm"))
    monkeypatch.undo()
    assert [d["status"] for d in load_results(writer.run_dir)["drills"]] == ["pass", "incomplete"]
    assert leftovers(writer.run_dir) == []


# --- verify: one run -------------------------------------------------------------------


def test_verify_passes_a_freshly_sealed_run(tmp_path):
    """Every file hashed in the manifest; nothing to report."""
    run_dir = make_run(tmp_path, 0)
    files = manifest(run_dir)["files"]
    assert set(files) == {"results.json", "junit.xml", "drill_api_kill.log", "drill_sigterm.log"}
    report = verify(run_dir)
    assert report.ok and report.runs_checked == 1 and report.incomplete == []


def test_verify_detects_one_changed_byte_in_a_log(tmp_path):
    """Flipping a single byte names the file and both hashes."""
    run_dir = make_run(tmp_path, 0)
    log = run_dir / "drill_api_kill.log"
    data = bytearray(log.read_bytes())
    data[0] ^= 1
    log.write_bytes(bytes(data))
    report = verify(run_dir)
    assert not report.ok
    assert report.problems == [
        f"{run_dir.name}: changed file drill_api_kill.log (sha256 expected "
        f"{manifest(run_dir)['files']['drill_api_kill.log'][:12]}…, "
        f"found {sha256(log)[:12]}…)"
    ]


def test_verify_detects_a_deleted_file(tmp_path):
    """A file the manifest lists but the folder no longer has."""
    run_dir = make_run(tmp_path, 0)
    (run_dir / "junit.xml").unlink()
    assert verify(run_dir).problems == [f"{run_dir.name}: missing file junit.xml"]


def test_verify_detects_an_added_file_even_in_a_subfolder(tmp_path):
    """Anything added after sealing is reported, recursively, with '/' paths."""
    run_dir = make_run(tmp_path, 0)
    (run_dir / "extra").mkdir()
    (run_dir / "extra" / "notes.txt").write_text("added later")
    assert verify(run_dir).problems == [f"{run_dir.name}: extra file extra/notes.txt"]


def test_verify_reports_a_complete_run_without_manifest(tmp_path):
    """results.json says complete but nothing seals it: a problem, not an incomplete run."""
    run_dir = make_run(tmp_path, 0)
    (run_dir / "manifest.json").unlink()
    report = verify(run_dir)
    assert report.incomplete == []
    assert report.problems == [
        f"{run_dir.name}: manifest.json missing on a complete run; its files cannot be checked"
    ]


def test_verify_of_one_run_checks_its_link_to_the_previous_run(tmp_path):
    """A single run folder whose previous run was deleted is broken."""
    first, second = make_run(tmp_path, 0), make_run(tmp_path, 1)
    assert verify(second).ok
    shutil.rmtree(first)
    assert verify(second).problems == [
        f"{second.name}: chain broken: previous run {first.name} is missing"
    ]


# --- verify: the chain -----------------------------------------------------------------


def test_verify_passes_an_intact_chain_of_three(tmp_path):
    """Each run links to the one sealed before it, by manifest hash."""
    a, b, c = (make_run(tmp_path, day) for day in range(3))
    assert manifest(a)["previous"] is None
    assert manifest(b)["previous"] == {
        "run_id": a.name,
        "manifest_sha256": sha256(a / "manifest.json"),
    }
    assert manifest(c)["previous"]["run_id"] == b.name
    report = verify(tmp_path)
    assert report.ok, report.problems
    assert report.runs_checked == 3
    assert [r.state for r in report.runs] == ["OK", "OK", "OK"]


def test_verify_detects_a_removed_middle_run(tmp_path):
    """Deleting B from A<-B<-C breaks C's link, and the problem names both runs."""
    _, b, c = (make_run(tmp_path, day) for day in range(3))
    shutil.rmtree(b)
    assert verify(tmp_path).problems == [
        f"{c.name}: chain broken: previous run {b.name} is missing"
    ]


def test_verify_detects_an_edited_manifest_in_the_middle(tmp_path):
    """Rewriting B's manifest (to hide a change) breaks the hash C recorded for it."""
    _, b, c = (make_run(tmp_path, day) for day in range(3))
    forged = manifest(b)
    forged["files"]["drill_api_kill.log"] = "0" * 64
    (b / "manifest.json").write_text(json.dumps(forged))
    problems = verify(tmp_path).problems
    assert f"{b.name}: changed file drill_api_kill.log" in problems[0]
    assert problems[1].startswith(
        f"{c.name}: chain broken: manifest of previous run {b.name} changed"
    )


def test_an_incomplete_run_in_the_middle_does_not_break_the_chain(tmp_path):
    """A<-C skips the abandoned B; B is reported as incomplete, not as a problem."""
    a = make_run(tmp_path, 0)
    b = make_run(tmp_path, 1, finalize=False)
    c = make_run(tmp_path, 2)
    assert manifest(c)["previous"]["run_id"] == a.name
    report = verify(tmp_path)
    assert report.ok, report.problems
    assert report.incomplete == [b.name]
    assert [r.state for r in report.runs] == ["OK", "INCOMPLETE", "OK"]


def test_a_run_finalized_after_a_newer_one_extends_the_chain(tmp_path):
    """A long run started first and sealed last links to the newer run; no fork."""
    a = make_run(tmp_path, 0)
    slow = RunWriter(
        new_run_dir(tmp_path, now=T0 + timedelta(days=1)), drills=["x"], command="t", config=None
    )
    fast = make_run(tmp_path, 2)
    run_drill(slow, "x")
    slow.finalize()
    assert manifest(fast)["previous"]["run_id"] == a.name
    assert manifest(slow.run_dir)["previous"]["run_id"] == fast.name
    assert verify(tmp_path).ok
    tail = make_run(tmp_path, 3)
    assert manifest(tail)["previous"]["run_id"] == slow.run_id


def test_verify_detects_a_forked_chain(tmp_path):
    """Two runs linking to the same predecessor means one was sealed outside the chain."""
    a = make_run(tmp_path, 0)
    b = make_run(tmp_path, 1)
    hidden = tmp_path.parent / f"{tmp_path.name}-hidden"
    b.rename(hidden)
    c = make_run(tmp_path, 2)
    hidden.rename(b)
    assert verify(tmp_path).problems == [
        f"{c.name}: chain forked: {b.name} and {c.name} both link to {a.name}"
    ]


def test_verify_refuses_a_path_without_runs(tmp_path):
    """Nothing to check is an error with a next step, not a silent pass."""
    with pytest.raises(EvidenceError, match=r"no run folders \(chaos-drill-\*\) under"):
        verify(tmp_path)
    with pytest.raises(EvidenceError, match="does not exist"):
        verify(tmp_path / "nope")


# --- concurrency -----------------------------------------------------------------------


def test_the_chain_update_holds_an_exclusive_lock(tmp_path, monkeypatch):
    """While one run picks its previous link and writes its manifest, nobody else can."""
    make_run(tmp_path, 0)
    writer = RunWriter(
        new_run_dir(tmp_path, now=T0 + timedelta(days=1)), drills=["x"], command="t", config=None
    )
    entered, release, errors = threading.Event(), threading.Event(), []
    real_tail = writer_module._chain_tail

    def held_tail(root, exclude):
        entered.set()
        assert release.wait(30)
        return real_tail(root, exclude)

    def finalize():
        try:
            writer.finalize()
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    monkeypatch.setattr(writer_module, "_chain_tail", held_tail)
    thread = threading.Thread(target=finalize)
    thread.start()
    fd = os.open(tmp_path / ".chain.lock", os.O_RDWR)
    try:
        assert entered.wait(30)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        release.set()
        thread.join(30)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        release.set()
        os.close(fd)
    assert errors == [] and not thread.is_alive()
    assert verify(tmp_path).ok


def test_two_threads_finalizing_at_once_form_one_chain(tmp_path):
    """Same-second starts get distinct folders; the second sealed links to the first."""
    barrier = threading.Barrier(2)
    writers = [
        RunWriter(new_run_dir(tmp_path, now=T0), drills=["x"], command="t", config=None)
        for _ in range(2)
    ]
    for writer in writers:
        run_drill(writer, "x")

    def seal(writer):
        barrier.wait(30)
        writer.finalize()

    threads = [threading.Thread(target=seal, args=(w,)) for w in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len({w.run_dir for w in writers}) == 2
    links = {w.run_id: (manifest(w.run_dir)["previous"] or {}).get("run_id") for w in writers}
    (first,) = [run_id for run_id, previous in links.items() if previous is None]
    assert set(links.values()) == {None, first}
    assert verify(tmp_path).ok, verify(tmp_path).problems


def _seal_in_child(root: str, barrier) -> None:
    writer = RunWriter(new_run_dir(Path(root), now=T0), drills=["x"], command="t", config=None)
    run_drill(writer, "x")
    barrier.wait(60)
    writer.finalize()


def test_processes_finalizing_at_once_form_one_consistent_chain(tmp_path):
    """Six processes racing for the same name and the same chain tail: six links, no fork."""
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(6)
    procs = [ctx.Process(target=_seal_in_child, args=(str(tmp_path), barrier)) for _ in range(6)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [proc.exitcode for proc in procs] == [0] * 6
    runs = list_runs(tmp_path)
    assert len(runs) == 6
    links = [(manifest(r)["previous"] or {}).get("run_id") for r in runs]
    assert links.count(None) == 1
    assert len(set(links)) == 6  # every run is linked to by at most one other
    report = verify(tmp_path)
    assert report.ok, report.problems


# --- CLI -------------------------------------------------------------------------------


def cli_verify(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows", "verify", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_verify_exit_codes_for_intact_tampered_and_empty_roots(tmp_path):
    """0 intact (one OK line per run), 1 tampered (naming the file), 2 nothing there."""
    root = tmp_path / "artifacts"
    runs = [make_run(root, day) for day in range(2)]
    make_run(root, 2, finalize=False)

    ok = cli_verify(root)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"OK {runs[0].name} (4 files)" in ok.stdout
    assert "INCOMPLETE chaos-drill-20261130-020000" in ok.stdout
    assert "verify: intact" in ok.stdout

    with (runs[0] / "drill_sigterm.log").open("a") as f:
        f.write("one more line\n")
    broken = cli_verify(root)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert f"BROKEN {runs[0].name}" in broken.stdout
    assert f"{runs[0].name}: changed file drill_sigterm.log" in broken.stdout
    assert "verify: BROKEN: 1 problem(s)" in broken.stdout

    empty = cli_verify(tmp_path / "empty-root")
    assert empty.returncode == 2
    assert "does not exist" in empty.stderr
    (tmp_path / "empty-root").mkdir()
    empty = cli_verify(tmp_path / "empty-root")
    assert empty.returncode == 2
    assert f"no run folders ({RUN_PREFIX}*) under" in empty.stderr
    assert "python -m flows run" in empty.stderr


# --- the writer's arguments and the synthetic history ------------------------------------


def test_writer_takes_its_clock_and_machine_facts_as_arguments(tmp_path):
    """now, host, versions and git_commit replace what the writer would read from here."""
    clock = iter([T0, T0 + timedelta(seconds=42)])
    host = {"hostname": "drill-07", "platform": "Linux-test", "cpus": 64}
    writer = RunWriter(
        tmp_path / "run",
        drills=["x"],
        command="t",
        config=None,
        now=lambda: next(clock),
        host=lambda: host,
        versions=lambda: {"python": "3.99.0"},
        git_commit=lambda: "ab" * 20,
    )
    run_drill(writer, "x")
    final = writer.finalize()
    assert (final["started_at"], final["finished_at"]) == (
        T0.isoformat(),
        (T0 + timedelta(seconds=42)).isoformat(),
    )
    assert (final["host"], final["versions"], final["git_commit"]) == (
        host,
        {"python": "3.99.0"},
        "ab" * 20,
    )
    assert "synthetic" not in final


def _git(cwd: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return out.stdout.strip()


def test_git_commit_comes_from_the_working_directory_not_the_package(tmp_path, monkeypatch):
    """A run started in a checkout records that checkout's HEAD; outside one, null."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    _git(checkout, "init", "-q")
    _git(checkout, "commit", "-q", "--allow-empty", "-m", "first")
    head = _git(checkout, "rev-parse", "HEAD")
    monkeypatch.chdir(checkout)
    writer = RunWriter(tmp_path / "in-checkout", drills=["x"], command="t", config=None)
    assert load_results(writer.run_dir)["git_commit"] == head
    outside = tmp_path / "outside"
    outside.mkdir()
    monkeypatch.chdir(outside)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # no repo above tmp_path
    writer = RunWriter(tmp_path / "outside-run", drills=["x"], command="t", config=None)
    assert load_results(writer.run_dir)["git_commit"] is None


def test_synthetic_runs_have_the_format_run_writer_writes(tmp_path):
    """Same keys, folder names, junit and chain as a real run, plus "synthetic": true."""
    real = load_results(make_run(tmp_path / "real", 0))
    root = tmp_path / "synthetic"
    paths = write_synthetic_runs(root, 6, seed=3, start=T0)
    assert paths == list_runs(root)
    assert all(p.name.startswith(RUN_PREFIX) for p in paths)
    sealed = [p for p in paths if (p / "manifest.json").exists()]
    (unsealed,) = [p for p in paths if p not in sealed]
    for run_dir in paths:
        data = load_results(run_dir)
        assert data["synthetic"] is True
        assert set(data) == set(real) | {"synthetic"}
        for entry in data["drills"]:
            assert set(entry) == set(real["drills"][0])
    for run_dir in sealed:
        data = load_results(run_dir)
        assert (run_dir / "junit.xml").read_bytes() == build_junit(data, run_dir)
    assert manifest(sealed[0])["previous"] is None
    for before, after in itertools.pairwise(sealed):
        assert manifest(after)["previous"] == {
            "run_id": before.name,
            "manifest_sha256": sha256(before / "manifest.json"),
        }
    left = load_results(unsealed)
    assert (left["status"], left["verdict"], left["finished_at"]) == ("incomplete", None, None)
    assert left["drills"][-1]["summary"] == writer_module._UNFINISHED
    report = verify(root)
    assert report.ok, report.problems
    assert report.incomplete == [unsealed.name]
    assert all(run.synthetic for run in report.runs)


def test_same_seed_same_synthetic_history(tmp_path):
    """Two roots from one seed and start hold byte-identical results.json files."""
    a = write_synthetic_runs(tmp_path / "a", 12, seed=8, start=T0)
    b = write_synthetic_runs(tmp_path / "b", 12, seed=8, start=T0)
    assert [p.name for p in a] == [p.name for p in b]
    for x, y in zip(a, b, strict=True):
        assert (x / "results.json").read_bytes() == (y / "results.json").read_bytes()
    other = write_synthetic_runs(tmp_path / "c", 12, seed=9, start=T0)
    assert [p.name for p in other] != [p.name for p in a]


def test_a_synthetic_history_extends_an_existing_chain(tmp_path):
    """Written into a root that already holds a sealed run, it links to that run."""
    first = make_run(tmp_path, 0)
    paths = write_synthetic_runs(tmp_path, 2, seed=1, start=T0 + timedelta(days=1))
    assert manifest(paths[0])["previous"]["run_id"] == first.name
    report = verify(tmp_path)
    assert report.ok, report.problems
    assert [run.synthetic for run in report.runs] == [False, True, True]


def test_the_site_labels_synthetic_runs_and_only_those(tmp_path):
    """A synthetic run's page, archive row and the home page say SYNTHETIC; a real run's not."""
    from flows.site import publish
    from flows.site._archive import archive_month
    from flows.trends.history import load_history

    root = tmp_path / "artifacts"
    real = make_run(root, 0)  # started now, by the writer's clock
    later = datetime.now(UTC) + timedelta(seconds=30)
    (fake,) = write_synthetic_runs(root, 1, seed=1, start=later)  # the latest run
    docs = tmp_path / "docs"
    publish(root, tmp_path / "site", build=False, docs_dir=docs)
    pages = docs / "generated" / "runs"
    fake_page = (pages / fake.name / "index.md").read_text()
    real_page = (pages / real.name / "index.md").read_text()
    assert re.search(r'<span class="badge badge-[a-z]+">SYNTHETIC</span>', fake_page)
    assert "Synthetic run: written by" in fake_page
    assert "SYNTHETIC" not in real_page and "ynthetic run" not in real_page

    runs = load_history(root).runs
    assert runs.set_index("run_id")["synthetic"].to_dict() == {real.name: False, fake.name: True}
    month = f"{later:%Y-%m}"
    rows = archive_month(month, runs, runs.iloc[0:0].assign(kind="", drill=""))
    (fake_row,) = [r for r in rows.split("<tr>") if fake.name in r]
    (real_row,) = [r for r in rows.split("<tr>") if real.name in r]
    assert "SYNTHETIC" in fake_row and "SYNTHETIC" not in real_row
    home = (docs / "generated" / "home.md").read_text()
    assert "1 of 2 run(s) are synthetic" in home
    latest = home.split("## Latest run", 1)[1].split("\n\n", 2)[1]
    assert fake.name in latest and ">SYNTHETIC<" in latest


def test_a_real_history_has_no_synthetic_warning(tmp_path):
    """Real runs only: the home page carries no synthetic warning or badge."""
    from flows.site import publish

    root = tmp_path / "artifacts"
    make_run(root, 0)
    docs = tmp_path / "docs"
    publish(root, tmp_path / "site", build=False, docs_dir=docs)
    home = (docs / "generated" / "home.md").read_text()
    assert "synthetic" not in home.lower()


# --- CLI: synth, and verify of a failed run ----------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_verify_exits_0_for_an_intact_run_whose_verdict_is_fail(tmp_path):
    """A failed drill is intact evidence of a failure, not broken evidence."""
    writer = RunWriter(new_run_dir(tmp_path, now=T0), drills=DRILLS, command="t", config=None)
    run_drill(writer, "api_kill", "fail")
    run_drill(writer, "sigterm")
    assert writer.finalize()["verdict"] == "fail"
    out = cli_verify(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"OK {writer.run_id} (4 files)\n" in out.stdout


def test_cli_synth_exit_codes_and_a_history_verify_names_as_synthetic(tmp_path):
    """0 written (and verify lists the runs as synthetic), 2 for a bad count or root."""
    root = tmp_path / "demo"
    made = cli("synth", "--artifacts", str(root), "--runs", "4", "--seed", "2")
    assert made.returncode == 0, made.stdout + made.stderr
    assert f"synth: wrote 4 run folder(s) under {root}" in made.stdout
    checked = cli_verify(root)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "4 synthetic" in checked.stdout
    assert re.search(r"^OK chaos-drill-\S+ \(\d+ files, synthetic\)$", checked.stdout, re.M)

    negative = cli("synth", "--artifacts", str(root), "--runs", "-1")
    assert negative.returncode == 2
    assert "--runs must be 0 or more, got -1" in negative.stderr
    (tmp_path / "a-file").write_text("not a folder")
    blocked = cli("synth", "--artifacts", str(tmp_path / "a-file"), "--runs", "2")
    assert blocked.returncode == 2
    assert f"cannot create a run folder in {tmp_path / 'a-file'}" in blocked.stderr


def test_the_writer_fsyncs_by_default_and_not_when_told_otherwise(tmp_path, monkeypatch):
    """Real evidence is fsynced; durable=False (a rebuildable history) skips only that."""
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    make_run(tmp_path / "kept", 0)
    assert len(synced) >= 4  # results.json, junit.xml, manifest.json and their folder
    synced.clear()
    writer = RunWriter(tmp_path / "rebuilt", drills=["x"], command="t", config=None, durable=False)
    run_drill(writer, "x")
    writer.finalize()
    assert synced == []
    assert verify(writer.run_dir).ok and leftovers(writer.run_dir) == []


def test_the_chain_tail_rereads_a_manifest_changed_since_it_was_seen(tmp_path):
    """The writer's manifest cache never links a new run to stale bytes."""
    first = make_run(tmp_path, 0)
    assert writer_module._chain_tail(tmp_path, exclude="")["run_id"] == first.name  # cached
    edited = manifest(first) | {"note": "rewritten in place"}
    (first / "manifest.json").write_text(json.dumps(edited))
    second = make_run(tmp_path, 1)
    assert manifest(second)["previous"] == {
        "run_id": first.name,
        "manifest_sha256": sha256(first / "manifest.json"),
    }
