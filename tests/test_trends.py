"""Trend maths on hand-built frames with known answers, and loading run folders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from flows.evidence.synthetic import write_synthetic_runs
from flows.trends import formatting as fmt
from flows.trends import marks
from flows.trends import maths as trends
from flows.trends.history import cmd_trends, format_table, load_history, trends_table

REPO = Path(__file__).resolve().parent.parent

DAY0 = pd.Timestamp("2026-01-01 02:00", tz="UTC")


def drills_frame(rows: list[tuple]) -> pd.DataFrame:
    """Rows of (day, drill, status[, metric[, verified]]) with run ids ``r<day>``."""
    out = []
    for row in rows:
        day, drill, status, *rest = row
        metric = rest[0] if rest else float("nan")
        verified = rest[1] if len(rest) > 1 else True
        at = DAY0 + pd.Timedelta(days=day)
        out.append(
            {
                "run_id": f"r{day:03d}",
                "started_at": at,
                "night": at.normalize(),
                "drill": drill,
                "status": status,
                "metric": float(metric),
                "verified": verified,
            }
        )
    return pd.DataFrame(out).astype({"run_id": "str", "drill": "str", "status": "str"})


def runs_frame(drills: pd.DataFrame) -> pd.DataFrame:
    return drills.drop_duplicates("run_id")[["run_id", "started_at", "night"]].reset_index(
        drop=True
    )


def series(drill: str, statuses: str) -> list[tuple]:
    """``"PPF."`` → pass, pass, fail, incomplete on days 0, 1, 2, 3."""
    code = {"P": "pass", "F": "fail", "E": "error", ".": "incomplete"}
    return [(i, drill, code[c]) for i, c in enumerate(statuses)]


def test_pass_rates_over_last_7_last_30_and_all_time():
    """40 outcomes: 10 fails then 30 passes, except fails at positions 35 and 38."""
    statuses = "F" * 10 + "P" * 25 + "F" + "PP" + "F" + "P"
    rates = trends.pass_rates(drills_frame(series("api_kill", statuses)))
    row = rates.loc["api_kill"]
    assert row["pass_7"] == pytest.approx(5 / 7)
    assert row["pass_30"] == pytest.approx(28 / 30)
    assert row["pass_all"] == pytest.approx(28 / 40)
    assert row["outcomes"] == 40


def test_pass_rates_ignore_incomplete_executions():
    """An incomplete drill is a gap, not a failure and never a pass."""
    rates = trends.pass_rates(drills_frame(series("sigterm", "PP.F..")))
    assert rates.loc["sigterm", "pass_all"] == pytest.approx(2 / 3)
    assert rates.loc["sigterm", "outcomes"] == 3


def test_streak_counts_the_current_run_of_same_kind_outcomes():
    """Fail and error are both 'not passing' and extend the same streak."""
    frame = drills_frame(series("a", "PPPFPP") + series("b", "PPFEF"))
    s = trends.streaks(frame)
    assert (s.loc["a", "streak"], bool(s.loc["a", "streak_passing"])) == (2, True)
    assert (s.loc["b", "streak"], bool(s.loc["b", "streak_passing"])) == (3, False)


def test_flips_and_flip_rate():
    """PFPPFF has flips at 1, 2, 4: three flips over five consecutive pairs."""
    f = trends.flips(drills_frame(series("a", "PFPPFF") + series("b", "P")))
    assert f.loc["a", "flips"] == 3
    assert f.loc["a", "flip_rate"] == pytest.approx(3 / 5)
    assert f.loc["b", "flips"] == 0
    assert pd.isna(f.loc["b", "flip_rate"])


def test_regressions_name_the_runs_either_side():
    """Each first non-pass after a pass is a regression; a run of fails counts once."""
    frame = drills_frame(series("a", "PPFFPE.P"))
    reg = trends.regressions(frame)
    assert reg[["last_pass_run", "first_fail_run", "status"]].values.tolist() == [
        ["r001", "r002", "fail"],
        ["r004", "r005", "error"],
    ]


def test_regression_skips_incomplete_executions_between_pass_and_fail():
    """P . F: the incomplete run is not an outcome, so the pass is the run before the fail."""
    reg = trends.regressions(drills_frame(series("a", "P.F")))
    assert reg[["last_pass_run", "first_fail_run"]].values.tolist() == [["r000", "r002"]]


def test_freshness_counts_only_passes_in_verified_runs():
    """The newest pass is in a run that fails verify, so freshness goes back to day 1."""
    frame = drills_frame(
        [(0, "a", "pass"), (1, "a", "pass"), (2, "a", "fail"), (3, "a", "pass", 1.0, False)]
        + [(0, "b", "fail")]
    )
    now = DAY0 + pd.Timedelta(days=4)
    fresh = trends.freshness(frame, now)
    assert fresh.loc["a", "last_verified_pass"] == DAY0 + pd.Timedelta(days=1)
    assert fresh.loc["a", "freshness"] == pd.Timedelta(days=3)
    assert pd.isna(fresh.loc["b", "freshness"])


def test_gaps_find_missing_nights_and_missing_drills():
    """Days 0..5 with no run on 2 and 4; day 3 lacks drill b; until day 7 adds 6 and 7."""
    rows = []
    for day in (0, 1, 3, 5):
        rows.append((day, "a", "pass"))
        if day != 3:
            rows.append((day, "b", "fail" if day == 5 else "pass"))
    frame = drills_frame(rows)
    found = trends.gaps(
        runs_frame(frame), frame, expected=("a", "b"), until=(DAY0 + pd.Timedelta(days=7))
    )
    nights = found[found["kind"].eq("missing_night")]["night"].dt.day.tolist()
    assert nights == [3, 5, 7, 8]  # 2026-01-03, -05, -07, -08
    missing = found[found["kind"].eq("missing_drill")]
    assert missing[["drill", "run_id"]].values.tolist() == [["b", "r003"]]


def test_a_rerun_of_one_drill_is_not_a_gap_when_its_night_is_covered():
    """Night 0 has the nightly run (a, b) and an afternoon rerun of b only."""
    frame = drills_frame([(0, "a", "pass"), (0, "b", "fail")])
    rerun = frame.iloc[[1]].assign(
        run_id="r000-rerun", started_at=DAY0 + pd.Timedelta(hours=12), status="pass"
    )
    both = pd.concat([frame, rerun], ignore_index=True)
    assert trends.gaps(runs_frame(both), both, expected=("a", "b")).empty


def test_a_missing_drill_is_named_after_the_nights_first_run_not_its_rerun():
    """Night 0's nightly run lacks b and an afternoon rerun of a follows: the hole is the
    nightly's, as the home page's NOT RUN cell says."""
    frame = drills_frame([(0, "a", "pass")])
    rerun = frame.assign(run_id="r000-rerun", started_at=DAY0 + pd.Timedelta(hours=12))
    both = pd.concat([frame, rerun], ignore_index=True)
    found = trends.gaps(runs_frame(both), both, expected=("a", "b"))
    assert found[["kind", "drill", "run_id"]].values.tolist() == [["missing_drill", "b", "r000"]]


def _marks_of(statuses: str) -> list[str]:
    frame = drills_frame(series("a", statuses)).assign(summary="")
    now = DAY0 + pd.Timedelta(days=len(statuses) - 1, hours=1)
    return [k for k, _ in marks.marks(frame, runs_frame(frame), now, ["a"])["a"]]


def test_four_failures_in_a_row_then_passes_is_recovered_not_flaky():
    """One spell of failures then a fix has 2 flips: regressed, then recovered."""
    assert _marks_of("P" * 10 + "FFFF" + "PPP") == ["recovered"]
    assert _marks_of("P" * 10 + "FFFF") == ["regressed"]


def test_failures_that_come_and_go_are_flaky():
    """Two separate spells of failure (4 flips) in 17 outcomes: flaky, not recovered."""
    assert _marks_of("P" * 6 + "FF" + "PPP" + "FFF" + "PPP") == ["flaky"]


def test_what_changed_compares_the_sealed_config_digest_not_its_path(tmp_path):
    """Same config path, other contents: the regression names the config's digest change."""
    from flows.evidence import RunWriter, new_run_dir

    config = tmp_path / "supervisor.toml"
    root = tmp_path / "artifacts"
    for day, (text, status) in enumerate((("a = 1\n", "pass"), ("a = 2\n", "fail"))):
        config.write_text(text)
        writer = RunWriter(
            new_run_dir(root, now=DAY0.to_pydatetime() + pd.Timedelta(days=day)),
            drills=["sigterm"],
            command="t",
            config=str(config),
            durable=False,
        )
        writer.log_path("sigterm").write_text(f"{status.upper()}: sigterm\n")
        writer.record({"id": "sigterm", "status": status, "log": "drill_sigterm.log"})
        writer.finalize()
    history = load_history(root)
    (changed,) = marks.regression_details(history.drills, history.runs)["changed"]
    assert changed.startswith("config ") and str(config) not in changed
    assert changed.count("→") == 1


def test_an_incomplete_drill_leaves_its_night_a_gap():
    frame = drills_frame([(0, "a", "pass"), (0, "b", "incomplete")])
    found = trends.gaps(runs_frame(frame), frame, expected=("a", "b"))
    assert found[["kind", "drill"]].values.tolist() == [["missing_drill", "b"]]


def test_metric_percentiles_per_month():
    """January 1..10 ms, February 100 ms: p50 and p95 by linear interpolation."""
    rows = [(d, "api_kill", "pass", float(d + 1)) for d in range(10)]
    rows += [(31 + d, "api_kill", "pass", 100.0) for d in range(3)]
    pct = trends.metric_percentiles(drills_frame(rows), ("api_kill",))
    assert pct["p50"].tolist() == pytest.approx([5.5, 100.0])
    assert pct["p95"].tolist() == pytest.approx([9.55, 100.0])
    assert pct["n"].tolist() == [10, 3]


def test_drill_summary_has_every_expected_drill_even_without_rows():
    """A drill that never ran is listed as missing with no pass rate and never fresh."""
    frame = drills_frame(series("api_kill", "PPF"))
    table = trends.drill_summary(runs_frame(frame), frame, DAY0 + pd.Timedelta(days=3))
    assert list(table.index[: len(trends.EXPECTED_DRILLS)]) == list(trends.EXPECTED_DRILLS)
    assert table.loc["sigterm", "latest_status"] == "missing"
    assert pd.isna(table.loc["sigterm", "pass_all"])
    assert table.loc["sigterm", "gaps"] == 3
    assert table.loc["api_kill", "latest_status"] == "fail"
    assert table.loc["api_kill", "regressions"] == 1


def test_pass_rate_over_time_is_a_rolling_window_per_drill():
    rates = trends.pass_rate_over_time(drills_frame(series("a", "PFPF")), window=2)
    assert rates["pass_rate"].tolist() == pytest.approx([1.0, 0.5, 0.5, 0.5])


# --- loading run folders ------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("artifacts")
    write_synthetic_runs(root, 24, seed=7)
    return root


def test_synthetic_runs_verify_and_carry_a_failure_gaps_and_an_incomplete_run(synthetic_root):
    """The generator's history has what the site must show, and verify accepts it."""
    history = load_history(synthetic_root)
    runs, drills = history.runs, history.drills
    assert len(runs) == 24
    assert runs["status"].eq("incomplete").sum() == 1
    assert runs.loc[runs["status"].eq("complete"), "verified"].all()
    assert drills["status"].eq("fail").any()
    found = trends.gaps(runs, drills)
    assert found["kind"].eq("missing_night").sum() >= 2


def test_load_history_flags_a_tampered_run_instead_of_dropping_it(tmp_path):
    """Editing one log breaks that run's manifest; the run stays, marked not verified."""
    write_synthetic_runs(tmp_path, 6, seed=3)
    victim = sorted(tmp_path.glob("chaos-drill-*"))[1]
    log = victim / "drill_sigterm.log"
    log.write_text(log.read_text().replace("PASS", "PASS!", 1))
    runs = load_history(tmp_path).runs.set_index("run_id")
    assert len(runs) == 6
    assert not runs.loc[victim.name, "verified"]
    assert "drill_sigterm.log" in runs.loc[victim.name, "problems"]


def test_load_history_keeps_a_run_with_unreadable_results(tmp_path):
    write_synthetic_runs(tmp_path, 4, seed=5)
    victim = sorted(tmp_path.glob("chaos-drill-*"))[-1]
    (victim / "results.json").write_text("{not json")
    history = load_history(tmp_path)
    row = history.runs.set_index("run_id").loc[victim.name]
    assert row["status"] == "unreadable"
    assert not row["verified"]
    assert "not valid JSON" in row["problems"]
    assert victim.name not in set(history.drills["run_id"])


def test_results_and_metrics_reach_the_frame(tmp_path):
    write_synthetic_runs(tmp_path, 3, seed=11)
    first = sorted(tmp_path.glob("chaos-drill-*"))[0]
    data = json.loads((first / "results.json").read_text())
    drills = load_history(tmp_path).drills
    row = drills[drills["run_id"].eq(first.name) & drills["drill"].eq("api_kill")].iloc[0]
    entry = next(d for d in data["drills"] if d["id"] == "api_kill")
    assert row["status"] == entry["status"]
    assert row["metric"] == pytest.approx(
        entry["metrics"].get("kill_round_trip_ms", float("nan")), nan_ok=True
    )


class Args:
    def __init__(self, root: Path) -> None:
        self.artifacts = str(root)


def test_trends_table_and_cli(synthetic_root, capsys):
    """``python -m flows trends`` prints one line per drill and names the incomplete run."""
    history = load_history(synthetic_root)
    table = trends_table(history)
    assert set(trends.EXPECTED_DRILLS) <= set(table.index)
    (incomplete,) = history.runs.loc[history.runs["status"].eq("incomplete"), "run_id"]

    assert cmd_trends(Args(synthetic_root)) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for drill in trends.EXPECTED_DRILLS:
        assert drill in rows, out
    assert f"24 run(s) under {synthetic_root}, 1 incomplete, 1 not verified" in out
    assert f"  flagged {incomplete}: status incomplete" in out


def test_trends_cli_exits_1_and_names_a_tampered_run(tmp_path, capsys):
    """Broken evidence is exit 1 (the table is still printed), naming the changed file."""
    write_synthetic_runs(tmp_path, 4, seed=3)
    victim = sorted(tmp_path.glob("chaos-drill-*"))[0]
    log = victim / "drill_sigterm.log"
    log.write_text(log.read_text().replace("PASS", "PASS!", 1))
    assert cmd_trends(Args(tmp_path)) == 1
    out = capsys.readouterr().out
    flagged = [line for line in out.splitlines() if line.startswith(f"  flagged {victim.name}:")]
    assert flagged and "drill_sigterm.log" in flagged[0], out


def test_importing_the_trend_maths_loads_no_drill_code():
    """``flows.trends.maths`` takes the drills from the registry, not from the harness."""
    code = (
        "import flows.trends.maths, sys; "
        "assert 'flows.drills.harness' not in sys.modules and 'psutil' not in sys.modules, "
        "sorted(m for m in sys.modules if m.startswith(('flows', 'psutil')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_terminal_and_site_share_the_words_for_rates_ages_and_streaks():
    """One formatting: a 47 h age reads in hours, 49 h in days; NaN and NaT read as none."""
    assert fmt.rate(5 / 7) == "71%" and fmt.rate(float("nan")) == "—"
    assert fmt.age(pd.Timedelta(hours=47)) == "47 h ago"
    assert fmt.age(pd.Timedelta(hours=49)) == "2 days ago"
    assert fmt.age(pd.NaT) == "never"
    assert fmt.streak(3.0, False) == "3 × not pass" and fmt.streak(float("nan"), True) == "—"
    # a night is missed once the 26 h window from its start has passed
    now = pd.Timestamp("2026-03-02 01:30", tz="UTC")
    assert fmt.last_night(now) == pd.Timestamp("2026-02-28", tz="UTC")
    assert fmt.last_night(now + pd.Timedelta(hours=1)) == pd.Timestamp("2026-03-01", tz="UTC")
    table = format_table(trends_table_of_one_stale_pass())
    assert table.loc["api_kill", "fresh"] == fmt.age(pd.Timedelta(hours=49))
    assert table.loc["api_kill", "pass all"] == "100%"


def trends_table_of_one_stale_pass() -> pd.DataFrame:
    """One passing api_kill run, summarised 49 h after it."""
    frame = drills_frame([(0, "api_kill", "pass")])
    return trends.drill_summary(runs_frame(frame), frame, DAY0 + pd.Timedelta(hours=49))


def test_trends_cli_on_an_empty_root_says_what_to_do(tmp_path, capsys):
    """No run folder is exit 2 with the commands that make one."""
    assert cmd_trends(Args(tmp_path / "nothing")) == 2
    assert "python -m flows synth" in capsys.readouterr().err
