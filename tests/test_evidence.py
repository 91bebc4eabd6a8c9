"""The evidence writer: results.json, junit.xml, run folders, a full disk, concurrent sealing."""

from __future__ import annotations

import errno
import fcntl
import multiprocessing
import os
import sys
import threading
import xml.etree.ElementTree as ET
from datetime import timedelta, timezone
from pathlib import Path

import pytest

from flows.errors import EvidenceError, FlowsError
from flows.evidence import (
    SCHEMA_VERSION,
    RunWriter,
    list_runs,
    load_results,
    new_run_dir,
    verify,
)
from flows.evidence import writer as writer_module
from tests.evidence_helpers import (
    DRILLS,
    T0,
    leftovers,
    make_run,
    manifest,
    result,
    run_drill,
)

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
    """ENOSPC while writing the first file (criteria.json) says which file, why, and what to do."""
    run_dir = tmp_path / "run"
    monkeypatch.setattr(os, "replace", _disk_full)
    with pytest.raises(EvidenceError) as caught:
        RunWriter(run_dir, drills=DRILLS, command="t", config=None)
    message = str(caught.value)
    assert f"cannot write {run_dir / 'criteria.json'}" in message
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


# --- concurrency -----------------------------------------------------------------------


def test_the_chain_update_holds_an_exclusive_lock(tmp_path, monkeypatch):
    """While one run picks its previous link and writes its manifest, nobody else can."""
    make_run(tmp_path, 0)
    writer = RunWriter(
        new_run_dir(tmp_path, now=T0 + timedelta(days=1)), drills=["x"], command="t", config=None
    )
    entered, release, errors = threading.Event(), threading.Event(), []
    real_tail = writer_module._chain_tail

    def held_tail(root, exclude, names=None):
        entered.set()
        assert release.wait(30)
        return real_tail(root, exclude, names)

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
