"""Drills against a config with several programs: they judge only the program they drill,
and a fault on it that reaches another program is a FAIL naming that program."""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

import pytest

from flows.drills import DrillOptions, _toml, run_drill
from flows.drills.markers import find_marked
from flows.runner import run_drills
from tests import broken_supervisor
from tests.conftest import (
    REPO,
    demo_program,
    fixture_program,
    run_flows,
    supervisor_launcher,
    write_config,
)

BYSTANDER = {"name": "bystander", "command": ["sleep", "300"], "stop_timeout": 1.0}


def _two_programs(tmp_path: Path) -> Path:
    return write_config(tmp_path / "two.toml", [demo_program(), BYSTANDER])


def _first_line_marker(log: Path) -> str:
    first = log.read_text(encoding="utf-8").splitlines()[0]
    return first.split("; marker ", 1)[1].split(";", 1)[0]


@pytest.mark.parametrize("drill_id", ["api_kill", "crash_restart", "kill_under_load"])
def test_untouched_second_program_does_not_fail_the_drill(tmp_path: Path, drill_id: str) -> None:
    """Drilling the first of two programs passes: the second one's processes are not
    counted, and the collateral metric shows them untouched."""
    options = DrillOptions(config=_two_programs(tmp_path))
    result = run_drill(drill_id, tmp_path / f"drill_{drill_id}.log", options)
    assert result.status == "pass", result.summary
    assert result.metrics["collateral"] == {"bystander": {"before": 1, "lost": 0}}


def test_program_option_drills_the_named_program(tmp_path: Path) -> None:
    """--program bystander kills the bystander; the first program is the one left alone."""
    options = DrillOptions(config=_two_programs(tmp_path), program="bystander")
    log = tmp_path / "drill_api_kill.log"
    result = run_drill("api_kill", log, options)
    assert result.status == "pass", result.summary
    assert "tree of 1 process(es) gone" in result.summary
    assert result.metrics["collateral"] == {"worker": {"before": 4, "lost": 0}}
    assert "target program bystander (named by --program)" in log.read_text(encoding="utf-8")


@pytest.mark.parametrize("drill_id", ["api_kill", "kill_under_load"])
def test_kill_that_reaches_other_programs_fails_naming_them(tmp_path: Path, drill_id: str) -> None:
    """A kill of one program that takes the others down (kill_kills_all) is a FAIL that
    names the damaged program, though the drilled program itself died as it should."""
    options = DrillOptions(
        config=_two_programs(tmp_path),
        supervisor_command=tuple(broken_supervisor.command("kill_kills_all")),
    )
    log = tmp_path / f"drill_{drill_id}.log"
    result = run_drill(drill_id, log, options)
    assert result.status == "fail", result.summary
    assert result.summary.startswith(
        "FAIL: collateral damage while drilling worker: program bystander lost 1 of 1"
    ), result.summary
    assert result.metrics["collateral"] == {"bystander": {"before": 1, "lost": 1}}
    assert find_marked(_first_line_marker(log)) == []


def test_unknown_program_is_a_usage_error_listing_the_known_ones(tmp_path: Path) -> None:
    """--program nope exits 2 naming nope and every known program; no run folder is made."""
    root = tmp_path / "root"
    config = str(_two_programs(tmp_path))
    for command in ("run", "nightly"):
        out = run_flows(command, "--artifacts", str(root), "--config", config, "--program", "nope")
        assert out.returncode == 2, (command, out.stderr[-2000:])
        assert "--program 'nope': no such program" in out.stderr
        assert "known programs: worker, bystander" in out.stderr
    assert not root.exists()


def test_run_records_the_default_program_and_how_it_was_chosen(tmp_path: Path) -> None:
    """Without --program the first program is drilled, and results.json and the log say so."""
    run_dir = tmp_path / "run"
    options = DrillOptions(config=_two_programs(tmp_path))
    progress: list[str] = []
    results = run_drills(run_dir, ["bad_input"], options, command="t", progress=progress.append)
    assert results["verdict"] == "pass", results["drills"]
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk["program"] == {
        "name": "worker",
        "chosen_by": "first",
    }
    probe = tmp_path / "probe"
    probe.mkdir()
    with supervisor_launcher(probe) as launch:
        said = launch([{"name": "probe", "command": ["sleep", "300"]}]).containment()
    assert said in ("cgroup", "session", "unknown")
    assert on_disk["drills"][0]["containment"] == said
    assert any("drilling program worker (the first program in the config;" in m for m in progress)
    log = (run_dir / "drill_bad_input.log").read_text(encoding="utf-8")
    assert "target program worker (the first program in the config; --program NAME" in log


def test_recovery_drill_script_passes_config_and_program(tmp_path: Path) -> None:
    """scripts/recovery_drill.sh --config FILE --program NAME drills that program."""
    config = _two_programs(tmp_path)
    run_dir = tmp_path / "run"
    out = subprocess.run(
        ["bash", str(REPO / "scripts/recovery_drill.sh"), "--config", str(config)]
        + ["--program", "bystander", str(run_dir), "api_kill"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["program"] == {"name": "bystander", "chosen_by": "--program"}
    assert results["command"] == (
        f"scripts/recovery_drill.sh --config {config} --program bystander {run_dir} api_kill"
    )


@pytest.mark.slow
def test_several_programs_some_ignoring_sigterm_all_pass(tmp_path: Path) -> None:
    """Demo worker, a program whose processes ignore SIGTERM (the one drilled) and a
    bystander: every drill passes against the real supervisor; the escapee drill passes
    only where the supervisor contains programs by cgroup (session cannot hold escapees)."""
    config = write_config(
        tmp_path / "many.toml",
        [demo_program(), fixture_program("ignores_sigterm", stop_timeout=0.5), BYSTANDER],
    )
    options = DrillOptions(config=config, program="ignores_sigterm")
    results = run_drills(tmp_path / "run", None, options, command="t", progress=lambda m: None)
    for drill in results["drills"]:
        expected = "pass"
        if drill["id"] == "escapee" and drill["containment"] != "cgroup":
            expected = "fail"
        assert drill["status"] == expected, (drill["id"], drill["summary"])
        collateral = drill["metrics"].get("collateral", {})
        assert all(c["lost"] == 0 for c in collateral.values()), (drill["id"], collateral)
    assert results["program"]["name"] == "ignores_sigterm"


def test_drill_config_round_trips_and_marks_every_program(tmp_path: Path) -> None:
    """The config a drill's supervisor gets is the user's, value for value, plus the
    program marker in every program's env (the user's own env kept)."""
    odd = 'quote " backslash \\ newline \n tab \t del \x7f é 😀'
    server = {"host": "127.0.0.1", "port": 0, "ratio": float("inf")}
    programs = [
        {"name": "a", "command": ["echo", odd], "env": {"KEEP": odd}, "stop_timeout": 0.5},
        {"name": "b", "command": ["sleep", "1"], "autostart": False},
    ]
    text = _toml.dumps({"server": server, "programs": programs})
    assert tomllib.loads(text) == {"server": server, "programs": programs}
    config = tmp_path / "c.toml"
    config.write_text(text, encoding="utf-8")
    extra = {"name": "extra", "command": ["true"]}
    got = tomllib.loads(DrillOptions(config=config).drill_config([extra]))
    assert [p["env"] for p in got["programs"]] == [
        {"KEEP": odd, "CHAOS_DRILL_PROGRAM": "a"},
        {"CHAOS_DRILL_PROGRAM": "b"},
        {"CHAOS_DRILL_PROGRAM": "extra"},
    ]
    assert got["server"] == server


@pytest.mark.slow
def test_nightly_passes_program_to_the_flow(tmp_path: Path) -> None:
    """python -m flows nightly --program NAME drills that program and records the choice."""
    root = tmp_path / "root"
    out = run_flows(
        "nightly", "--artifacts", str(root), "--config", str(_two_programs(tmp_path)),
        "--program", "bystander", "--drill", "api_kill", "--no-publish",
        timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = root.glob("chaos-drill-*")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["program"] == {"name": "bystander", "chosen_by": "--program"}
    assert "program=bystander" in results["command"]
    assert "tree of 1 process(es) gone" in results["drills"][0]["summary"]
