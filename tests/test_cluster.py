"""``make cluster-demo``, trimmed: PostgreSQL, the Prefect server, two netns drill hosts, for real.

One drill (``api_kill``) per host. The demo runs as a child process from a
folder outside the checkout (its workers run an installed wheel); the test
reads its JSON report and then checks, from the outside, that nothing of the
cluster is left: no namespace, no process. A second test interrupts a demo with
SIGINT while it is up and checks the same.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.test_deploy import wait_for

REPO = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and PostgreSQL need root"),
    pytest.mark.skipif(
        not list(Path("/usr/lib/postgresql").glob("*/bin/postgres")),
        reason="no PostgreSQL server (make cluster-demo installs Debian's postgresql)",
    ),
    pytest.mark.skipif(shutil.which("ip") is None, reason="no iproute2"),
]


def _demo(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cluster", "--source", str(REPO),
         "--port", "4200", *args],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _left_behind(pid: int, out: str) -> list[str]:
    """Namespaces and processes of the demo with this pid that still exist: its netns, the
    pids it printed (PostgreSQL, the server), anything running from its temporary folder."""
    tag = f"chaos-{pid}-"
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    left = [line.split()[0] for line in netns.splitlines() if line.startswith(tag)]
    printed = [int(n) for n in re.findall(r"^(?:postgres|prefect server): pid (\d+)", out, re.M)]
    folder = re.search(r"temporary folder (\S+)", out)
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.pid in printed or (folder and folder.group(1) in cmdline) or tag in cmdline:
            left.append(f"pid {proc.pid}: {cmdline[:120]}")
    return left


def test_cluster_demo_runs_one_drill_on_two_hosts_and_leaves_nothing(tmp_path: Path) -> None:
    """Both hosts' runs complete on a PostgreSQL-backed server, each run folder sits under
    its host and records the UTS hostname, every run verifies, the drill and seal events
    reach the server, the figures are measured, and teardown leaves nothing."""
    report_path = tmp_path / "report.json"
    proc = _demo(tmp_path, "--drill", "api_kill", "--json", str(report_path))
    out, _ = proc.communicate(timeout=420)
    assert "teardown: nothing left" in out, out[-4000:]
    assert _left_behind(proc.pid, out) == []
    report = json.loads(report_path.read_text())
    assert report["states"] == {"drill-01": "COMPLETED", "drill-02": "COMPLETED"}, out[-4000:]
    runs = list(report["runs_on_disk"].values())
    assert sorted(r["hostname"] for r in runs) == ["drill-01", "drill-02"]
    assert all(r["host_folder"] == r["hostname"] and r["verifies"] for r in runs), runs
    assert "package/venv" in out and "on PostgreSQL" in out
    events = report["events"]
    assert events["chaos.drill.verdict"] == [
        "chaos.drill.drill-01.api_kill", "chaos.drill.drill-02.api_kill",
    ]  # fmt: skip
    assert len(events["chaos.evidence.sealed"]) == 2
    usage = report["usage"]
    assert usage["prefect_server"]["cpu_s"] > 0 and usage["postgres"]["peak_rss_mb"] > 0
    assert report["published"]["runs"] >= 1, report["published"]
    assert all(r["signed"] and r["log_index"] == 0 for r in runs), runs
    assert report["verify"]["ok"] and report["verify"]["runs_checked"] == 2, report["verify"]
    assert sorted(report["verify"]["checkpoints"]) == ["drill-01", "drill-02"]
    assert re.search(r"^verify \S+/store: intact \(2 run\(s\); host drill-01: size 1", out, re.M)
    assert report["site_built"], out[-4000:]
    pages = sorted(r["site_page"] for r in runs if r["on_site"])  # checked before teardown
    assert [p.split("/generated/")[1].split("/runs/")[0] for p in pages] == [
        "hosts/drill-01", "hosts/drill-02",
    ], runs  # fmt: skip
    assert re.search(r"^site: \S+/site/index.html \(built: True", out, re.M)
    assert proc.returncode == 0, out[-4000:]


def test_cluster_demo_interrupted_with_ctrl_c_tears_everything_down(tmp_path: Path) -> None:
    """SIGINT once the namespaces and PostgreSQL are up: the demo exits 130 and leaves no
    namespace, server, worker or PostgreSQL behind."""
    proc = _demo(tmp_path, "--port", "4201")
    lines: list[str] = []
    assert proc.stdout is not None

    def hosts_up() -> bool:
        line = proc.stdout.readline() if proc.stdout else ""
        lines.append(line)
        return "prefect server:" in line or proc.poll() is not None

    wait_for(hosts_up, 240, "the demo's server")
    assert proc.poll() is None, "".join(lines)
    assert _left_behind(proc.pid, "".join(lines)), "the demo should be up now"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(lines) + out
    assert "teardown: nothing left" in out
    assert _left_behind(proc.pid, "".join(lines) + out) == []
