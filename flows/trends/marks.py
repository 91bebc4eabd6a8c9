"""Marks that say what is wrong with a drill, each with the numbers behind it.

Pure functions of the history's frames (see :mod:`flows.trends.maths`), no I/O:

- **flaky**: the failure probability of the last ``FLAKY_WINDOW`` outcomes as a
  Beta(1 + fails, 1 + passes) posterior (uniform prior) with its 90 % credible
  interval, marked only with at least ``FLAKY_MIN_OUTCOMES`` outcomes, at least
  ``FLAKY_MIN_FLIPS`` flips between pass and not-pass (intermittent: a drill that
  failed for a while and then passed again has two flips, and is regressed then
  recovered, not flaky) and a lower credible bound above ``FLAKY_FLOOR``;
- **regressed**: the latest outcome is not a pass and the block before it
  passed; names the last pass, the first failure and what changed between
  their runs (git commit, versions, the config's digest as sealed in criteria.json,
  host, program);
- **recovered**: passing again after a regression, with the run and date (not for a
  flaky drill, whose every pass after a failure would be one);
- **drifting**: a change point in the key metric of passing outcomes (ruptures'
  binary segmentation, least-squares cost, one break, on the log of the metric),
  marked when the median after the break is at least ``DRIFT_RATIO`` times
  (or at most 1/``DRIFT_RATIO``) the median before it and every value after it
  lies beyond the 95th (5th) percentile before it, while the drill still passes;
- **stale**: no outcome within the window the schedule allows (``hours``, by default
  :data:`flows.trends.formatting.WINDOW_HOURS`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import ruptures  # type: ignore[import-untyped]  # ships no type hints
from scipy.stats import beta  # type: ignore[import-untyped]  # ships no type hints

from flows.trends.formatting import WINDOW_HOURS
from flows.trends.maths import outcomes

__all__ = [
    "DRIFT_RATIO",
    "FLAKY_MIN_OUTCOMES",
    "FLAKY_WINDOW",
    "drift",
    "flakiness",
    "marks",
    "regression_details",
    "stale",
]

FLAKY_WINDOW = 30
FLAKY_MIN_OUTCOMES = 10
FLAKY_MIN_FLIPS = 3  # one spell of failures then a pass is 2 flips: a fix, not flakiness
FLAKY_FLOOR = 0.02
DRIFT_WINDOW = 60
DRIFT_MIN_POINTS = 12
DRIFT_RATIO = 1.5
RECOVERED_DAYS = 30
# "config" is the sha256 of the supervisor config sealed in criteria.json (its path
# for runs from before criteria existed): the same path with new contents is a change.
CHANGE_FIELDS = ("git_commit", "versions", "config", "host", "program")


def flakiness(drills: pd.DataFrame, window: int = FLAKY_WINDOW) -> pd.DataFrame:
    """Per drill over its last ``window`` outcomes: ``n, fails, flips, p_fail, p_lo, p_hi, flaky``.

    ``p_fail`` is the posterior mean of the failure probability, ``p_lo``/``p_hi``
    its 90 % credible interval; all NaN (and ``flaky`` False) below the minimum.
    """
    done = outcomes(drills)
    recent = done[done.groupby("drill").cumcount(ascending=False) < window]
    rows = []
    for drill, part in recent.groupby("drill", sort=True):
        passed = part["passed"].to_numpy()
        n, fails = len(passed), int((~passed).sum())
        flips = int((passed[1:] != passed[:-1]).sum()) if n > 1 else 0
        row: dict[str, Any] = {"drill": drill, "n": n, "fails": fails, "flips": flips}
        if n >= FLAKY_MIN_OUTCOMES:
            a, b = 1 + fails, 1 + n - fails
            row |= {
                "p_fail": a / (a + b),
                "p_lo": float(beta.ppf(0.05, a, b)),
                "p_hi": float(beta.ppf(0.95, a, b)),
            }
            row["flaky"] = flips >= FLAKY_MIN_FLIPS and row["p_lo"] > FLAKY_FLOOR
        rows.append(row)
    columns = ["drill", "n", "fails", "flips", "p_fail", "p_lo", "p_hi", "flaky"]
    out = pd.DataFrame(rows, columns=columns).set_index("drill")
    out["flaky"] = out["flaky"].eq(True)
    return out


def _context(runs: pd.DataFrame) -> dict[str, dict[str, str]]:
    """Per run id, the fields of :data:`CHANGE_FIELDS` it recorded."""
    fields = [f for f in CHANGE_FIELDS if f in runs.columns]
    return {
        str(rid): dict(zip(fields, (str(v) for v in values), strict=True))
        for rid, *values in zip(runs["run_id"], *(runs[f] for f in fields), strict=True)
    }


def _changes(context: dict[str, dict[str, str]], before: str, after: str) -> str:
    """What differs between two runs' recorded context, e.g. ``git_commit 1a2b3c4 → 5d6e7f8``."""
    if before not in context or after not in context:
        return ""
    a, b = context[before], context[after]
    out = []
    for field in CHANGE_FIELDS:
        if field not in a or a[field] == b[field]:
            continue
        old, new = str(a[field]) or "none", str(b[field]) or "none"
        if field in ("git_commit", "config"):
            old, new = _short(old), _short(new)
        if field == "versions":
            olds, news = set(old.split(", ")), set(new.split(", "))
            old, new = ", ".join(sorted(olds - news)), ", ".join(sorted(news - olds))
        out.append(f"{field} {old} → {new}")
    return "; ".join(out) or "nothing recorded changed"


def regression_details(drills: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Every regression (first non-pass after a pass), oldest first, with what changed and
    when it recovered: ``drill, last_pass_run, last_pass_at, first_fail_run, first_fail_at,
    status, summary, changed, recovered_run, recovered_at``."""
    done = outcomes(drills).reset_index(drop=True)
    context = _context(runs)
    passed = done["passed"].to_numpy(dtype=bool)
    same = done["drill"].eq(done["drill"].shift()).to_numpy(dtype=bool)
    hits = np.flatnonzero(same & ~passed & np.roll(passed, 1))
    # per row, the position of the first pass at or after it within its drill
    at_pass = pd.Series(np.where(passed, np.arange(len(done)), np.nan))
    next_pass = at_pass.groupby(done["drill"].to_numpy()).bfill().to_numpy()
    run_ids, started = done["run_id"].to_numpy(), done["started_at"]
    rows = []
    for i in (int(k) for k in hits):
        back = next_pass[i]
        rows.append(
            {
                "drill": done.at[i, "drill"],
                "last_pass_run": run_ids[i - 1],
                "last_pass_at": started.iat[i - 1],
                "first_fail_run": run_ids[i],
                "first_fail_at": started.iat[i],
                "status": done.at[i, "status"],
                "summary": done.at[i, "summary"],
                "changed": _changes(context, str(run_ids[i - 1]), str(run_ids[i])),
                "recovered_run": None if np.isnan(back) else run_ids[int(back)],
                "recovered_at": pd.NaT if np.isnan(back) else started.iat[int(back)],
            }
        )
    columns = [
        "drill",
        "last_pass_run",
        "last_pass_at",
        "first_fail_run",
        "first_fail_at",
        "status",
        "summary",
        "changed",
        "recovered_run",
        "recovered_at",
    ]
    out = pd.DataFrame(rows, columns=columns)
    return out.sort_values(["first_fail_at", "drill"], kind="stable").reset_index(drop=True)


def drift(drills: pd.DataFrame, window: int = DRIFT_WINDOW) -> pd.DataFrame:
    """Per drill whose key metric shifted while passing: ``since`` (the first run after the
    change point), ``since_run``, ``ratio`` (median after / median before), ``before``,
    ``after`` (the medians) and ``points`` (values after the break)."""
    done = outcomes(drills)
    good = done[done["passed"] & done["metric"].notna() & done["metric"].gt(0)]
    rows = []
    for drill, part in good.groupby("drill", sort=True):
        part = part.tail(window)
        if len(part) < DRIFT_MIN_POINTS:
            continue
        values = part["metric"].to_numpy(dtype=float)
        signal = np.log(values).reshape(-1, 1)
        cut = ruptures.Binseg(model="l2", min_size=2, jump=1).fit(signal).predict(n_bkps=1)[0]
        before, after = values[:cut], values[cut:]
        if len(after) == 0 or len(before) < DRIFT_MIN_POINTS // 2:
            continue
        ratio = float(np.median(after) / np.median(before))
        up = ratio >= DRIFT_RATIO and after.min() > np.quantile(before, 0.95)
        down = ratio <= 1 / DRIFT_RATIO and after.max() < np.quantile(before, 0.05)
        if not (up or down):
            continue
        first = part.iloc[cut]
        rows.append(
            {
                "drill": drill,
                "since": first["started_at"],
                "since_run": first["run_id"],
                "ratio": ratio,
                "before": float(np.median(before)),
                "after": float(np.median(after)),
                "points": len(after),
            }
        )
    columns = ["drill", "since", "since_run", "ratio", "before", "after", "points"]
    return pd.DataFrame(rows, columns=columns).set_index("drill")


def stale(drills: pd.DataFrame, now: pd.Timestamp, hours: float = WINDOW_HOURS) -> pd.Series:
    """Per drill, whether its newest outcome is older than ``hours`` (or it has none)."""
    done = outcomes(drills)
    newest = done.groupby("drill")["started_at"].max()
    return (now - newest) > pd.Timedelta(hours=hours)


def marks(
    drills: pd.DataFrame,
    runs: pd.DataFrame,
    now: pd.Timestamp,
    names: list[str],
    hours: float = WINDOW_HOURS,
    details: pd.DataFrame | None = None,
) -> dict[str, list[tuple[str, str]]]:
    """Per drill in ``names``, its marks as ``(kind, evidence text)``, most urgent first;
    ``details`` is :func:`regression_details` when the caller has it already."""
    flaky = flakiness(drills)
    details = regression_details(drills, runs) if details is None else details
    drifting = drift(drills)
    old = stale(drills, now, hours)
    done = outcomes(drills)
    latest = done.groupby("drill").tail(1).set_index("drill")
    out: dict[str, list[tuple[str, str]]] = {}
    for drill in names:
        found: list[tuple[str, str]] = []
        if bool(old.get(drill, True)):
            last = done[done["drill"].eq(drill)]["started_at"].max()
            when = "never" if pd.isna(last) else f"last outcome {last:%Y-%m-%d %H:%M} UTC"
            found.append(("stale", f"no outcome within {hours:g} h ({when})"))
        passing = drill in latest.index and bool(latest.loc[drill, "passed"])
        is_flaky = drill in flaky.index and bool(flaky.loc[drill, "flaky"])
        mine = details[details["drill"].eq(drill)]
        if not mine.empty:
            last_reg = mine.iloc[-1]
            if not passing and not isinstance(last_reg["recovered_run"], str):
                found.append(
                    (
                        "regressed",
                        f"last pass {last_reg['last_pass_run']}, first failure "
                        f"{last_reg['first_fail_run']}; changed: {last_reg['changed']}",
                    )
                )
            elif passing and not is_flaky and isinstance(last_reg["recovered_run"], str):
                at = last_reg["recovered_at"]
                if now - at <= pd.Timedelta(days=RECOVERED_DAYS):
                    found.append(
                        (
                            "recovered",
                            f"passing again since {at:%Y-%m-%d} ({last_reg['recovered_run']})",
                        )
                    )
        if is_flaky:
            f: dict[str, Any] = {str(k): v for k, v in flaky.loc[drill].items()}
            found.append(
                (
                    "flaky",
                    f"P(fail) {f['p_fail']:.0%} (90% CI {f['p_lo']:.0%}–{f['p_hi']:.0%}), "
                    f"{int(f['fails'])} of last {int(f['n'])} outcomes failed, "
                    f"{int(f['flips'])} flips",
                )
            )
        if passing and drill in drifting.index:
            d: dict[str, Any] = {str(k): v for k, v in drifting.loc[drill].items()}
            found.append(
                (
                    "drifting",
                    f"key metric ×{d['ratio']:.2f} since {d['since']:%Y-%m-%d} "
                    f"(median {_num(d['before'])} → {_num(d['after'])}, {int(d['points'])} runs)",
                )
            )
        out[drill] = found
    return out


def _short(value: str) -> str:
    """A commit or a digest to its first 10 characters; a config path as it is."""
    return value[:10] if len(value) >= 40 and all(c in "0123456789abcdef" for c in value) else value


def _num(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else "—"
