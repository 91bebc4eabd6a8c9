"""check_executable fails exactly as exec would, so a missing command still fails a start.

Under cgroup containment the leader's first image is ``sh``, which waits until the
supervisor has put it in the program's cgroup and then execs the program; a failed
exec there is only an exit status, and ``sh`` runs a file without ``#!`` as a script. The check
runs first and must raise what ``subprocess.Popen`` itself raises for the same
command, which each case here compares against a real ``Popen`` call.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from supervisor.program import check_executable


def _popen_error(argv0: str, env: dict[str, str], cwd: str) -> OSError | None:
    try:
        proc = subprocess.Popen([argv0], env=env, cwd=cwd, stdout=subprocess.DEVNULL)
    except OSError as exc:
        return exc
    proc.kill()
    proc.wait()
    return None


def _check_error(argv0: str, env: dict[str, str], cwd: str) -> OSError | None:
    try:
        check_executable(argv0, env, cwd)
    except OSError as exc:
        return exc
    return None


@pytest.fixture
def place(tmp_path: Path) -> tuple[dict[str, str], str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    runnable = bin_dir / "runnable"
    runnable.write_text("#!/bin/sh\nsleep 5\n")
    runnable.chmod(0o755)
    (bin_dir / "not-executable").write_text("#!/bin/sh\n")
    no_shebang = bin_dir / "no-shebang"
    no_shebang.write_text("echo run by sh\n")
    no_shebang.chmod(0o755)
    (bin_dir / "a-directory").mkdir()
    return {"PATH": f"{bin_dir}:/usr/bin:/bin"}, str(tmp_path)


CASES = [
    "/nonexistent/bin/ghost-program",
    "ghost-program-nowhere-on-path",
    "runnable",
    "bin/runnable",
    "./bin/runnable",
    "bin/not-executable",
    "not-executable",
    "bin/a-directory",
    "a-directory",
    "bin/no-shebang",
    "no-shebang",
    "sleep",
]


@pytest.mark.parametrize("argv0", CASES)
def test_check_fails_like_exec(place, argv0):
    """Same exception type and message as Popen for the same command, env and cwd."""
    env, cwd = place
    expected, got = _popen_error(argv0, env, cwd), _check_error(argv0, env, cwd)
    assert type(got) is type(expected), (got, expected)
    assert str(got) == str(expected)


def test_a_missing_command_names_itself(place):
    """The message carries the command as configured, for the 409 and the log line."""
    env, cwd = place
    with pytest.raises(FileNotFoundError, match="ghost-program"):
        check_executable("/nonexistent/bin/ghost-program", env, cwd)
