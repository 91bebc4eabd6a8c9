"""Where the bearer token comes from, and how it is checked.

``Token.allows`` is the one check every protected route makes (``supervisor.api``).
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from supervisor.errors import ConfigError

log = logging.getLogger("supervisor.auth")


@dataclass(frozen=True)
class Token:
    value: str
    source: str  # "env", "token_file", "generated"

    @property
    def explicit(self) -> bool:
        return self.source != "generated"

    def allows(self, presented: str | None) -> bool:
        """True when ``presented`` (the bearer credential, None if there was none) is ours."""
        if presented is None:
            return False
        # constant time: the answer's timing must not reveal how much of a guess was right
        return hmac.compare_digest(presented.encode(), self.value.encode())


def _read(path: Path, what: str) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc}") from exc
    if len(value) < 16:
        raise ConfigError(
            f"{what} {path} holds a token shorter than 16 characters; use a longer one"
        )
    return value


def resolve(token_file: Path | None, db_path: Path) -> Token:
    """``SUPERVISOR_TOKEN``, else the configured token file, else one generated beside the DB."""
    env = os.environ.get("SUPERVISOR_TOKEN")
    if env:
        if len(env) < 16:
            raise ConfigError("SUPERVISOR_TOKEN is shorter than 16 characters; use a longer one")
        return Token(env, "env")
    if token_file is not None:
        return Token(_read(token_file, "server.token_file"), "token_file")
    path = db_path.parent / f"{db_path.name}.token"
    if path.exists():
        value = _read(path, "generated token file")
    else:
        value = secrets.token_urlsafe(32)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(value + "\n")
        except OSError as exc:
            raise ConfigError(
                f"cannot write the generated token file {path}: {exc.strerror}; make its folder"
                " writable, or set SUPERVISOR_TOKEN or server.token_file"
            ) from exc
    os.chmod(path, 0o600)
    log.info("event=token_generated path=%s (read it from there; it is never logged)", path)
    return Token(value, "generated")
