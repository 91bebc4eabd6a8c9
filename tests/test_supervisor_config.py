"""Config errors name the key path and the value, and the CLI turns them into exit 2."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.config import ProgramConfig, load, parse
from supervisor.errors import ConfigError
from tests.conftest import REPO, write_config


def _program(**overrides):
    return {"name": "worker", "command": ["python", "-m", "supervisor.demo_worker"], **overrides}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"programs": [_program(stop_timeout=-1)]},
            "programs[0].stop_timeout must be a positive number of seconds, got -1",
        ),
        ({"programs": [_program(stop_timeout=0)]}, "programs[0].stop_timeout"),
        (
            {"programs": [_program(), _program(name="b", backoff_max="5")]},
            "programs[1].backoff_max",
        ),
        ({"programs": [_program(stop_signal="NOPE")]}, "programs[0].stop_signal"),
        ({"programs": [_program(command=[])]}, "programs[0].command must be a non-empty list"),
        ({"programs": [_program(autostart="yes")]}, "programs[0].autostart must be true or false"),
        ({"programs": [_program(max_quick_failures=0)]}, "programs[0].max_quick_failures"),
        ({"programs": [_program(env={"A": 1})]}, "programs[0].env must be a table of strings"),
        ({"programs": [_program(colour="red")]}, "unknown key(s) ['colour']"),
        ({"programs": [_program(name="bad name")]}, "programs[0].name must be"),
        ({"programs": [_program(), _program()]}, "program names must be unique"),
        ({"programs": []}, "at least one [[programs]] table is required"),
        ({}, "at least one [[programs]] table is required"),
        ({"server": {"port": 70000}, "programs": [_program()]}, "server.port"),
        ({"server": {"hots": "x"}, "programs": [_program()]}, "unknown key(s) in [server]"),
        ({"servers": {}, "programs": [_program()]}, "unknown top-level key(s)"),
        (
            {"server": {"containment": "systemd"}, "programs": [_program()]},
            "server.containment must be one of 'auto', 'cgroup', 'session', got 'systemd'",
        ),
    ],
)
def test_invalid_config_message_names_key_and_value(raw, expected):
    """Each invalid setting raises ConfigError naming its key path (and value)."""
    with pytest.raises(ConfigError) as info:
        parse(raw)
    assert expected in str(info.value)


def test_program_error_also_names_the_program():
    """A program's error carries its name, so a long config is easy to fix."""
    with pytest.raises(ConfigError, match=r"program 'worker'\): programs\[0\]\.stop_timeout"):
        parse({"programs": [_program(stop_timeout=-3)]})


def test_valid_config_fills_defaults(tmp_path):
    """A minimal program gets the documented defaults; paths resolve beside the config."""
    path = write_config(
        tmp_path / "c.toml",
        [{"name": "w", "command": "python -m supervisor.demo_worker", "stop_signal": "int"}],
        server={"db": "state/s.db"},
    )
    cfg = load(path)
    program = cfg.programs[0]
    assert program.command == ("python", "-m", "supervisor.demo_worker")
    assert program.stop_signal is signal.SIGINT
    assert program.stop_timeout == ProgramConfig.stop_timeout == 5.0
    assert cfg.server.host == "127.0.0.1"
    assert cfg.server.db == tmp_path / "state" / "s.db"


def test_example_config_is_valid():
    """supervisor.example.toml, the documented starting point, loads."""
    cfg = load(REPO / "supervisor.example.toml")
    assert [p.name for p in cfg.programs] == ["worker"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist"),
        ("[[programs]\nname=", "is not valid TOML"),
        ('[[programs]]\nname = "w"\ncommand = ["x"]\nstop_timeout = -2\n', "got -2"),
    ],
    ids=["missing", "not_toml", "negative_stop_timeout"],
)
def test_cli_refuses_bad_config_with_exit_2(tmp_path: Path, content, expected):
    """``serve`` with a bad config exits 2 with one line naming the file; no traceback."""
    path = tmp_path / "bad.toml"
    if content is not None:
        path.write_text(content)
    proc = subprocess.run(
        [sys.executable, "-m", "supervisor", "serve", "--config", str(path), "--port", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2, proc.stderr
    assert str(path) in proc.stderr and expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "supervisor.db").exists()
