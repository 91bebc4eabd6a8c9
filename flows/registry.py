"""The drill registry: every drill's id, title, pass condition, key metric and unit.

This is the one list of drills. The runner, the Prefect flow, the trends, the
site, ``python -m flows --help`` and ``scripts/recovery_drill.sh`` take ids and
metadata from here; :mod:`flows.drills` maps the same ids to the functions that
run them (and checks at import that the two lists agree).

It imports no drill code, psutil, httpx, pandas or Prefect, so anything that
only needs to name or describe drills stays light.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from flows.errors import UnknownDrillError

__all__ = [
    "DRILLS",
    "DRILL_IDS",
    "KEY_METRICS",
    "DrillInfo",
    "check_ids",
    "info",
    "key_metric",
]


@dataclass(frozen=True)
class DrillInfo:
    """What a drill is: ``passes_when`` completes the sentence "The drill passes when ..."."""

    id: str
    title: str
    passes_when: str
    metric: str
    unit: str


DRILLS: tuple[DrillInfo, ...] = (
    DrillInfo(
        "sigterm",
        "SIGTERM the supervisor",
        "the supervisor exits after SIGTERM and no workload process survives",
        "supervisor_exit_ms",
        "ms",
    ),
    DrillInfo(
        "api_kill",
        "Kill through the API",
        "`POST /process/kill` answers 200 with a valid body, the tree is gone, "
        "the supervisor stays healthy",
        "kill_round_trip_ms",
        "ms",
    ),
    DrillInfo(
        "sigkill",
        "SIGKILL the supervisor",
        "after SIGKILL no workload process survives 2 s; a restart on the same DB "
        "comes up healthy and reconciles",
        "tree_vanish_ms",
        "ms",
    ),
    DrillInfo(
        "crash_restart",
        "A crashed worker restarts",
        "a worker killed from outside is restarted within its backoff, with a new pid and an event",
        "restart_delay_ms",
        "ms",
    ),
    DrillInfo(
        "legacy_db",
        "Start on a legacy database",
        "the supervisor starts on a v0 DB, logs no DB error, keeps every row",
        "rows_kept",
        "rows",
    ),
    DrillInfo(
        "bad_input",
        "Malformed and unauthorised requests",
        "every malformed or unauthorised request gets its documented 4xx; the worker is untouched",
        "checks_passed",
        "checks",
    ),
    DrillInfo(
        "kill_under_load",
        "Kills under load",
        "concurrent kills under concurrent status polling all answer 200; the tree is gone",
        "kill_p99_ms",
        "ms",
    ),
    DrillInfo(
        "escapee",
        "Escapees die on every path",
        "descendants that double-fork, call setsid, exec with an empty environment, ignore "
        "SIGTERM and keep forking are all gone after an API kill, a supervisor SIGTERM and "
        "a supervisor SIGKILL",
        "survivors",
        "processes",
    ),
)

_BY_ID: dict[str, DrillInfo] = {d.id: d for d in DRILLS}
DRILL_IDS: tuple[str, ...] = tuple(_BY_ID)
KEY_METRICS: Mapping[str, str] = {d.id: d.metric for d in DRILLS}


def info(drill_id: str) -> DrillInfo:
    """The registry entry of ``drill_id``; :class:`UnknownDrillError` naming the valid ids."""
    try:
        return _BY_ID[drill_id]
    except KeyError:
        raise UnknownDrillError(
            f"unknown drill id {drill_id!r}; valid ids: {', '.join(DRILL_IDS)}"
        ) from None


def check_ids(ids: Iterable[str] | None) -> list[str]:
    """The drills to run, in registry order; all when ``ids`` is empty."""
    wanted = list(ids or ())
    if not wanted:
        return list(DRILL_IDS)
    unknown = [i for i in wanted if i not in _BY_ID]
    if unknown:
        raise UnknownDrillError(
            f"unknown drill id(s) {', '.join(unknown)}; valid ids: {', '.join(DRILL_IDS)}"
        )
    return [i for i in DRILL_IDS if i in wanted]


def key_metric(drill_id: str, metrics: object) -> float | None:
    """The value of ``drill_id``'s key metric in a result's ``metrics``; None when it has none.

    Only a number counts (not a bool, not NaN): ``metrics`` comes from
    ``results.json`` files, which a reader must not trust to hold the right type.
    """
    entry = _BY_ID.get(drill_id)
    if entry is None or not isinstance(metrics, Mapping):
        return None
    value = metrics.get(entry.metric)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return None if math.isnan(number) else number
