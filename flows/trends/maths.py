"""Trend maths over the drill history: pure functions of DataFrames, no I/O.

Two frames come in, both built by :mod:`flows.trends.history`:

``runs``, one row per run folder:
    ``run_id`` (str), ``started_at`` (UTC timestamp), ``night`` (UTC midnight of
    ``started_at``), ``status`` (``complete``/``incomplete``/``unreadable``),
    ``verdict``, ``verified`` (bool), ``problems`` (str).

``drills``, one row per drill execution:
    ``run_id``, ``started_at`` and ``night`` of its run, ``drill`` (id),
    ``status`` (``pass``/``fail``/``error``/``incomplete``), ``metric`` (the
    drill's key metric, float or NaN), ``verified`` (its run's flag).

Definitions (each function repeats the one it uses):

- an *outcome* is a drill execution that finished: ``pass``, ``fail`` or
  ``error``; ``incomplete`` executions are gaps, not outcomes;
- pass rates count outcomes, newest first, per drill;
- a *flip* is a change between passing and not passing in consecutive outcomes;
  ``flip_rate`` is flips divided by the number of consecutive pairs;
- a *regression* is the first non-passing outcome after a pass;
- *freshness* is the time since the newest pass in a run that verified intact;
- a *gap* is a night between the first run and ``until`` with no run at all
  (``missing_night``), or a night whose runs recorded no outcome for an
  expected drill (``missing_drill``) — a rerun of a single drill does not make
  its night a gap when the nightly run of that night covered the rest.
"""

from __future__ import annotations

import pandas as pd

from flows.registry import DRILL_IDS, KEY_METRICS

# The registry is the one list of drills and key metrics (re-exported for the
# history, charts and pages); it imports no drill code and touches no disk.
EXPECTED_DRILLS: tuple[str, ...] = DRILL_IDS
OUTCOMES = ("pass", "fail", "error")

__all__ = [
    "EXPECTED_DRILLS",
    "KEY_METRICS",
    "OUTCOMES",
    "drill_summary",
    "flips",
    "freshness",
    "gaps",
    "latest",
    "metric_percentiles",
    "outcomes",
    "pass_rate_over_time",
    "pass_rates",
    "regressions",
    "streaks",
]


def _ordered(drills: pd.DataFrame) -> pd.DataFrame:
    return drills.sort_values(["drill", "started_at", "run_id"], kind="stable")


def outcomes(drills: pd.DataFrame) -> pd.DataFrame:
    """Finished executions (pass, fail, error), oldest first per drill, with a ``passed`` column."""
    done = drills[drills["status"].isin(OUTCOMES)]
    return _ordered(done).assign(passed=lambda d: d["status"].eq("pass"))


def _drill_index(drills: pd.DataFrame) -> pd.Index:
    index: pd.Index = pd.Index(sorted(drills["drill"].unique()), name="drill", dtype="str")
    return index


def pass_rates(drills: pd.DataFrame, windows: tuple[int, ...] = (7, 30)) -> pd.DataFrame:
    """Per drill, share of passes among its last N outcomes (``pass_<N>``) and all (``pass_all``)."""
    return _pass_rates(outcomes(drills), _drill_index(drills), windows)


def _pass_rates(done: pd.DataFrame, index: pd.Index, windows: tuple[int, ...]) -> pd.DataFrame:
    newest_first = done.groupby("drill").cumcount(ascending=False)
    out = pd.DataFrame(index=index)
    for window in windows:
        recent = done[newest_first < window]
        out[f"pass_{window}"] = recent.groupby("drill")["passed"].mean()
    out["pass_all"] = done.groupby("drill")["passed"].mean()
    out["outcomes"] = done.groupby("drill").size()
    out["outcomes"] = out["outcomes"].fillna(0).astype("int64")
    return out


def streaks(drills: pd.DataFrame) -> pd.DataFrame:
    """Per drill, the current run of same-kind outcomes: ``streak`` (count) and ``streak_passing``."""
    return _streaks(outcomes(drills), _drill_index(drills))


def _streaks(done: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
    if done.empty:
        return pd.DataFrame(
            {"streak": pd.Series(dtype="int64"), "streak_passing": pd.Series(dtype="bool")},
            index=index,
        )
    changed = done["passed"].ne(done.groupby("drill")["passed"].shift())
    block = changed.astype("int64").groupby(done["drill"]).cumsum()
    last_block = block.groupby(done["drill"]).transform("max")
    current = done[block.eq(last_block)]
    out = pd.DataFrame(index=index)
    out["streak"] = current.groupby("drill").size()
    out["streak_passing"] = current.groupby("drill")["passed"].last()
    return out


def flips(drills: pd.DataFrame) -> pd.DataFrame:
    """Per drill, ``flips`` between passing and not passing, and ``flip_rate`` per outcome pair."""
    return _flips(outcomes(drills), _drill_index(drills))


def _flips(done: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
    previous = done.groupby("drill")["passed"].shift()
    flipped = previous.notna() & done["passed"].ne(previous)
    out = pd.DataFrame(index=index)
    out["flips"] = flipped.groupby(done["drill"]).sum()
    out["flips"] = out["flips"].fillna(0).astype("int64")
    pairs = (done.groupby("drill").size() - 1).clip(lower=0)
    out["flip_rate"] = out["flips"] / pairs.where(pairs > 0)
    return out


def regressions(drills: pd.DataFrame) -> pd.DataFrame:
    """Every first non-passing outcome after a pass, with the run ids either side, oldest first."""
    return _regressions(outcomes(drills))


def _regressions(done: pd.DataFrame) -> pd.DataFrame:
    by_drill = done.groupby("drill")
    prev_passed = by_drill["passed"].shift()
    prev_run = by_drill["run_id"].shift()
    prev_at = by_drill["started_at"].shift()
    hit = prev_passed.eq(True) & ~done["passed"]
    out = pd.DataFrame(
        {
            "drill": done["drill"][hit],
            "last_pass_run": prev_run[hit],
            "last_pass_at": prev_at[hit],
            "first_fail_run": done["run_id"][hit],
            "first_fail_at": done["started_at"][hit],
            "status": done["status"][hit],
        }
    )
    return out.sort_values(["first_fail_at", "drill"], kind="stable").reset_index(drop=True)


def latest(drills: pd.DataFrame) -> pd.DataFrame:
    """Per drill, its newest execution of any status: ``latest_status``, ``latest_run``, ``latest_at``."""
    newest = _ordered(drills).groupby("drill").tail(1).set_index("drill")
    return pd.DataFrame(
        {
            "latest_status": newest["status"],
            "latest_run": newest["run_id"],
            "latest_at": newest["started_at"],
            "latest_verified": newest["verified"],
        },
        index=_drill_index(drills),
    )


def freshness(drills: pd.DataFrame, now: pd.Timestamp) -> pd.DataFrame:
    """Per drill, the newest pass in a verified run (``last_verified_pass``) and ``now`` minus it."""
    good = drills[drills["status"].eq("pass") & drills["verified"].eq(True)]
    last = good.groupby("drill")["started_at"].max()
    out = pd.DataFrame(index=_drill_index(drills))
    out["last_verified_pass"] = last
    out["freshness"] = now - out["last_verified_pass"]
    return out


def gaps(
    runs: pd.DataFrame,
    drills: pd.DataFrame,
    expected: tuple[str, ...] = EXPECTED_DRILLS,
    until: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Missing nights and missing drills, oldest first: columns ``kind, night, drill, run_id``.

    ``until`` is the last night that should have had a run (a UTC midnight);
    nights after the newest run up to it count as missing too.
    """
    columns = ["kind", "night", "drill", "run_id"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    first, last = runs["night"].min(), runs["night"].max()
    if until is not None and until > last:
        last = until
    every_night = pd.date_range(first, last, freq="D", tz=first.tz)
    seen = pd.DatetimeIndex(runs["night"].unique())
    missing_nights = pd.DataFrame(
        {
            "kind": "missing_night",
            "night": every_night.difference(seen),
            "drill": pd.NA,
            "run_id": pd.NA,
        }
    )

    # a hole is named after the night's first run, the nightly (a later run is a rerun),
    # as the home page's "NOT RUN" cell names it
    nightly = runs.sort_values(["started_at", "run_id"]).groupby("night")["run_id"].first()
    wanted = pd.MultiIndex.from_product([nightly.index, list(expected)], names=["night", "drill"])
    done = drills[drills["status"].isin(OUTCOMES)]
    covered = pd.MultiIndex.from_frame(done[["night", "drill"]].drop_duplicates())
    holes = wanted.difference(covered).to_frame(index=False)
    missing_drills = holes.assign(kind="missing_drill", run_id=holes["night"].map(nightly))
    parts = [p[columns] for p in (missing_nights, missing_drills) if not p.empty]
    if not parts:
        return pd.DataFrame(columns=columns)
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["night", "kind", "drill"], kind="stable").reset_index(drop=True)


def pass_rate_over_time(drills: pd.DataFrame, window: int = 30) -> pd.DataFrame:
    """Per drill and outcome, the pass rate over the ``window`` outcomes ending there, and
    ``outcomes``, how many that window holds (fewer at the start of a history)."""
    done = outcomes(drills)
    rate = (
        done.groupby("drill")["passed"]
        .rolling(window, min_periods=1)
        .mean()
        .reset_index(level=0, drop=True)
    )
    counted = (done.groupby("drill").cumcount() + 1).clip(upper=window)
    return done[["drill", "run_id", "started_at"]].assign(pass_rate=rate, outcomes=counted)


def metric_percentiles(
    drills: pd.DataFrame, which: tuple[str, ...], freq: str = "MS"
) -> pd.DataFrame:
    """p50 and p95 of the key metric of drills ``which`` per period: ``drill, period, p50, p95, n``."""
    rows = drills[drills["drill"].isin(which) & drills["metric"].notna()]
    columns = ["drill", "period", "p50", "p95", "n"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    period = rows["started_at"].dt.tz_localize(None).dt.to_period(freq.removesuffix("S"))
    grouped = rows.assign(period=period.dt.start_time).groupby(["drill", "period"])["metric"]
    out = pd.DataFrame(
        {"p50": grouped.quantile(0.5), "p95": grouped.quantile(0.95), "n": grouped.size()}
    )
    return out.reset_index()[columns]


def drill_summary(
    runs: pd.DataFrame,
    drills: pd.DataFrame,
    now: pd.Timestamp,
    expected: tuple[str, ...] = EXPECTED_DRILLS,
    until: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """One row per drill (expected ones first): every figure of the trends table."""
    names = list(expected) + sorted(set(drills["drill"]) - set(expected))
    index = pd.Index(names, name="drill", dtype="str")
    found = gaps(runs, drills, expected, until)
    nights_missing = int(found["kind"].eq("missing_night").sum())
    per_drill = found[found["kind"].eq("missing_drill")].groupby("drill").size()
    done, drill_index = outcomes(drills), _drill_index(drills)  # sorted once, not four times
    parts = [
        latest(drills),
        _pass_rates(done, drill_index, (7, 30)),
        _streaks(done, drill_index),
        _flips(done, drill_index),
        _regressions(done).groupby("drill").size().rename("regressions"),
        freshness(drills, now),
    ]
    out = pd.concat(parts, axis=1).reindex(index)
    out["regressions"] = out["regressions"].fillna(0).astype("int64")
    out["flips"] = out["flips"].fillna(0).astype("int64")
    out["outcomes"] = out["outcomes"].fillna(0).astype("int64")
    out["gaps"] = per_drill.reindex(index).fillna(0).astype("int64") + nights_missing
    out["latest_status"] = out["latest_status"].fillna("missing")
    return out
