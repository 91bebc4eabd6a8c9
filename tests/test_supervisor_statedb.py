"""The state DB: legacy v0 files open without a warning and keep every row; bad files are refused."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.statedb import LATEST, StateDB
from tests.conftest import FIXTURES, REPO, demo_program, wait_for

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


@pytest.mark.parametrize("fixture", LEGACY)
def test_legacy_db_opens_without_warning_and_keeps_every_row(supervisor_factory, tmp_path, fixture):
    """The supervisor starts on a v0 DB, logs no warning or DB error, keeps rows, backfills."""
    source = FIXTURES / fixture
    db = tmp_path / "legacy.db"
    shutil.copyfile(source, db)
    before = {
        t: _rows(source, t, "id, name" if t == "processes" else "id, kind, detail")
        for t in _tables(source)
    }
    sup = supervisor_factory([demo_program()], db=db)
    sup.wait_workload(4)

    for table, rows in before.items():
        columns = "id, name" if table == "processes" else "id, kind, detail"
        after = _rows(db, table, columns)
        assert after[: len(rows)] == rows, f"{table}: legacy rows changed"
        assert not _rows(db, table, "id, created_at").count(None)
        assert all(created for _, created in _rows(db, table, "id, created_at"))
    assert _tables(db) == {"processes", "events"}
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST
    finally:
        conn.close()
    # the two "worker" rows stay; the supervisor carries on in the newest one
    workers = [r for r in _rows(db, "processes", "id, name, status") if r[1] == "worker"]
    assert [r[0] for r in workers] == [1, 2]
    assert workers[1][2] in ("starting", "running")
    assert sup.events()[0]["program"] == "worker"
    assert _db_problems(sup.log()) == []


def test_legacy_migration_failure_would_be_caught(supervisor_factory, tmp_path):
    """The no-warning check fails against the old build's bug (injected fault)."""
    db = tmp_path / "legacy.db"
    shutil.copyfile(FIXTURES / "legacy_v0.db", db)
    sup = supervisor_factory(
        [demo_program()],
        db=db,
        env={"SUPERVISOR_FAULTS": "legacy_migration_error"},
        wait_healthy=False,
    )
    wait_for(
        lambda: any("Failed to initialize database" in p for p in _db_problems(sup.log())),
        20,
        "the old build's migration error in the log",
    )


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
    first.add_event(pid, "note", "hello")
    first.close()
    second = StateDB(db)
    try:
        assert second.process_id("worker") == pid
        assert second.counts() == {"processes": 1, "events": 1}
    finally:
        second.close()


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
