"""The site's headline word, marks, categories, hosts and incremental publish, on histories
written through the real RunWriter with chosen outcomes and metrics.

``write_history`` is shared with the browser tests: each drill's outcome and key
metric per night come from the caller, so a flaky, a regressed and a drifting
drill exist by construction.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from flows import registry
from flows.evidence import RunWriter, new_run_dir
from flows.evidence.synthetic import write_synthetic_runs
from flows.site import publish, publish_histories, run_page_url
from flows.site._publish import load_sections
from flows.trends import marks
from flows.trends.history import load_history

Outcome = Callable[[str, int], str]
Metric = Callable[[str, int], float]

FLAKY_NIGHTS = {3, 5, 8, 11, 14, 17, 20, 23}  # sigkill fails on these: intermittent


def steady(drill: str, night: int) -> str:
    return "pass"


def write_history(
    root: Path,
    nights: int,
    outcome: Outcome = steady,
    metric: Metric = lambda drill, night: 10.0 + (night % 3),
    end: datetime | None = None,
    host: str = "drill-01",
    skip: frozenset[int] = frozenset(),
    scope: tuple[str, ...] = registry.DRILL_IDS,
) -> list[Path]:
    """One run per night ending on ``end`` (default: tonight 02:00 UTC), every drill."""
    end = end or datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
    written = []
    for night in range(nights):
        if night in skip:
            continue
        at = end - timedelta(days=nights - 1 - night)
        clock = [at]

        def now(clock: list[datetime] = clock) -> datetime:
            clock[0] += timedelta(seconds=1)
            return clock[0]

        run_dir = new_run_dir(root, now=at)
        writer = RunWriter(
            run_dir,
            drills=scope,
            command=f"scripts/recovery_drill.sh {run_dir}",
            config=None,
            now=now,
            host=lambda: {"hostname": host, "platform": "Linux", "cpus": 2},
            versions=lambda: {"python": "3.11.7", "chaos-drills": "0.1.0"},
            git_commit=lambda night=night: f"{'a' if night < nights - 2 else 'b'}{'0' * 39}",
            durable=False,
        )
        for drill in scope:
            status = outcome(drill, night)
            value = metric(drill, night)
            last = (
                f"PASS: {drill} held, {value} ms"
                if status == "pass"
                else f"FAIL: 1 of 4 workload processes survived ({drill})"
            )
            lines = [f"drill {drill}: start", "process tree before: 4 processes", "signal: sent"]
            lines += [f"filler line {i}" for i in range(40)] + [last]
            writer.log_path(drill).write_text("\n".join(lines) + "\n", encoding="utf-8")
            writer.record(
                {
                    "id": drill,
                    "status": status,
                    "duration_s": 0.5,
                    "summary": last,
                    "log": writer.log_path(drill).name,
                    "metrics": {registry.info(drill).metric: value},
                    "containment": "session" if drill == "sigterm" else "cgroup",
                }
            )
        writer.finalize()
        written.append(run_dir)
    return written


def marked(drill: str, night: int) -> str:
    """sigkill flaky, api_kill regressed on the last 2 nights, the rest passing."""
    if drill == "sigkill" and night in FLAKY_NIGHTS:
        return "fail"
    if drill == "api_kill" and night >= 28:
        return "fail"
    return "pass"


def drifting(drill: str, night: int) -> float:
    """crash_restart's key metric jumps 2.6x on the last three nights; the rest wobble."""
    base = 100.0 + 7 * ((night * 5) % 4)
    return base * 2.6 if drill == "crash_restart" and night >= 27 else base


@pytest.fixture(scope="module")
def marked_site(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("marks")
    root = work / "artifacts"
    write_history(root, 30, marked, drifting)
    index = publish(root, work / "site")
    return {"root": root, "site": work / "site", "home": index.read_text(encoding="utf-8")}


def test_marks_name_the_flaky_regressed_and_drifting_drills_with_their_numbers(marked_site):
    history = load_history(marked_site["root"])
    now = pd.Timestamp.now(tz="UTC")
    found = marks.marks(history.drills, history.runs, now, list(registry.DRILL_IDS))
    kinds = {d: [k for k, _ in m] for d, m in found.items()}
    assert kinds["sigkill"] == ["flaky"]
    assert kinds["api_kill"] == ["regressed"]
    assert kinds["crash_restart"] == ["drifting"]
    assert kinds["sigterm"] == [] and kinds["bad_input"] == []
    (flaky,) = [why for k, why in found["sigkill"] if k == "flaky"]
    assert re.search(r"P\(fail\) \d+% \(90% CI \d+%–\d+%\), 8 of last 30 outcomes failed", flaky)
    (regressed,) = [why for k, why in found["api_kill"] if k == "regressed"]
    assert "git_commit a000000000 → b000000000" in regressed
    (drift,) = [why for k, why in found["crash_restart"] if k == "drifting"]
    assert "×2.6" in drift


def test_home_page_shows_the_marks_and_fail_state(marked_site):
    home = marked_site["home"]
    assert '<meta name="evidence-status" content="fail">' in home
    assert 'data-state="fail"' in home
    for kind in ("flaky", "regressed", "drifting"):
        assert f'class="mark mark-{kind}"' in home
    # 30 runs: every pass rate over the last 30 is a rate, not "— (n=…)"
    assert "(n=" not in home and "<td>100%</td>" in home and "<td>73%</td>" in home
    # the red cell links to the drill's section on its run page
    assert re.search(r'href="generated/runs/chaos-drill-[\d-]+/#drill-api_kill"', home)


def test_a_run_page_puts_the_failing_drill_first_with_its_fail_line_and_containment(marked_site):
    last = sorted(p.name for p in marked_site["root"].glob("chaos-drill-*"))[-1]
    html = (marked_site["site"] / run_page_url(last) / "index.html").read_text()
    sections = re.findall(r'<section id="drill-(\w+)"', html)
    assert sections[0] == "api_kill" and len(sections) == len(registry.DRILL_IDS)
    assert 'href="drill_api_kill.log.html#L44">line 44: FAIL:' in html
    assert "containment: session, contained by session only" in html
    assert "containment: cgroup" in html
    assert "not a PASS/FAIL line" not in html
    log = (marked_site["site"] / run_page_url(last) / "drill_api_kill.log.html").read_text()
    assert '<span id="L44" class="line verdict-line">' in log


def test_failure_categories_count_per_category_and_drill(marked_site):
    trends_page = (marked_site["site"] / "generated" / "trends" / "index.html").read_text()
    row = re.search(r"<td>orphaned process</td>(.*?)</tr>", trends_page)
    assert row, "the FAIL lines about survivors are categorised"
    assert ">10</td>" in row.group(1) and "sigkill 8, api_kill 2" in row.group(1)


def test_a_history_whose_last_nights_are_missing_is_stale(tmp_path):
    root = tmp_path / "artifacts"
    end = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0) - timedelta(days=3)
    write_history(root, 10, end=end)
    home = publish(root, tmp_path / "site").read_text()
    assert '<meta name="evidence-status" content="stale">' in home
    assert "STALE" in home


def test_a_clean_recent_history_passes(tmp_path):
    root = tmp_path / "artifacts"
    write_history(root, 10)
    home = publish(root, tmp_path / "site").read_text()
    assert '<meta name="evidence-status" content="pass">' in home


def test_a_newest_run_that_lacks_a_drill_is_incomplete_and_that_drill_not_run(tmp_path):
    """The drill the newest night skipped does not read PASS from an older run."""
    root = tmp_path / "artifacts"
    today = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
    write_history(root, 5, end=today - timedelta(days=1))
    write_history(root, 1, end=today, scope=registry.DRILL_IDS[1:])
    # an hour after tonight's run: yesterday's outcomes are still within the window
    home = publish(
        root, tmp_path / "site", now=pd.Timestamp(today + timedelta(hours=1))
    ).read_text()
    assert '<meta name="evidence-status" content="incomplete">' in home
    assert f"lacks {registry.DRILL_IDS[0]}" in home
    row = re.search(rf'drills/{registry.DRILL_IDS[0]}/">.*?</tr>', home, re.S)
    assert row and "NOT RUN" in row.group(0)


def test_two_hosts_get_a_column_and_trends_each(tmp_path):
    """hosts/<name>/ folders are each an artifacts root; the home page has a column per host."""
    root = tmp_path / "artifacts"
    write_synthetic_runs(root / "hosts" / "alpha", 12, seed=1)
    write_synthetic_runs(root / "hosts" / "beta", 12, seed=2)
    index = publish(root, tmp_path / "site")
    home = index.read_text()
    assert "alpha (latest, UTC)" in home and "beta (latest, UTC)" in home
    for host in ("alpha", "beta"):
        trends_page = tmp_path / "site" / "generated" / "hosts" / host / "trends" / "index.html"
        assert f"Trends on {host}" in trends_page.read_text()
        some_run = sorted((root / "hosts" / host).glob("chaos-drill-*"))[-1].name
        assert (tmp_path / "site" / run_page_url(some_run, host) / "index.html").is_file()


def test_publish_with_a_site_dir_writes_nothing_elsewhere(tmp_path, monkeypatch):
    """The working directory (a checkout, say) is left as it was."""
    cwd = tmp_path / "checkout"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    root = tmp_path / "artifacts"
    write_synthetic_runs(root, 3, seed=3)
    publish(root, tmp_path / "site")
    assert list(cwd.iterdir()) == []
    staging = [p for p in (tmp_path / "site").glob(".publish-*") if p.is_dir()]
    assert not staging, "the staging folder is removed"


def test_republishing_renders_only_the_runs_whose_evidence_changed(tmp_path):
    root, site = tmp_path / "artifacts", tmp_path / "site"
    written = write_synthetic_runs(root, 6, seed=7)
    first = publish_histories(load_sections(root), site)[1]
    assert (first.rendered, first.cached) == (6, 0)
    again = publish_histories(load_sections(root), site)[1]
    assert (again.rendered, again.cached) == (0, 6)
    later = datetime.strptime(max(written).name[12:27], "%Y%m%d-%H%M%S").replace(tzinfo=UTC)
    write_synthetic_runs(root, 1, seed=8, start=later + timedelta(days=1))
    plus_one = publish_histories(load_sections(root), site)[1]
    # the new run, and its predecessor whose "next run" link changed
    assert (plus_one.rendered, plus_one.cached) == (2, 5)
    state = json.loads((site / ".publish-state.json").read_text())
    assert len(state) == 7


def test_sitemap_is_absent_and_run_pages_are_searchable(marked_site):
    assert not (marked_site["site"] / "sitemap.xml").exists()
    index = json.loads((marked_site["site"] / "search" / "search_index.json").read_text())
    titles = {d["title"] for d in index["docs"] if "/runs/" in d["location"]}
    assert len(titles) == 30


def test_the_window_set_at_publish_reaches_marks_banner_status_and_drill_pages(tmp_path):
    """publish(hours=1), three hours after tonight's run: every page reads the 1 h window."""
    root = tmp_path / "artifacts"
    write_history(root, 3)
    tonight = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
    now = pd.Timestamp(tonight + timedelta(hours=3))
    site = tmp_path / "site"
    home_md = publish(root, site, build=False, now=now, hours=1)
    home = home_md.read_text()
    assert 'data-state="stale"' in home and "stale after 1 h" in home
    assert "no outcome within 1 h" in home  # the stale marks
    assert 'data-fresh-hours="1"' in home and 'data-fresh-hours="26"' not in home
    drill = (site / "generated" / "drills" / f"{registry.DRILL_IDS[0]}.md").read_text()
    assert re.search(r'class="badge badge-fail" data-at="[^"]+" data-fresh-hours="1"', drill)
    # the same history within the default 26 h window passes
    default = publish(root, tmp_path / "site-26", build=False, now=now).read_text()
    assert 'data-state="pass"' in default and "stale after 26 h" in default


def test_drill_pages_age_their_last_verified_pass_in_the_browser_too(marked_site):
    """The drill page's "Last verified pass" carries its window, and the page the script."""
    html = (marked_site["site"] / "generated" / "drills" / "sigterm" / "index.html").read_text()
    assert re.search(r'data-at="[^"]+" data-fresh-hours="26"', html)
    assert 'querySelectorAll("[data-at]")' in html


def test_chart_date_labels_stay_inside_the_chart(marked_site):
    """The first and last date of each chart's x axis are not cut off at its edges."""
    charts = marked_site["site"] / "generated" / "charts"
    checked = 0
    for svg in charts.glob("*.svg"):
        text = svg.read_text()
        width = float(re.search(r'viewBox="0 0 ([\d.]+) ', text).group(1))
        labels = re.findall(
            r'<text x="([\d.]+)" y="[\d.]+" text-anchor="(\w+)">(\d{4}-\d{2}-\d{2})</text>', text
        )
        for x, anchor, label in labels:
            span = 6.6 * len(label)  # 11 px sans-serif: about 0.6 em a character
            left = float(x) - {"start": 0, "middle": span / 2, "end": span}[anchor]
            assert 0 <= left and left + span <= width, (svg.name, label, anchor, x)
            checked += 1
    assert checked >= 6 * 3, "the drill charts have dated x axes"
