"""Test fixtures over the one harness (``flows.drills.harness``): a real supervisor per test.

``supervisor_factory`` starts ``python -m supervisor serve`` in ``tmp_path`` with a
bearer token and a runner marker in its environment. Every process it starts
inherits that marker, so a test finds the whole tree with ``sup.workload()``
(psutil over the machine, never by asking the supervisor), and teardown kills
the supervisor and every marked process whatever happened. ``broken=(...)``
starts ``tests/broken_supervisor.py`` instead, with those parts made faulty.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from flows.drills.harness import REAL_SUPERVISOR, Supervisor, free_port, stop_all, wait_for
from flows.drills.markers import runner_marker
from tests import broken_supervisor

__all__ = ["Supervisor", "free_port", "wait_for"]

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"

T = TypeVar("T")


@pytest.fixture(autouse=True, scope="session")
def _evidence_signing_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every run a test writes is signed with a key in a temp dir, never the user's own."""
    import os

    key = tmp_path_factory.mktemp("evidence-key") / "evidence-key.pem"
    old = os.environ.get("EVIDENCE_SIGNING_KEY")
    os.environ["EVIDENCE_SIGNING_KEY"] = str(key)
    yield
    if old is None:
        os.environ.pop("EVIDENCE_SIGNING_KEY", None)
    else:
        os.environ["EVIDENCE_SIGNING_KEY"] = old


# ----- small helpers --------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
# the marks of a module that drives Debian's chromium through playwright
NEEDS_CHROMIUM = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="/usr/bin/chromium missing: `apt-get install chromium` (make test does it as root)",
    ),
]


def flows_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "flows", *args]


def run_flows(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m flows ARGS`` from the repository, output captured as text."""
    return subprocess.run(
        flows_cmd(*args), cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def observe(sample: Callable[[], T], seconds: float, interval: float = 0.02) -> list[T]:
    """Sample a value for ``seconds``: an observation window for "stays so", not a sync."""
    end = time.monotonic() + seconds
    seen = []
    while time.monotonic() < end:
        seen.append(sample())
        time.sleep(interval)
    return seen


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def write_config(
    path: Path, programs: list[dict[str, Any]], server: dict[str, Any] | None = None
) -> Path:
    """Write a supervisor TOML config with these ``[[programs]]`` tables."""
    lines = []
    if server:
        lines.append("[server]")
        lines += [f"{k} = {toml_value(v)}" for k, v in server.items()]
    for program in programs:
        lines.append("[[programs]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in program.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def demo_program(**overrides: Any) -> dict[str, Any]:
    """The demo worker (leader, two children, one grandchild) with a short stop_timeout."""
    program = {
        "name": "worker",
        "command": ["python", "-m", "supervisor.demo_worker"],
        "stop_timeout": 2.0,
        "backoff_initial": 0.05,
    }
    program.update(overrides)
    return program


def fixture_program(fixture: str, **overrides: Any) -> dict[str, Any]:
    """A hostile fixture from tests/fixtures as a program named after it."""
    program = {
        "name": fixture,
        "command": ["python", str(FIXTURES / f"{fixture}.py")],
        "stop_timeout": 1.0,
        "backoff_initial": 0.05,
    }
    program.update(overrides)
    return program


def _launch(
    workdir: Path,
    marker: str,
    programs: list[dict[str, Any]],
    *,
    server: dict[str, Any] | None = None,
    name: str = "supervisor",
    broken: tuple[str, ...] = (),
    **options: Any,
) -> Supervisor:
    """Write the config and start a supervisor; ``broken`` names parts to replace by faulty ones."""
    config = write_config(workdir / f"{name}.toml", programs, server)
    # a broken supervisor (tests/broken_supervisor.py) shows that a check can fail
    command = broken_supervisor.command(*broken) if broken else REAL_SUPERVISOR
    return Supervisor.launch(workdir, marker, config, command=command, name=name, **options)


@contextmanager
def supervisor_launcher(workdir: Path) -> Iterator[Callable[..., Supervisor]]:
    """A launcher whose supervisors share one marker; everything marked dies at exit."""
    marker = runner_marker()
    started: list[Supervisor] = []

    def launch(programs: list[dict[str, Any]] | None = None, **kwargs: Any) -> Supervisor:
        sup = _launch(workdir, marker, programs or [demo_program()], **kwargs)
        started.append(sup)
        return sup

    try:
        yield launch
    finally:
        stop_all(started, marker)


@pytest.fixture
def supervisor_factory(tmp_path: Path) -> Iterator[Callable[..., Supervisor]]:
    """``launch(programs, **options)`` starts a real supervisor; teardown kills it all."""
    with supervisor_launcher(tmp_path) as launch:
        yield launch


@pytest.fixture
def supervisor(supervisor_factory: Callable[..., Supervisor]) -> Supervisor:
    """A healthy supervisor running the demo worker."""
    return supervisor_factory([demo_program()])
