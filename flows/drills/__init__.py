"""The drill functions, keyed by the ids of :mod:`flows.registry`, and the function that runs one.

Each drill is a plain function ``run(ctx) -> (passed, message)`` in a module of
its own name; :func:`run_drill` gives it a log and a real supervisor, turns its
outcome into a :class:`DrillResult`, and always cleans up. Prefect wraps these
functions but they never need it. Ids, titles and key metrics live in the
registry; this module only adds the code.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flows import registry
from flows.drills import (
    api_kill,
    bad_input,
    crash_restart,
    escapee,
    kill_under_load,
    legacy_db,
    sigkill,
    sigterm,
)
from flows.drills._log import DrillLog
from flows.drills.context import CHOSEN_BY, DrillContext, DrillOptions
from flows.drills.markers import kill_leftovers, runner_marker
from flows.errors import DrillSetupError, UnknownDrillError
from flows.registry import KEY_METRICS, check_ids

__all__ = [
    "DRILLS",
    "DRILL_IDS",
    "KEY_METRICS",
    "DrillOptions",
    "DrillResult",
    "check_ids",
    "kill_leftovers",
    "run_drill",
]

log = logging.getLogger("flows.drills")

DrillFn = Callable[[DrillContext], tuple[bool, str]]

DRILLS: dict[str, DrillFn] = {
    "sigterm": sigterm.run,
    "api_kill": api_kill.run,
    "sigkill": sigkill.run,
    "crash_restart": crash_restart.run,
    "legacy_db": legacy_db.run,
    "bad_input": bad_input.run,
    "kill_under_load": kill_under_load.run,
    "escapee": escapee.run,
}
if tuple(DRILLS) != registry.DRILL_IDS:  # a drill added to one list and not the other
    raise UnknownDrillError(
        f"flows.drills.DRILLS has {list(DRILLS)} but flows.registry lists "
        f"{list(registry.DRILL_IDS)}; add or remove the drill in both, in the same order"
    )
DRILL_IDS: list[str] = list(registry.DRILL_IDS)


@dataclass
class DrillResult:
    id: str
    status: str  # pass | fail | error
    started_at: str
    duration_s: float
    summary: str
    log: str
    metrics: dict[str, Any] = field(default_factory=dict)
    containment: str = "unknown"  # what the drill's supervisor's /healthz said

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_drill(drill_id: str, log_path: Path, options: DrillOptions | None = None) -> DrillResult:
    """Run one drill against a fresh supervisor; never leaves a process behind."""
    registry.info(drill_id)  # an unknown id raises UnknownDrillError naming the valid ones
    fn = DRILLS[drill_id]
    options = options or DrillOptions()
    started_at = datetime.now(UTC).isoformat(timespec="milliseconds")
    started = time.monotonic()
    dlog = DrillLog(log_path)
    ctx = DrillContext(options=options, log=dlog, marker=runner_marker())
    dlog.line(
        f"drill {drill_id} start; marker {ctx.marker}; config "
        f"{options.config or 'built-in demo worker'}"
        + ("" if options.is_real() else f"; BROKEN supervisor {list(options.supervisor_command)}")
    )
    try:
        target, chosen_by = options.target()
        dlog.line(f"target program {target} ({CHOSEN_BY[chosen_by]})")
        passed, message = fn(ctx)
        if ctx.collateral_problems:  # damage to another program fails any verdict
            own = "" if passed else f"; and {message}"
            passed, message = False, "; ".join(ctx.collateral_problems) + own
        status = "pass" if passed else "fail"
    except DrillSetupError as exc:
        status, passed, message = "error", False, f"error: {exc}"
    except Exception as exc:
        dlog.line("harness exception:\n" + traceback.format_exc())
        status, passed = "error", False
        message = f"error: harness raised {type(exc).__name__}: {exc}"
    except BaseException:  # Ctrl-C: clean up, and record no verdict we did not earn
        dlog.line("interrupted; cleaning up")
        ctx.cleanup()
        dlog.finish(False, "interrupted before the drill finished")
        dlog.close()
        raise
    ctx.cleanup()  # before the verdict: the log must end with it
    summary = dlog.finish(passed, message)
    duration = time.monotonic() - started
    dlog.close()
    log.info("event=drill_done drill=%s status=%s duration_s=%.2f", drill_id, status, duration)
    return DrillResult(
        id=drill_id,
        status=status,
        started_at=started_at,
        duration_s=round(duration, 3),
        summary=summary,
        log=log_path.name,
        metrics=ctx.metrics,
        containment=ctx.containment,
    )
