"""``legacy_db``: the supervisor starts on a v0 state DB, logs no DB error, keeps every row."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from flows.drills.context import DrillContext
from supervisor.migrations import V0_SCHEMA

_DB_TROUBLE = re.compile(
    r"(Failed to initialize database|no such column|sqlite3?\.|(WARNING|ERROR) supervisor\.statedb)",
    re.IGNORECASE,
)

PROCESS_ROWS = [
    (1, "worker", 4242, "running"),
    (2, "reporter", None, "stopped"),
    (3, "worker", 5151, "exited"),
    (4, "cron-job", 777, "fatal"),
]
EVENT_ROWS = [
    (1, 1, "started", "pid 4242"),
    (2, 2, "stopped", "exit code 0"),
    (3, 3, "exited", "exit code 1"),
    (4, 4, "fatal", "spawn error"),
    (5, None, "note", "legacy event with no process"),
]


def build_v0(path: Path) -> None:
    """The legacy build's schema, exactly: no created_at anywhere, user_version 0."""
    conn = sqlite3.connect(path)
    conn.executescript(V0_SCHEMA)
    conn.executemany("INSERT INTO processes VALUES (?, ?, ?, ?)", PROCESS_ROWS)
    conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", EVENT_ROWS)
    conn.commit()
    conn.close()


def run(ctx: DrillContext) -> tuple[bool, str]:
    db = ctx.workdir / "legacy-v0.db"
    build_v0(db)
    ctx.log.line(
        f"built v0 DB {db}: {len(PROCESS_ROWS)} process rows, {len(EVENT_ROWS)} event"
        " rows, user_version 0, no created_at"
    )
    # the DB is the subject, not the worker; a start that dies on the DB is a finding
    sup = ctx.supervisor(db=db, wait_workload=False, wait_healthy=False)
    if sup.wait_up():
        ctx.read_containment(sup)
    exit_status = sup.popen.poll()
    sup.stop()
    trouble = [line for line in sup.log().splitlines() if _DB_TROUBLE.search(line)]
    for line in trouble:
        ctx.log.line(f"supervisor log: {line}")
    if trouble:
        ctx.metrics["db_log_errors"] = len(trouble)
        return False, f"supervisor logged a DB problem: {trouble[0][-200:]}"
    if exit_status is not None:
        return False, f"supervisor exited with status {exit_status} on the v0 DB before /healthz"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        procs = conn.execute("SELECT id, name, pid, status FROM processes").fetchall()
        events = conn.execute("SELECT id, process_id, kind, detail FROM events").fetchall()
        null_created = sum(
            conn.execute(f"SELECT count(*) FROM {t} WHERE created_at IS NULL").fetchone()[0]
            for t in ("processes", "events")
        )
    except sqlite3.Error as exc:
        return False, f"migrated DB cannot be read: {exc}"
    finally:
        conn.close()
    ids = {r[0]: r for r in procs}
    missing_p = [r for r in PROCESS_ROWS if ids.get(r[0], (None, None))[1] != r[1]]
    event_ids = {r[0]: r for r in events}
    missing_e = [r for r in EVENT_ROWS if event_ids.get(r[0]) != r]
    kept = len(PROCESS_ROWS) - len(missing_p) + len(EVENT_ROWS) - len(missing_e)
    ctx.metrics.update(
        rows_kept=kept,
        rows_expected=len(PROCESS_ROWS) + len(EVENT_ROWS),
        schema_version=version,
        db_log_errors=len(trouble),
    )
    ctx.log.line(
        f"after migration: user_version {version}, {len(procs)} process rows,"
        f" {len(events)} event rows, {null_created} rows without created_at"
    )
    if missing_p or missing_e:
        return False, f"rows lost or changed in migration: {(missing_p + missing_e)[:3]}"
    if null_created:
        return False, f"{null_created} row(s) left without created_at"
    return True, f"v0 DB migrated to schema {version}; all {kept} legacy rows kept; no DB error"
