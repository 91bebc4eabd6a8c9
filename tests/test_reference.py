"""The generated reference page follows the code: drills, routes and CLI help."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from flows import registry
from flows.drills import DRILL_IDS, DRILLS, KEY_METRICS
from flows.errors import UnknownDrillError
from flows.site._reference import reference_page
from tests.conftest import run_flows

REPO = Path(__file__).resolve().parent.parent


def test_reference_lists_every_drill_route_and_command() -> None:
    """Each drill with its log and key metric, each HTTP route, each sub-command's help."""
    page = reference_page()
    for drill_id in DRILL_IDS:
        assert f"| `{drill_id}` | `drill_{drill_id}.log` | `{KEY_METRICS[drill_id]}` |" in page
    for route in (
        "/healthz",
        "/processes",
        "/process",
        "/process/start",
        "/process/kill",
        "/process/restart",
        "/events",
    ):
        assert f"| `{route}` |" in page
    for command in ("run", "verify", "trends", "publish", "nightly", "serve", "drills"):
        assert f"### `python -m flows {command}`" in page
    assert "### `python -m supervisor serve`" in page
    assert "| `POST` | `/process/kill` | 200, 401, 404, 413, 422 |" in page
    assert "exit codes (every command):" in page


def test_registry_and_drill_functions_list_the_same_drills_in_order() -> None:
    """The registry is the one list; the drill functions answer to exactly its ids."""
    assert tuple(DRILLS) == registry.DRILL_IDS
    assert DRILL_IDS == list(registry.DRILL_IDS)
    for info in registry.DRILLS:
        assert info.title and info.passes_when and info.unit
        assert registry.KEY_METRICS[info.id] == info.metric


def test_key_metric_is_the_drills_number_and_nothing_else() -> None:
    """A number under the drill's key metric; None for a bool, NaN, text or a missing entry."""
    assert registry.key_metric("api_kill", {"kill_round_trip_ms": 4.5, "other": 1}) == 4.5
    assert registry.key_metric("legacy_db", {"rows_kept": 3}) == 3
    for metrics in ({"kill_round_trip_ms": True}, {"kill_round_trip_ms": float("nan")},
                    {"kill_round_trip_ms": "4"}, {"other": 1.0}, None, [4.5]):  # fmt: skip
        assert registry.key_metric("api_kill", metrics) is None, metrics
    assert registry.key_metric("no_such_drill", {"kill_round_trip_ms": 4.5}) is None


def test_unknown_drill_id_is_refused_naming_the_valid_ones() -> None:
    with pytest.raises(UnknownDrillError, match="nope; valid ids: sigterm, api_kill"):
        registry.check_ids(["api_kill", "nope"])
    assert registry.check_ids(["bad_input", "sigterm"]) == ["sigterm", "bad_input"]


def test_cli_lists_the_drills_and_states_the_exit_codes() -> None:
    """``python -m flows drills`` prints each drill's id, title, metric and unit; ``--help``
    carries the exit-code rule; an unknown ``--drill`` is a usage error (2)."""
    listed = run_flows("drills", timeout=60)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["id", "title", "key", "metric", "unit"]
    for info, line in zip(registry.DRILLS, lines[1:], strict=True):
        assert line.split()[0] == info.id and info.title in line
        assert line.split()[-2:] == [info.metric, info.unit]
    helped = run_flows("--help", timeout=60)
    assert "exit codes (every command):" in helped.stdout
    assert "2  usage or environment errors" in helped.stdout
    refused = run_flows("run", "--drill", "nope", timeout=60)
    assert refused.returncode == 2 and "invalid choice: 'nope'" in refused.stderr


def test_recovery_drill_usage_lists_the_drills_from_the_registry() -> None:
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "recovery_drill.sh"), "--help"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    for drill_id in registry.DRILL_IDS:
        assert drill_id in out.stderr
