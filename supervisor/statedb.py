"""The SQLite state DB: opening it safely, and the few queries the supervisor needs.

The schema and its migrations live in ``supervisor.migrations``; ``StateDB``
takes the migrator as an argument (the real one by default) and runs it once
on open. A file that is not SQLite, or is newer than this build knows, is
refused without being touched.

``record_state_later`` is ``record_state`` moved off a caller's critical path
(the kill's answer): the row waits in memory until ``flush`` or the next use of
the DB, whichever comes first, so every reader and writer through ``StateDB``
sees the rows complete and in order.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from supervisor import migrations
from supervisor.errors import StateDBError

log = logging.getLogger("supervisor.statedb")

_SQLITE_MAGIC = b"SQLite format 3\x00"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def check_file(path: Path) -> None:
    """Refuse a file that is not SQLite, or is newer than we know, without touching it."""
    if not path.exists():
        return
    if path.is_dir():
        raise StateDBError(f"state DB {path} is a directory; pass a file path with --db")
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise StateDBError(f"state DB {path} cannot be read: {exc}") from exc
    if head and head != _SQLITE_MAGIC:
        raise StateDBError(
            f"state DB {path} is not a SQLite database; refusing to start and leaving it"
            " untouched. Move it aside or pass another --db"
        )
    if not head:
        return
    try:
        ro = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            version = migrations.schema_version(ro)
            ro.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            ro.close()
    except sqlite3.DatabaseError as exc:
        raise StateDBError(
            f"state DB {path} is not a usable SQLite database ({exc}); refusing to start"
            " and leaving it untouched"
        ) from exc
    if version > migrations.LATEST:
        raise StateDBError(
            f"state DB {path} has schema version {version}, newer than this build knows"
            f" ({migrations.LATEST}); refusing to start and leaving it untouched. Upgrade the supervisor"
            " or pass another --db"
        )


WAL_DEADLINE_S = 10.0


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL, retrying while another process holds the DB.

    Changing the journal mode needs an exclusive lock, and SQLite answers
    "database is locked" at once, without its busy handler, when another
    connection (a second supervisor migrating the same legacy DB) holds one.
    """
    end = time.monotonic() + WAL_DEADLINE_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= end:
                raise
            time.sleep(0.01)


_Row = tuple[int, str, str, str, dict[str, Any], str]  # id, status, kind, detail, fields, time


class StateDB:
    """One connection shared by the supervisor's threads, behind a lock."""

    def __init__(self, path: Path, migrate: migrations.Migrator = migrations.migrate) -> None:
        self.path = path
        check_file(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                path, check_same_thread=False, isolation_level=None, timeout=10
            )
            self._conn.execute("PRAGMA busy_timeout=10000")
            _enable_wal(self._conn)
            self._conn.execute("PRAGMA synchronous=NORMAL")
        except (OSError, sqlite3.Error) as exc:
            raise StateDBError(f"state DB {path} cannot be opened: {exc}") from exc
        self._lock = threading.Lock()
        self._pending: list[_Row] = []  # record_state_later's rows, oldest first
        migrate(self._conn, path)

    def close(self) -> None:
        with self._lock:
            self._flush()
            self._conn.close()

    def _exec(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self._lock:
            self._flush()
            return self._conn.execute(sql, params)

    def process_id(self, name: str) -> int:
        """The row of a program (the newest if a legacy DB holds several); created if none."""
        with self._lock:
            self._flush()
            row = self._conn.execute(
                "SELECT id FROM processes WHERE name = ? ORDER BY id DESC LIMIT 1", (name,)
            ).fetchone()
            if row:
                return int(row[0])
            now = _now()
            cur = self._conn.execute(
                "INSERT INTO processes (name, status, created_at, updated_at)"
                " VALUES (?, 'stopped', ?, ?)",
                (name, now, now),
            )
            if cur.lastrowid is None:
                raise StateDBError(
                    f"state DB {self.path}: inserting the row of program {name!r} returned"
                    " no row id; check the DB file with sqlite3 and its free disk space"
                )
            return cur.lastrowid

    def record_state(
        self, process_id: int, status: str, kind: str, detail: str, **fields: Any
    ) -> None:
        """Write a program's new status and its event in one transaction."""
        with self._lock:
            self._pending.append((process_id, status, kind, detail, fields, _now()))
            self._flush()

    def record_state_later(
        self, process_id: int, status: str, kind: str, detail: str, **fields: Any
    ) -> None:
        """``record_state``, written at the next ``flush`` or use of the DB (in order)."""
        with self._lock:
            self._pending.append((process_id, status, kind, detail, fields, _now()))

    def flush(self) -> None:
        """Write the rows ``record_state_later`` holds, in one transaction."""
        with self._lock:
            try:
                self._flush()
            except sqlite3.Error as exc:
                raise StateDBError(
                    f"state DB {self.path}: writing deferred state rows failed: {exc}; check"
                    " the file's permissions and the free disk space"
                ) from exc

    def _flush(self) -> None:
        if not self._pending:
            return
        # taken first: a failed write raises to its caller and is not retried by the next
        rows, self._pending = self._pending, []
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            for process_id, status, kind, detail, fields, now in rows:
                sets = ["status = ?", "updated_at = ?"] + [f"{k} = ?" for k in fields]
                self._conn.execute(
                    f"UPDATE processes SET {', '.join(sets)} WHERE id = ?",
                    (status, now, *fields.values(), process_id),
                )
                self._conn.execute(
                    "INSERT INTO events (process_id, kind, detail, created_at) VALUES (?, ?, ?, ?)",
                    (process_id, kind, detail, now),
                )
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def events(self, limit: int) -> list[dict[str, Any]]:
        rows = self._exec(
            "SELECT e.id, e.process_id, p.name, e.kind, e.detail, e.created_at"
            " FROM events e LEFT JOIN processes p ON p.id = e.process_id"
            " ORDER BY e.id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        keys = ("id", "process_id", "program", "kind", "detail", "created_at")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def live_records(self) -> list[dict[str, Any]]:
        """Rows that say a process was running when the last supervisor stopped."""
        rows = self._exec(
            "SELECT id, name, pid, pgid, create_time, boot_id, instance FROM processes"
            " WHERE pid IS NOT NULL"
        ).fetchall()
        keys = ("id", "name", "pid", "pgid", "create_time", "boot_id", "instance")
        return [dict(zip(keys, row, strict=True)) for row in rows]
