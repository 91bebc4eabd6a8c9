"""One owner per state DB: an exclusive ``flock`` on ``<db>.lock``, held for the whole life.

``DBOwner.acquire`` takes the lock before the DB is opened and before any
process is touched; a second supervisor on the same DB gets ``DBInUse`` (exit
status 2) naming the owner's pid and address, read from the lock file the owner
wrote. The kernel drops the lock when the owner dies, however it dies, so a
free lock means the previous owner is really gone: only then may the new one
reconcile what the DB recorded.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from pathlib import Path

from supervisor.errors import DBInUse, StateDBError

log = logging.getLogger("supervisor.owner")


def lock_path(db: Path) -> Path:
    return db.with_name(db.name + ".lock")


class DBOwner:
    """The lock that makes this supervisor the one owner of a state DB."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.path = lock_path(db)
        self._fd = -1

    def acquire(self) -> None:
        """Take the lock or raise ``DBInUse``; never waits."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateDBError(
                f"state DB lock {self.path} cannot be created: {exc.strerror};"
                f" make {self.path.parent} a writable folder, or pass another --db"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            raise DBInUse(self.db, owner.get("pid"), owner.get("url")) from None
        self._fd = fd
        self._write({"pid": os.getpid(), "url": None})

    def announce(self, url: str) -> None:
        """Record the address we listen on, for the message a second supervisor prints."""
        self._write({"pid": os.getpid(), "url": url})

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = -1

    def _write(self, owner: dict[str, object]) -> None:
        data = json.dumps(owner).encode() + b"\n"
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)


def _read_owner(fd: int) -> dict[str, object]:
    try:
        raw = os.pread(fd, 4096, 0)
        owner = json.loads(raw) if raw.strip() else {}
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}
