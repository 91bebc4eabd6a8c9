"""The shipped supervisor has no off-switch: only test code can break a guarantee."""

from __future__ import annotations

import importlib.util
import re
import signal
import subprocess
from pathlib import Path

import httpx

import supervisor
from tests import broken_supervisor
from tests.conftest import demo_program, wait_for

DEMO_TREE = 4
OLD_SWITCHES = "no_auth,kill_500,kill_drop,no_keeper"
PACKAGE = Path(supervisor.__file__).resolve().parent


def test_the_old_fault_variable_changes_nothing(supervisor_factory):
    """SUPERVISOR_FAULTS set: still 401 without a token, 200 on kill, no orphan after SIGKILL."""
    sup = supervisor_factory([demo_program()], env={"SUPERVISOR_FAULTS": OLD_SWITCHES})
    sup.wait_workload(DEMO_TREE)
    for path in ("/processes", "/events"):
        assert httpx.get(sup.base_url + path, timeout=10).status_code == 401, path
    killed = sup.client.post("/process/kill")
    assert killed.status_code == 200, killed.text
    assert killed.json()["survivors"] == []
    wait_for(lambda: not sup.workload(), 5, "the killed tree to be gone")
    assert not sup.exited() and sup.healthy()
    assert sup.client.post("/process/start").status_code == 200
    tree = sup.wait_workload(DEMO_TREE)
    sup.signal(signal.SIGKILL)
    sup.wait_exit(timeout=5)
    # the keeper is there whatever the variable says: it sweeps the tree the SIGKILL left
    wait_for(lambda: not sup.workload(), 5, f"no orphan of {[p.pid for p in tree]}")
    assert "broken_parts" not in sup.log() and "faults_active" not in sup.log()


def test_the_package_holds_no_fault_switch():
    """No supervisor._faults module, and no source under supervisor/ names SUPERVISOR_FAULTS."""
    assert importlib.util.find_spec("supervisor._faults") is None
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 10, sources  # the scan below looked at the real package
    read: set[str] = set()
    for source in sources:
        text = source.read_text(encoding="utf-8")
        assert "SUPERVISOR_FAULTS" not in text, source
        assert "_faults" not in text, source
        assert "getenv" not in text and "os.environ[" not in text, source
        read |= set(re.findall(r"os\.environ\.get\(\s*[\"']([^\"']+)", text))
    # the token is the one setting the supervisor takes from its environment
    assert read == {"SUPERVISOR_TOKEN"}


def test_broken_entry_point_refuses_unknown_parts(tmp_path):
    """An unknown --break name: exit 2 and a message listing every known name."""
    out = subprocess.run(
        [*broken_supervisor.command("no_keeper", "no_such_part"), "serve", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert "no_such_part" in out.stderr
    assert all(name in out.stderr for name in broken_supervisor.KNOWN), out.stderr


def test_broken_entry_point_runs_the_normal_serve_help_from_anywhere(tmp_path):
    """``tests/broken_supervisor.py --break no_auth serve --help`` runs outside the checkout."""
    out = subprocess.run(
        [*broken_supervisor.command("no_auth"), "serve", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "--config FILE" in out.stdout and "exit codes:" in out.stdout


def test_a_broken_part_is_announced_and_breaks_only_itself(supervisor_factory):
    """--break no_auth logs event=broken_parts and opens the routes; the body limit stays."""
    sup = supervisor_factory([demo_program()], broken=("no_auth",))
    assert "event=broken_parts parts=['no_auth'] (test-only; evidence is void)" in sup.log()
    assert httpx.get(sup.base_url + "/processes", timeout=10).status_code == 200
    big = httpx.post(sup.base_url + "/process/kill", content=b"a" * (64 * 1024 + 1), timeout=10)
    assert big.status_code == 413
