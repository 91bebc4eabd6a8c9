"""The state DB's schema history and the migrations between versions.

Schema history (``PRAGMA user_version``):

- 0: the legacy build: ``processes(id, name, pid, status)`` and
  ``events(id, process_id, kind, detail)``, no ``created_at`` anywhere; some
  old DBs hold only one of the two tables. ``PROCESSES_V0`` and ``EVENTS_V0``
  are that schema, written once here for the migration, the test fixtures and
  the ``legacy_db`` drill.
- 1: ``created_at`` on both tables (added, then backfilled: SQLite cannot
  ``ADD COLUMN`` with a ``CURRENT_TIMESTAMP`` default).
- 2: process identity for reconciliation: ``pgid``, ``create_time``,
  ``boot_id``, ``instance``, ``exit_code``, ``exit_signal``, ``updated_at``.

Each step runs in one ``BEGIN IMMEDIATE`` transaction and re-checks
``PRAGMA user_version`` inside it, because two processes may open one DB at once.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from supervisor.errors import StateDBError

log = logging.getLogger("supervisor.statedb")

PROCESSES_V0 = (
    "CREATE TABLE processes (id INTEGER PRIMARY KEY, name TEXT NOT NULL, pid INTEGER, status TEXT)"
)
EVENTS_V0 = (
    "CREATE TABLE events (id INTEGER PRIMARY KEY, process_id INTEGER, kind TEXT, detail TEXT)"
)
#: the whole v0 schema as one script, ``user_version`` included
V0_SCHEMA = f"{PROCESSES_V0};\n{EVENTS_V0};\nPRAGMA user_version = 0;\n"

#: brings an open connection's DB to ``LATEST``; raises ``StateDBError`` naming ``path``
Migrator = Callable[[sqlite3.Connection, Path], None]


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {str(row[1]) for row in conn.execute(f"PRAGMA table_info({table})")}


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def create_missing_v0_tables(conn: sqlite3.Connection) -> None:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "processes" not in tables:
        conn.execute(PROCESSES_V0)
    if "events" not in tables:
        conn.execute(EVENTS_V0)


def _migrate_1(conn: sqlite3.Connection) -> None:
    create_missing_v0_tables(conn)
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    for table in ("processes", "events"):
        if "created_at" not in _columns(conn, table):
            conn.execute(f"ALTER TABLE {table} ADD COLUMN created_at TEXT")
        conn.execute(f"UPDATE {table} SET created_at = ? WHERE created_at IS NULL", (now,))


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


STEPS: list[Callable[[sqlite3.Connection], None]] = [_migrate_1, _migrate_2]
LATEST = len(STEPS)


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Run every step above the DB's version; a failed step is rolled back and raised."""
    for version in range(schema_version(conn) + 1, LATEST + 1):
        try:
            conn.execute("BEGIN IMMEDIATE")
            if schema_version(conn) >= version:  # another process migrated it meanwhile
                conn.execute("COMMIT")
                continue
            STEPS[version - 1](conn)
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StateDBError(
                f"state DB {path}: migration to schema {version} failed: {exc};"
                " the DB was left as it was"
            ) from exc
        log.info("event=db_migrated path=%s version=%d", path, version)
