"""The writer's arguments, the synthetic history written through it, and the synth CLI."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flows.evidence import (
    RUN_PREFIX,
    RunWriter,
    list_runs,
    load_results,
    new_run_dir,
    verify,
)
from flows.evidence import writer as writer_module
from flows.evidence.junit import build_junit
from flows.evidence.keys import load_signing_key
from flows.evidence.synthetic import write_synthetic_runs
from tests.conftest import run_flows
from tests.evidence_helpers import (
    DRILLS,
    REPO,
    T0,
    cli_verify,
    leftovers,
    make_run,
    manifest,
    run_drill,
    sha256,
)

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


def test_git_commit_is_the_packages_checkout_not_the_working_directorys(tmp_path, monkeypatch):
    """A run started inside another repository records the drill code's commit, not that one."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    package_head = _git(REPO, "rev-parse", "HEAD")
    other = tmp_path / "other"
    other.mkdir()
    _git(other, "init", "-q")
    _git(other, "commit", "-q", "--allow-empty", "-m", "first")
    other_head = _git(other, "rev-parse", "HEAD")
    monkeypatch.chdir(other)
    writer = RunWriter(tmp_path / "run", drills=["x"], command="t", config=None)
    recorded = load_results(writer.run_dir)["git_commit"]
    assert recorded == package_head and recorded != other_head


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
    """Written into a root that already holds a sealed run (with that root's key), it links
    to that run."""
    first = make_run(tmp_path, 0)
    paths = write_synthetic_runs(
        tmp_path, 2, seed=1, start=T0 + timedelta(days=1), signing_key=load_signing_key()
    )
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
    (fake,) = write_synthetic_runs(  # the latest run
        root, 1, seed=1, start=later, signing_key=load_signing_key()
    )
    docs = tmp_path / "docs"
    publish(root, tmp_path / "site", build=False, docs_dir=docs)
    pages = docs / "generated" / "runs"
    fake_page = (pages / fake.name / "index.html").read_text()
    real_page = (pages / real.name / "index.html").read_text()
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


def test_cli_verify_exits_0_for_an_intact_run_whose_verdict_is_fail(tmp_path):
    """A failed drill is intact evidence of a failure, not broken evidence."""
    writer = RunWriter(new_run_dir(tmp_path, now=T0), drills=DRILLS, command="t", config=None)
    run_drill(writer, "api_kill", "fail")
    run_drill(writer, "sigterm")
    assert writer.finalize()["verdict"] == "fail"
    out = cli_verify(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"OK {writer.run_id} (6 files, signed, log #0)\n" in out.stdout


def test_cli_synth_exit_codes_and_a_history_verify_names_as_synthetic(tmp_path):
    """0 written (and verify lists the runs as synthetic), 2 for a bad count or root."""
    root = tmp_path / "demo"
    made = run_flows("synth", "--artifacts", str(root), "--runs", "4", "--seed", "2")
    assert made.returncode == 0, made.stdout + made.stderr
    assert f"synth: wrote 4 run folder(s) under {root}" in made.stdout
    checked = cli_verify(root)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "4 synthetic" in checked.stdout
    assert re.search(
        r"^OK chaos-drill-\S+ \(\d+ files, signed, log #\d+, synthetic\)$", checked.stdout, re.M
    )

    negative = run_flows("synth", "--artifacts", str(root), "--runs", "-1")
    assert negative.returncode == 2
    assert "--runs must be 0 or more, got -1" in negative.stderr
    (tmp_path / "a-file").write_text("not a folder")
    blocked = run_flows("synth", "--artifacts", str(tmp_path / "a-file"), "--runs", "2")
    assert blocked.returncode == 2
    assert f"cannot create a run folder in {tmp_path / 'a-file'}" in blocked.stderr


def test_the_writer_fsyncs_by_default_and_not_when_told_otherwise(tmp_path, monkeypatch):
    """Real evidence is fsynced; durable=False (a rebuildable history) skips the fsyncs."""
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


def test_a_writer_not_durable_writes_results_when_the_run_ends_not_after_each_drill(tmp_path):
    """durable=False: results.json as opened until finalize or close; close writes every
    drill recorded so far, so the run a dead writer left is signed from what it did."""
    writers = [
        RunWriter(
            new_run_dir(tmp_path, now=T0, durable=False),
            drills=["x", "y"],
            command="t",
            config=None,
            durable=False,
        )  # fmt: skip
        for _ in range(2)
    ]
    for writer in writers:
        run_drill(writer, "x")
        assert [d["status"] for d in load_results(writer.run_dir)["drills"]] == [
            "incomplete",
            "incomplete",
        ]
    writers[0].finalize()
    writers[1].close()
    assert [d["status"] for d in load_results(writers[0].run_dir)["drills"]] == [
        "pass",
        "incomplete",
    ]
    assert [d["status"] for d in load_results(writers[1].run_dir)["drills"]] == [
        "pass",
        "incomplete",
    ]
    assert load_results(writers[0].run_dir)["status"] == "complete"
    assert load_results(writers[1].run_dir)["status"] == "incomplete"


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
