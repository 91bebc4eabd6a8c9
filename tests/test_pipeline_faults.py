"""Faults in the pipeline itself: a killed runner, a full disk, a broken program,
and two runs at once on one evidence root."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from flows.drills import DrillOptions, run_drill
from flows.drills.markers import marked_processes
from flows.evidence import list_runs, verify
from tests.conftest import flows_cmd, run_flows, wait_for

ROOT = Path(__file__).resolve().parent.parent


def runner_processes(runner_pid: int) -> list:
    return marked_processes(lambda v: v.startswith(f"{runner_pid}-"))


@pytest.mark.slow
def test_sigkilled_runner_leaves_incomplete_evidence_and_next_run_cleans_up(tmp_path: Path) -> None:
    """A runner SIGKILLed mid-drill: its folder reads incomplete, verify keeps the chain,
    and the next run kills every process the dead runner left behind."""
    root = tmp_path / "artifacts"
    first = subprocess.Popen(
        flows_cmd(
            "run", "--artifacts", str(root), "--drill", "bad_input", "--drill", "kill_under_load"
        ),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    # kill it once the second drill's supervisor and workload are up
    def second_drill_running() -> bool:
        runs = list_runs(root)
        if not runs or not (runs[0] / "drill_kill_under_load.log").exists():
            return False
        return len(runner_processes(first.pid)) >= 3

    wait_for(second_drill_running, 60, "the second drill to start", interval=0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    (dead_run,) = list_runs(root)
    results = json.loads((dead_run / "results.json").read_text())
    statuses = {d["id"]: d["status"] for d in results["drills"]}
    assert results["status"] == "incomplete"
    assert statuses == {"bad_input": "pass", "kill_under_load": "incomplete"}

    second = run_flows("run", "--artifacts", str(root), "--drill", "legacy_db")
    assert second.returncode == 0, second.stderr[-2000:]
    assert "leftover process(es) of dead drill runs" in second.stderr
    wait_for(lambda: not runner_processes(first.pid), 5, "the dead runner's processes to go")

    report = verify(root)
    assert report.ok, report.problems
    assert report.incomplete == [dead_run.name]
    out = run_flows("verify", str(root))
    assert out.returncode == 0 and "INCOMPLETE" in out.stdout


@pytest.fixture
def tiny_tmpfs(tmp_path: Path):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs")
    mnt = tmp_path / "full"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_artifacts_disk_fails_clearly_and_keeps_earlier_runs(
    tmp_path: Path, tiny_tmpfs: Path
) -> None:
    """With the evidence disk full the run fails naming the path; earlier runs verify."""
    earlier = run_flows("run", "--artifacts", str(tiny_tmpfs), "--drill", "legacy_db")
    assert earlier.returncode == 0, earlier.stderr[-2000:]
    (earlier_run,) = list_runs(tiny_tmpfs)
    before = {p.name: p.read_bytes() for p in earlier_run.iterdir()}
    filler = tiny_tmpfs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:  # fill the disk to the last block
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    out = run_flows("run", "--artifacts", str(tiny_tmpfs), "--drill", "bad_input")
    assert out.returncode == 2, (out.stdout, out.stderr[-2000:])
    assert "No space left on device" in out.stderr
    assert str(tiny_tmpfs) in out.stderr
    assert {p.name: p.read_bytes() for p in earlier_run.iterdir()} == before
    filler.unlink()
    assert verify(earlier_run).ok


def test_program_that_exits_at_once_is_fatal_and_the_drill_errors(tmp_path: Path) -> None:
    """A command that exits at once: supervisor stays up, program fatal, drill error."""
    config = tmp_path / "flaky.toml"
    config.write_text(
        '[[programs]]\nname = "quitter"\ncommand = ["false"]\nbackoff_initial = 0.05\n'
    )
    started = time.monotonic()
    result = run_drill("api_kill", tmp_path / "drill_api_kill.log", DrillOptions(config=config))
    assert result.status == "error"
    assert "fatal" in result.summary and "exit code 1" in result.summary
    assert time.monotonic() - started < 10


@pytest.mark.slow
def test_two_runs_at_once_on_one_root_get_distinct_folders_and_one_chain(tmp_path: Path) -> None:
    """Two concurrent runs both complete, in distinct folders, and the chain verifies."""
    root = tmp_path / "artifacts"
    procs = [
        subprocess.Popen(
            flows_cmd("run", "--artifacts", str(root), "--drill", drill),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for drill in ("bad_input", "legacy_db")
    ]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outs]
    runs = list_runs(root)
    assert len(runs) == 2 and runs[0] != runs[1]
    report = verify(root)
    assert report.ok, report.problems
    manifests = [json.loads((r / "manifest.json").read_text()) for r in runs]
    assert sorted(m["previous"] is None for m in manifests) == [False, True]
