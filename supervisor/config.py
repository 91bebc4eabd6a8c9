"""The TOML config: ``[server]`` and ``[[programs]]`` (``supervisor.example.toml`` shows both).

Owns parsing and validation; every error names the file, the key and the value.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import signal
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SERVER_KEYS = {"host", "port", "db", "token_file", "containment"}
CONTAINMENTS = ("auto", "cgroup", "session")
_PROGRAM_KEYS = {
    "name",
    "command",
    "autostart",
    "autorestart",
    "stop_signal",
    "stop_timeout",
    "env",
    "directory",
    "start_seconds",
    "backoff_initial",
    "backoff_max",
    "max_quick_failures",
}


@dataclass(frozen=True)
class ProgramConfig:
    name: str
    command: tuple[str, ...]
    autostart: bool = True
    autorestart: bool = True
    stop_signal: signal.Signals = signal.SIGTERM
    stop_timeout: float = 5.0
    env: dict[str, str] = field(default_factory=dict)
    directory: str | None = None
    start_seconds: float = 1.0  # up this long counts as a successful start
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    max_quick_failures: int = 5  # quick failures in a row before FATAL


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    db: Path = Path("supervisor.db")
    token_file: Path | None = None
    # how programs are held together: "cgroup", "session", or "auto" (cgroup when usable)
    containment: str = "auto"


@dataclass(frozen=True)
class Config:
    path: Path | None
    server: ServerConfig
    programs: tuple[ProgramConfig, ...]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load(path: Path) -> Config:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config: file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config: cannot read {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config: {path} is not valid TOML: {exc}") from exc
    return parse(raw, path)


def parse(raw: dict[str, Any], path: Path | None = None) -> Config:
    where = f"config {path}" if path else "config"
    base = path.parent if path else Path.cwd()
    unknown = set(raw) - {"server", "programs"}
    if unknown:
        raise ConfigError(f"{where}: unknown top-level key(s) {sorted(unknown)}")
    server = _parse_server(raw.get("server", {}), base, where)
    programs_raw = raw.get("programs", [])
    if not isinstance(programs_raw, list) or not programs_raw:
        raise ConfigError(f"{where}: at least one [[programs]] table is required")
    programs = tuple(_parse_program(p, i, base, where) for i, p in enumerate(programs_raw))
    names = [p.name for p in programs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{where}: program names must be unique, repeated: {dupes}")
    return Config(path=path, server=server, programs=programs)


def _parse_server(raw: Any, base: Path, where: str) -> ServerConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: [server] must be a table")
    unknown = set(raw) - _SERVER_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) in [server]: {sorted(unknown)}")
    host = raw.get("host", "127.0.0.1")
    if not isinstance(host, str) or not host:
        raise ConfigError(f"{where}: server.host must be a string, got {host!r}")
    port = raw.get("port", 8765)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ConfigError(f"{where}: server.port must be an integer 0-65535, got {port!r}")
    db = raw.get("db", "supervisor.db")
    if not isinstance(db, str) or not db:
        raise ConfigError(f"{where}: server.db must be a file path, got {db!r}")
    token_file = raw.get("token_file")
    if token_file is not None and (not isinstance(token_file, str) or not token_file):
        raise ConfigError(f"{where}: server.token_file must be a file path, got {token_file!r}")
    containment = raw.get("containment", "auto")
    if containment not in CONTAINMENTS:
        raise ConfigError(
            f"{where}: server.containment must be one of"
            f" {', '.join(repr(c) for c in CONTAINMENTS)}, got {containment!r}"
        )
    return ServerConfig(
        host=host,
        port=port,
        db=base / db,
        token_file=base / token_file if token_file else None,
        containment=containment,
    )


def _parse_program(raw: Any, i: int, base: Path, where: str) -> ProgramConfig:
    at = f"{where}: programs[{i}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{at} must be a table")
    unknown = set(raw) - _PROGRAM_KEYS
    if unknown:
        raise ConfigError(f"{at}: unknown key(s) {sorted(unknown)}")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{at}.name must be 1-64 letters, digits, '_', '.', '-', got {name!r}")
    at = f"{where} (program {name!r}): programs[{i}]"
    command = raw.get("command")
    if isinstance(command, str):
        command = shlex.split(command)
    if (
        not isinstance(command, list)
        or not command
        or not all(isinstance(c, str) and c for c in command)
    ):
        raise ConfigError(f"{at}.command must be a non-empty list of strings, got {command!r}")
    kwargs: dict[str, Any] = {}
    for key in ("autostart", "autorestart"):
        if key in raw:
            if not isinstance(raw[key], bool):
                raise ConfigError(f"{at}.{key} must be true or false, got {raw[key]!r}")
            kwargs[key] = raw[key]
    for key in ("stop_timeout", "start_seconds", "backoff_initial", "backoff_max"):
        if key in raw:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"{at}.{key} must be a positive number of seconds, got {value!r}")
            kwargs[key] = float(value)
    if "max_quick_failures" in raw:
        value = raw["max_quick_failures"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{at}.max_quick_failures must be an integer >= 1, got {value!r}")
        kwargs["max_quick_failures"] = value
    if "stop_signal" in raw:
        kwargs["stop_signal"] = _parse_signal(raw["stop_signal"], at)
    env = raw.get("env", {})
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise ConfigError(f"{at}.env must be a table of strings, got {env!r}")
    directory = raw.get("directory")
    if directory is not None:
        if not isinstance(directory, str):
            raise ConfigError(f"{at}.directory must be a path, got {directory!r}")
        directory = str(base / directory)
    return ProgramConfig(
        name=name, command=tuple(command), env=dict(env), directory=directory, **kwargs
    )


def _parse_signal(value: Any, at: str) -> signal.Signals:
    if isinstance(value, str):
        key = value.upper()
        key = key if key.startswith("SIG") else "SIG" + key
        try:
            return signal.Signals[key]
        except KeyError:
            pass
    raise ConfigError(f'{at}.stop_signal must be a signal name like "TERM", got {value!r}')
