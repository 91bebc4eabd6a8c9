"""Test-only fault injection, so every drill can be shown to fail.

``SUPERVISOR_FAULTS`` holds a comma-separated list of fault names. Unset (the
normal case) means no fault. The supervisor logs a warning at start when any
fault is active, so no evidence can come from a broken build unnoticed.
"""

from __future__ import annotations

import os

KNOWN = frozenset(
    {
        "leader_only_kill",  # the ladder signals the leader pid only: no group, no descendants
        "no_subreaper",  # skip PR_SET_CHILD_SUBREAPER
        "no_keeper",  # no keeper process: a SIGKILLed supervisor orphans its programs
        "no_shutdown_stop",  # SIGTERM to the supervisor leaves programs running
        "legacy_migration_error",  # reproduce the old "no such column: created_at" bug
        "kill_500",  # POST /process/kill answers 500
        "kill_drop",  # POST /process/kill drops the connection
        "no_autorestart",  # unexpected exits are never restarted
        "no_auth",  # every route is open
        "no_body_limit",  # no 413 for large bodies
    }
)


def active(name: str) -> bool:
    return name in enabled()


def enabled() -> frozenset[str]:
    raw = os.environ.get("SUPERVISOR_FAULTS", "")
    names = frozenset(n.strip() for n in raw.split(",") if n.strip())
    unknown = names - KNOWN
    if unknown:
        raise ValueError(
            f"SUPERVISOR_FAULTS: unknown fault(s) {sorted(unknown)}; known: {sorted(KNOWN)}"
        )
    return names
