"""The SQLite state DB: schema versions, migrations, and the few queries we need.

Schema history (``PRAGMA user_version``):

- 0: the legacy build: ``processes(id, name, pid, status)`` and
  ``events(id, process_id, kind, detail)``, no ``created_at`` anywhere; some
  old DBs hold only one of the two tables.
- 1: ``created_at`` on both tables (added, then backfilled: SQLite cannot
  ``ADD COLUMN`` with a ``CURRENT_TIMESTAMP`` default).
- 2: process identity for reconciliation: ``pgid``, ``create_time``,
  ``boot_id``, ``instance``, ``exit_code``, ``exit_signal``, ``updated_at``.

Each migration runs in one ``BEGIN IMMEDIATE`` transaction and re-checks
``PRAGMA table_info`` inside it, because two processes may open one DB at once.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from supervisor import _faults
from supervisor.errors import StateDBError

log = logging.getLogger("supervisor.statedb")

_SQLITE_MAGIC = b"SQLite format 3\x00"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _migrate_1(conn: sqlite3.Connection) -> None:
    tables = _tables(conn)
    if "processes" not in tables:
        conn.execute(
            "CREATE TABLE processes (id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " pid INTEGER, status TEXT)"
        )
    if "events" not in tables:
        conn.execute(
            "CREATE TABLE events (id INTEGER PRIMARY KEY, process_id INTEGER,"
            " kind TEXT, detail TEXT)"
        )
    if _faults.active("legacy_migration_error"):
        # the old build's bug, reproduced on request so the legacy_db drill can fail
        conn.execute("SELECT created_at FROM processes")
    for table in ("processes", "events"):
        if "created_at" not in _columns(conn, table):
            conn.execute(f"ALTER TABLE {table} ADD COLUMN created_at TEXT")
        conn.execute(f"UPDATE {table} SET created_at = ? WHERE created_at IS NULL", (_now(),))


def _migrate_2(conn: sqlite3.Connection) -> None:
    wanted = {
        "pgid": "INTEGER",
        "create_time": "REAL",
        "boot_id": "TEXT",
        "instance": "TEXT",
        "exit_code": "INTEGER",
        "exit_signal": "INTEGER",
        "updated_at": "TEXT",
    }
    have = _columns(conn, "processes")
    for column, kind in wanted.items():
        if column not in have:
            conn.execute(f"ALTER TABLE processes ADD COLUMN {column} {kind}")
    conn.execute("CREATE INDEX IF NOT EXISTS processes_name ON processes(name)")
    conn.execute("CREATE INDEX IF NOT EXISTS events_process ON events(process_id)")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_1, _migrate_2]
LATEST = len(MIGRATIONS)


def _check_file(path: Path) -> None:
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
            version = ro.execute("PRAGMA user_version").fetchone()[0]
            ro.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            ro.close()
    except sqlite3.DatabaseError as exc:
        raise StateDBError(
            f"state DB {path} is not a usable SQLite database ({exc}); refusing to start"
            " and leaving it untouched"
        ) from exc
    if version > LATEST:
        raise StateDBError(
            f"state DB {path} has schema version {version}, newer than this build knows"
            f" ({LATEST}); refusing to start and leaving it untouched. Upgrade the supervisor"
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


class StateDB:
    """One connection shared by the supervisor's threads, behind a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        _check_file(path)
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
        self.migrate()

    def migrate(self) -> None:
        start = self._conn.execute("PRAGMA user_version").fetchone()[0]
        for version in range(start + 1, LATEST + 1):
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                current = self._conn.execute("PRAGMA user_version").fetchone()[0]
                if current >= version:  # another process migrated it meanwhile
                    self._conn.execute("COMMIT")
                    continue
                MIGRATIONS[version - 1](self._conn)
                self._conn.execute(f"PRAGMA user_version = {version}")
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if _faults.active("legacy_migration_error"):
                    log.error("Failed to initialize database: %s", exc)
                    return
                raise StateDBError(
                    f"state DB {self.path}: migration to schema {version} failed: {exc};"
                    " the DB was left as it was"
                ) from exc
            log.info("event=db_migrated path=%s version=%d", self.path, version)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _exec(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._conn.execute(sql, params)

    def process_id(self, name: str) -> int:
        """The row of a program (the newest if a legacy DB holds several); created if none."""
        with self._lock:
            row = self._conn.execute(
                "SELECT id FROM processes WHERE name = ? ORDER BY id DESC LIMIT 1", (name,)
            ).fetchone()
            if row:
                return row[0]
            now = _now()
            cur = self._conn.execute(
                "INSERT INTO processes (name, status, created_at, updated_at)"
                " VALUES (?, 'stopped', ?, ?)",
                (name, now, now),
            )
            return cur.lastrowid

    def record_state(
        self, process_id: int, status: str, kind: str, detail: str, **fields: Any
    ) -> None:
        """Write a program's new status and its event in one transaction."""
        now = _now()
        sets = ["status = ?", "updated_at = ?"] + [f"{k} = ?" for k in fields]
        values = (status, now, *fields.values(), process_id)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(f"UPDATE processes SET {', '.join(sets)} WHERE id = ?", values)
                self._conn.execute(
                    "INSERT INTO events (process_id, kind, detail, created_at) VALUES (?, ?, ?, ?)",
                    (process_id, kind, detail, now),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def add_event(self, process_id: int | None, kind: str, detail: str) -> None:
        self._exec(
            "INSERT INTO events (process_id, kind, detail, created_at) VALUES (?, ?, ?, ?)",
            (process_id, kind, detail, _now()),
        )

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

    def counts(self) -> dict[str, int]:
        return {
            t: self._exec(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("processes", "events")
        }


def ensure_private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
