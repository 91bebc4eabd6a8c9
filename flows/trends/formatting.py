"""How trend figures read, in the terminal and on the site: the one place for the words.

Rates, ages, streaks, key-metric values and "the last night that should have a
run" are formatted here and nowhere else; the site wraps these texts in badges,
the terminal prints them as they are. Values may come straight from a DataFrame
(NaN and NaT for "none"), so every function accepts a missing value.

No pandas import: the runner's summary table uses :func:`metric` too.
"""

from __future__ import annotations

import math
import numbers
from datetime import timedelta
from typing import TYPE_CHECKING

from flows.registry import KEY_METRICS

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["NONE", "WINDOW_HOURS", "age", "last_night", "metric", "rate", "streak"]

NONE = "—"
# The schedule's window, the site's one default (``publish --stale-hours`` overrides it):
# a drill with no outcome for longer is stale, and a night counts as missed once it passed.
WINDOW_HOURS = 26.0


def _number(x: object) -> float | None:
    """``x`` as a float, or None for None, NaN and anything that is not a number."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        return None
    value = float(x)
    return None if math.isnan(value) else value


def rate(x: object) -> str:
    """A share as a whole percentage, e.g. ``86%``; ``—`` when there were no outcomes."""
    value = _number(x)
    return NONE if value is None else f"{value:.0%}"


def _hours(delta: object) -> float | None:
    # pd.NaT is not a timedelta, so it reads as "never" like None.
    return delta.total_seconds() / 3600 if isinstance(delta, timedelta) else None


def age(delta: object) -> str:
    """How long ago: ``5 h ago`` below two days, then ``3 days ago``; ``never`` when none."""
    hours = _hours(delta)
    if hours is None:
        return "never"
    return f"{hours:.0f} h ago" if hours < 48 else f"{hours / 24:.0f} days ago"


def streak(count: object, passing: object) -> str:
    """The current run of same-kind outcomes, e.g. ``4 × pass`` or ``2 × not pass``."""
    n = _number(count)
    if n is None:
        return NONE
    return f"{int(n)} × {'pass' if passing else 'not pass'}"


def metric(drill_id: str, value: object, sep: str = " ") -> str:
    """A drill's key metric and its value, e.g. ``kill_round_trip_ms 4.2``; ``—`` when none."""
    number = _number(value)
    if number is None:
        return NONE
    return f"{KEY_METRICS.get(drill_id, 'metric')}{sep}{number:g}"


def last_night(now: pd.Timestamp, hours: float = WINDOW_HOURS) -> pd.Timestamp:
    """The newest night that should have a run: a night (UTC midnight) counts as missed
    once ``hours`` (the schedule's window) have passed since it began."""
    return (now - timedelta(hours=hours)).normalize()
