"""The state DB: legacy v0 files open without a warning and keep every row; bad files are refused."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor import migrations
from supervisor.migrations import LATEST
from supervisor.statedb import StateDB
from tests.conftest import FIXTURES, REPO, demo_program

LEGACY = ["legacy_v0.db", "legacy_v0_processes_only.db"]
_BAD_LINE = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|Traceback|Failed to initialize database")


def _rows(path: Path, table: str, columns: str = "*") -> list[tuple]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(f"SELECT {columns} FROM {table} ORDER BY id").fetchall()
    finally:
        conn.close()


def _tables(path: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


def _db_problems(log: str) -> list[str]:
    return [line for line in log.splitlines() if _BAD_LINE.search(line)]


def _columns(path: Path, table: str) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
    finally:
        conn.close()


def _legacy_rows(path: Path) -> dict[str, list[tuple]]:
    return {
        t: _rows(path, t, "id, name" if t == "processes" else "id, kind, detail")
        for t in _tables(path)
    }


def _migration_problems(db: Path, before: dict[str, list[tuple]]) -> list[str]:
    """What is wrong with a legacy DB a supervisor has opened; [] when it was migrated well."""
    problems = []
    for table, rows in before.items():
        columns = "id, name" if table == "processes" else "id, kind, detail"
        if _rows(db, table, columns)[: len(rows)] != rows:
            problems.append(f"{table}: legacy rows changed")
        if "created_at" not in _columns(db, table):
            problems.append(f"{table}: no created_at column")
        elif not all(created for _, created in _rows(db, table, "id, created_at")):
            problems.append(f"{table}: rows without created_at")
    if _tables(db) != {"processes", "events"}:
        problems.append(f"tables {sorted(_tables(db))}")
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()
    if version != LATEST:
        problems.append(f"user_version {version}, want {LATEST}")
    return problems


def test_legacy_fixtures_are_v0():
    """The checked-in fixtures hold the v0 schema: user_version 0, no created_at, rows in each."""
    for name in LEGACY:
        path = FIXTURES / name
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
            for table in _tables(path):
                columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
                assert "created_at" not in columns
                assert len(_rows(path, table)) >= 4
        finally:
            conn.close()
    assert _tables(FIXTURES / "legacy_v0.db") == {"processes", "events"}
    assert _tables(FIXTURES / "legacy_v0_processes_only.db") == {"processes"}


def test_legacy_fixtures_hold_the_one_v0_schema():
    """The fixtures' tables are exactly the v0 schema the migrations module writes down."""
    conn = sqlite3.connect(f"file:{FIXTURES / 'legacy_v0.db'}?mode=ro", uri=True)
    try:
        sql = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type='table'"))
    finally:
        conn.close()
    assert sql == {"processes": migrations.PROCESSES_V0, "events": migrations.EVENTS_V0}


@pytest.mark.parametrize("fixture", LEGACY)
def test_legacy_db_opens_without_warning_and_keeps_every_row(supervisor_factory, tmp_path, fixture):
    """The supervisor starts on a v0 DB, logs no warning or DB error, keeps rows, backfills."""
    source = FIXTURES / fixture
    db = tmp_path / "legacy.db"
    shutil.copyfile(source, db)
    before = _legacy_rows(source)
    sup = supervisor_factory([demo_program()], db=db)
    sup.wait_workload(4)

    assert _migration_problems(db, before) == []
    # the two "worker" rows stay; the supervisor carries on in the newest one
    workers = [r for r in _rows(db, "processes", "id, name, status") if r[1] == "worker"]
    assert [r[0] for r in workers] == [1, 2]
    assert workers[1][2] in ("starting", "running")
    assert sup.events()[0]["program"] == "worker"
    assert _db_problems(sup.log()) == []


def test_legacy_migration_failure_would_be_caught(supervisor_factory, tmp_path):
    """Against the old build's migration bug the migration checks fail: v0 schema, no created_at."""
    db = tmp_path / "legacy.db"
    shutil.copyfile(FIXTURES / "legacy_v0.db", db)
    before = _legacy_rows(db)
    sup = supervisor_factory(
        [demo_program()], db=db, broken=("legacy_migration_error",), wait_healthy=False
    )
    # an unmigrated DB lacks the columns the start needs: the start fails (exit 1)
    assert sup.wait_exit(timeout=20) == 1, sup.log()
    assert sorted(_migration_problems(db, before)) == [
        "events: no created_at column",
        "processes: no created_at column",
        f"user_version 0, want {LATEST}",
    ]
    assert sup.workload() == []


def test_two_processes_migrating_one_legacy_db_keep_every_row(tmp_path):
    """Two processes opening one v0 DB at once both succeed and migrate it exactly once."""
    db = tmp_path / "legacy.db"
    shutil.copyfile(FIXTURES / "legacy_v0.db", db)
    code = (
        "import sys; from pathlib import Path; from supervisor.statedb import StateDB;"
        " StateDB(Path(sys.argv[1])).close()"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(db)], cwd=REPO, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err.decode()
    assert len(_rows(db, "processes")) == 4
    assert len(_rows(db, "events")) == 5
    columns = [r[1] for r in sqlite3.connect(db).execute("PRAGMA table_info(processes)")]
    assert columns.count("created_at") == 1


def test_state_db_reopen_is_a_no_op(tmp_path):
    """Opening a current DB again runs no migration and keeps its rows."""
    db = tmp_path / "state.db"
    first = StateDB(db)
    pid = first.process_id("worker")
    first.record_state(pid, "stopped", "note", "hello")
    first.close()
    second = StateDB(db)
    try:
        assert second.process_id("worker") == pid
        assert [(e["program"], e["kind"]) for e in second.events(10)] == [("worker", "note")]
    finally:
        second.close()
    assert (len(_rows(db, "processes")), len(_rows(db, "events"))) == (1, 1)


def test_held_rows_are_written_before_any_other_use_of_the_db(tmp_path):
    """record_state_later holds a row; the next read or write of the DB writes it first, in
    order, and close writes whatever is still held."""
    path = tmp_path / "state.db"
    db = StateDB(path)
    pid = db.process_id("worker")
    db.record_state_later(pid, "stopping", "stopping", "kill requested")
    db.record_state_later(pid, "stopped", "stopped", "killed by SIGTERM", pid=None)
    assert _rows(path, "events") == [], "a held row was written before it was due"
    assert [e["kind"] for e in db.events(10)] == ["stopped", "stopping"]
    db.record_state_later(pid, "stopping", "stopping", "kill requested")
    db.record_state(pid, "starting", "started", "pid 42", pid=42)
    db.record_state_later(pid, "stopped", "stopped", "supervisor shutdown", pid=None)
    db.close()
    kinds = [r[0] for r in _rows(path, "events", "kind")]
    assert kinds == ["stopping", "stopped", "stopping", "started", "stopped"]
    assert _rows(path, "processes", "status, pid") == [("stopped", None)]


def _write_text(path: Path) -> None:
    path.write_text("this is a text file, not a state database\n" * 3)


def _write_future(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE processes (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()


def _write_corrupt(path: Path) -> None:
    path.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 16)


@pytest.mark.parametrize(
    ("writer", "message"),
    [
        (_write_text, "is not a SQLite database"),
        (_write_future, "schema version 99, newer than this build knows"),
        (_write_corrupt, "is not a usable SQLite database"),
    ],
    ids=["text", "user_version_99", "corrupt"],
)
def test_unusable_db_is_refused_and_left_untouched(supervisor_factory, tmp_path, writer, message):
    """Not SQLite, newer than known, or corrupt: exit 2, one message naming the file, bytes same."""
    db = tmp_path / "bad.db"
    writer(db)
    before = db.read_bytes()
    sup = supervisor_factory([demo_program()], db=db, wait_healthy=False)
    assert sup.wait_exit(timeout=20) == 2
    log = sup.log()
    assert str(db) in log and message in log, log
    assert "Traceback" not in log
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("bad.db")) == ["bad.db"]
    assert sup.workload() == []
