"""Small builders shared by the evidence tests: results, drills, sealed runs."""

from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flows.evidence import (
    RunWriter,
    new_run_dir,
)
from tests.conftest import run_flows

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 11, 28, 2, 0, 0, tzinfo=UTC)
DRILLS = ["api_kill", "sigterm"]


def result(drill_id: str, status: str = "pass", **extra) -> dict:
    verdict = "PASS" if status == "pass" else "FAIL"
    return {
        "id": drill_id,
        "status": status,
        # now, not T0: the writer seals its criteria on the real clock, before any drill
        "started_at": datetime.now(UTC).isoformat(),
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


def cli_verify(path: Path) -> subprocess.CompletedProcess[str]:
    return run_flows("verify", str(path), timeout=60)
