"""Verify: one run, the chain over runs, and the verify CLI."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta

import pytest

from flows.errors import EvidenceError
from flows.evidence import (
    RUN_PREFIX,
    RunWriter,
    new_run_dir,
    verify,
)
from tests.evidence_helpers import (
    T0,
    cli_verify,
    make_run,
    manifest,
    run_drill,
    sha256,
)

# --- verify: one run -------------------------------------------------------------------


def test_verify_passes_a_freshly_sealed_run(tmp_path):
    """Every file hashed in the manifest; nothing to report."""
    run_dir = make_run(tmp_path, 0)
    files = manifest(run_dir)["files"]
    assert set(files) == {
        "results.json",
        "junit.xml",
        "drill_api_kill.log",
        "drill_sigterm.log",
        "criteria.json",
        "EVIDENCE.md",
    }
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
    assert (
        report.problems
        == [  # the manifest and the signed statement both name it
            f"{run_dir.name}: changed file drill_api_kill.log (sha256 expected "
            f"{manifest(run_dir)['files']['drill_api_kill.log'][:12]}…, "
            f"found {sha256(log)[:12]}…)",
            f"{run_dir.name}: drill_api_kill.log differs from the signed statement (sha256 signed "
            f"{manifest(run_dir)['files']['drill_api_kill.log'][:12]}…, "
            f"found {sha256(log)[:12]}…)",
        ]
    )


def test_verify_detects_a_deleted_file(tmp_path):
    """A file the manifest lists but the folder no longer has."""
    run_dir = make_run(tmp_path, 0)
    (run_dir / "junit.xml").unlink()
    assert verify(run_dir).problems == [
        f"{run_dir.name}: missing file junit.xml",
        f"{run_dir.name}: junit.xml is missing; the signed statement lists it",
    ]


def test_verify_detects_an_added_file_even_in_a_subfolder(tmp_path):
    """Anything added after sealing is reported, recursively, with '/' paths."""
    run_dir = make_run(tmp_path, 0)
    (run_dir / "extra").mkdir()
    (run_dir / "extra" / "notes.txt").write_text("added later")
    assert verify(run_dir).problems == [
        f"{run_dir.name}: extra file extra/notes.txt",
        f"{run_dir.name}: extra/notes.txt is not in the signed statement (added after signing)",
    ]


def test_verify_reports_a_complete_run_without_manifest(tmp_path):
    """results.json says complete but nothing seals it: a problem, not an incomplete run."""
    run_dir = make_run(tmp_path, 0)
    (run_dir / "manifest.json").unlink()
    report = verify(run_dir)
    assert report.incomplete == []
    assert report.problems == [
        f"{run_dir.name}: manifest.json missing on a complete run; its files cannot be checked",
        f"{run_dir.name}: manifest.json is missing; the signed statement lists it",
    ]


def test_verify_of_one_run_checks_its_link_to_the_previous_run(tmp_path):
    """A single run folder whose previous run was deleted is broken."""
    first, second = make_run(tmp_path, 0), make_run(tmp_path, 1)
    assert verify(second).ok
    shutil.rmtree(first)
    problems = verify(second).problems
    assert f"{second.name}: chain broken: previous run {first.name} is missing" in problems
    assert f"log entry 0 ({first.name}): run folder {first.name} is missing: " in "".join(problems)


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
    problems = verify(tmp_path).problems
    assert f"{c.name}: chain broken: previous run {b.name} is missing" in problems
    assert (
        f"log entry 1 ({b.name}): run folder {b.name} is missing: deleted after it was logged"
        in problems
    )


def test_verify_detects_an_edited_manifest_in_the_middle(tmp_path):
    """Rewriting B's manifest (to hide a change) breaks the hash C recorded for it."""
    _, b, c = (make_run(tmp_path, day) for day in range(3))
    forged = manifest(b)
    forged["files"]["drill_api_kill.log"] = "0" * 64
    (b / "manifest.json").write_text(json.dumps(forged))
    problems = verify(tmp_path).problems
    assert f"{b.name}: changed file drill_api_kill.log" in problems[0]
    assert any(
        p.startswith(f"{c.name}: chain broken: manifest of previous run {b.name} changed")
        for p in problems
    )
    assert any(p.startswith(f"{b.name}: manifest.json differs from the signed") for p in problems)


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


# --- CLI -------------------------------------------------------------------------------


def test_cli_verify_exit_codes_for_intact_tampered_and_empty_roots(tmp_path):
    """0 intact (one OK line per run), 1 tampered (naming the file), 2 nothing there."""
    root = tmp_path / "artifacts"
    runs = [make_run(root, day) for day in range(2)]
    make_run(root, 2, finalize=False)

    ok = cli_verify(root)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"OK {runs[0].name} (6 files, signed, log #0)" in ok.stdout
    assert "INCOMPLETE chaos-drill-20261130-020000" in ok.stdout
    assert "verify: intact" in ok.stdout

    with (runs[0] / "drill_sigterm.log").open("a") as f:
        f.write("one more line\n")
    broken = cli_verify(root)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert f"BROKEN {runs[0].name}" in broken.stdout
    assert f"{runs[0].name}: changed file drill_sigterm.log" in broken.stdout
    assert "verify: BROKEN: 2 problem(s)" in broken.stdout

    empty = cli_verify(tmp_path / "empty-root")
    assert empty.returncode == 2
    assert "does not exist" in empty.stderr
    (tmp_path / "empty-root").mkdir()
    empty = cli_verify(tmp_path / "empty-root")
    assert empty.returncode == 2
    assert f"no run folders ({RUN_PREFIX}*) under" in empty.stderr
    assert "python -m flows run" in empty.stderr
