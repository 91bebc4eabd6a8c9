"""The evidence site: a strict MkDocs build plus plain run pages from a few runs, one failed
and one incomplete."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from flows.cli import build_parser
from flows.errors import EvidenceError
from flows.evidence.synthetic import write_synthetic_runs
from flows.site import cmd_publish, publish, run_page_url
from flows.trends import maths as trends
from flows.trends.history import load_history
from tests.conftest import run_flows


def _publish_cli(root: Path, site: Path, *flags: str) -> int:
    """``python -m flows publish`` in this process, through the real parser and its defaults."""
    argv = ["publish", "--artifacts", str(root), "--site-dir", str(site), *flags]
    return cmd_publish(build_parser().parse_args(argv))


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.refs.append((tag, value))


def refs_of(page: Path) -> list[tuple[str, str]]:
    parser = _Refs()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.refs


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Eight synthetic runs (one failed api_kill, one incomplete), built strictly."""
    work = tmp_path_factory.mktemp("site")
    root = work / "artifacts"
    write_synthetic_runs(root, 8, seed=2)
    index = publish(root, work / "site", docs_dir=work / "docs")
    runs = load_history(root, check=False).runs
    failed = runs[runs["verdict"].eq("fail")]["run_id"].tolist()
    incomplete = runs[runs["status"].eq("incomplete")]["run_id"].tolist()
    assert failed and incomplete, "the fixture must hold a failed and an incomplete run"
    return {
        "root": root,
        "site": work / "site",
        "docs": work / "docs",
        "index": index,
        "runs": runs["run_id"].tolist(),
        "failed": failed[0],
        "incomplete": incomplete[0],
    }


def page(built: dict, url: str) -> str:
    return (built["site"] / url / "index.html").read_text(encoding="utf-8")


def test_strict_build_writes_home_with_every_drill(built):
    """publish returns the built index.html; the home page badges every drill."""
    assert built["index"] == built["site"] / "index.html"
    home = built["index"].read_text(encoding="utf-8")
    for drill in trends.EXPECTED_DRILLS:
        assert f"generated/drills/{drill}/" in home
    assert home.count('class="badge badge-') >= 2 * len(trends.EXPECTED_DRILLS)
    assert "Completeness" in home and "Evidence integrity" in home


def test_every_run_has_a_page_with_its_raw_files(built):
    for run_id in built["runs"]:
        assert run_page_url(run_id) == f"generated/runs/{run_id}/"
        html = page(built, run_page_url(run_id))
        assert f"python -m flows verify {built['root'] / run_id}" in html
        assert (built["site"] / run_page_url(run_id) / "results.json").is_file()
        assert (built["site"] / run_page_url(run_id) / "drill_sigterm.log").is_file()


def test_failed_run_page_reads_like_the_evidence_document(built):
    """Date, command, artifact folder, scope, results with log lines, findings, conclusion."""
    html = page(built, run_page_url(built["failed"]))
    for heading in (
        "Drill command",
        "Artifact folder",
        "Scope",
        "Results",
        "Findings",
        "Conclusion",
        "Evidence files",
        "Verify it yourself",
    ):
        assert heading in html
    assert "badge-fail" in html
    found = re.search(r"<strong>(\w+)</strong> (?:fail|error): FAIL: ", html)
    assert found, "findings name the failed drill and its FAIL line"
    assert f'href="drill_{found.group(1)}.log"' in html  # the raw file
    assert f'class="fail-line" href="drill_{found.group(1)}.log.html#L' in html
    assert "did not pass" in html
    manifest = json.loads((built["root"] / built["failed"] / "manifest.json").read_text())
    for digest in manifest["files"].values():
        assert digest in html


def test_incomplete_run_page_says_it_proves_nothing_about_the_rest(built):
    html = page(built, run_page_url(built["incomplete"]))
    assert "badge-incomplete" in html
    assert "No manifest.json" in html
    assert "did not finish" in html
    assert "proves nothing about the rest" in html


def dead_links(site: Path) -> list[str]:
    """Every local link or image of the built site whose target is not there."""
    missing = []
    for html in site.rglob("*.html"):
        if "assets" in html.parts or html.name == "404.html":  # 404 uses root-absolute URLs
            continue
        for tag, ref in refs_of(html):
            parts = urlsplit(ref)
            if parts.scheme or ref.startswith(("#", "mailto:", "data:")):
                continue
            target = (html.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                missing.append(f"{html.relative_to(site)}: <{tag}> {ref}")
    return missing


def test_every_local_link_and_image_resolves(built):
    """Raw-HTML links bypass MkDocs' own check, so walk every page of the built site."""
    missing = dead_links(built["site"])
    assert not missing, "\n".join(missing[:20])


def test_a_site_published_outside_a_checkout_has_no_dead_link(tmp_path, monkeypatch):
    """No ./docs (an installed package, a cron job in /tmp): run pages' "how to verify"
    link still opens a page, the one the package ships."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "artifacts"
    write_synthetic_runs(root, 2, seed=5)
    publish(root, tmp_path / "site")
    missing = dead_links(tmp_path / "site")
    assert not missing, "\n".join(missing[:20])
    verify_page = (tmp_path / "site" / "verify" / "index.html").read_text()
    assert "python -m flows verify ROOT --key" in verify_page


def test_a_run_whose_writer_died_shows_the_digests_a_later_run_signed(built):
    """No manifest.json but a signed statement: the page lists the signed digests rather
    than saying the files cannot be checked."""
    run = built["root"] / built["incomplete"]
    assert not (run / "manifest.json").exists() and (run / "attestation.dsse.json").exists()
    html = page(built, run_page_url(built["incomplete"]))
    assert "never sealed" not in html and "cannot be checked" not in html
    assert "the run stopped before sealing it" in html
    digest = hashlib.sha256((run / "results.json").read_bytes()).hexdigest()
    assert f"{digest}  results.json" in html


def test_site_loads_nothing_from_other_hosts(built):
    """No external script, stylesheet, font or image on any page."""
    external = []
    for html in built["site"].rglob("*.html"):
        for tag, ref in refs_of(html):
            if tag in ("script", "link", "img", "source", "iframe") and urlsplit(ref).scheme:
                external.append(f"{html.name}: <{tag}> {ref}")
    assert not external, external


def test_run_pages_stay_out_of_the_nav_but_are_reachable_from_the_archive(built):
    home = built["index"].read_text(encoding="utf-8")
    assert "generated/runs/" not in home.split('class="md-content"')[0]
    month = built["runs"][0].split("-")[2][:6]
    archive = page(built, f"generated/archive/{month[:4]}-{month[4:]}")
    assert f"../../runs/{built['runs'][0]}/" in archive


def test_search_index_holds_every_run_page_titled_by_its_id(built):
    index = json.loads((built["site"] / "search" / "search_index.json").read_text())
    by_location = {doc["location"]: doc["title"] for doc in index["docs"]}
    for run_id in built["runs"]:
        assert by_location[run_page_url(run_id)] == run_id


def test_charts_are_transparent_svg_with_grey_text(built):
    charts = sorted((built["site"] / "generated" / "charts").glob("*.svg"))
    assert len(charts) >= 3
    for chart in charts:
        svg = chart.read_text()
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg
        assert "#8a8a8a" in svg
        assert "fill: #ffffff" not in svg


def test_a_tampered_run_is_marked_not_verified(tmp_path):
    """A changed log turns its run page and the home page red, and the build still passes."""
    root = tmp_path / "artifacts"
    write_synthetic_runs(root, 5, seed=9)
    victim = sorted(root.glob("chaos-drill-*"))[0]
    (victim / "drill_bad_input.log").write_text("PASS: trust me\n")
    index = publish(root, tmp_path / "site", docs_dir=tmp_path / "docs")
    run_html = (tmp_path / "site" / run_page_url(victim.name) / "index.html").read_text()
    assert "NOT VERIFIED" in run_html
    assert "changed file drill_bad_input.log" in run_html
    assert "fail verification" in index.read_text()


def test_strict_build_fails_on_a_broken_link(tmp_path):
    """The strict check can fail: a hand-written page with a dead link stops publish."""
    root = tmp_path / "artifacts"
    write_synthetic_runs(root, 2, seed=1)
    extra = tmp_path / "handwritten"
    extra.mkdir()
    (extra / "verify.md").write_text("# Verify\n\n[gone](no-such-page.md)\n")
    with pytest.raises(EvidenceError, match="strict"):
        publish(root, tmp_path / "site", extra_docs=extra)


def test_publish_of_an_empty_root_still_builds(tmp_path):
    index = publish(tmp_path / "none", tmp_path / "site", docs_dir=tmp_path / "docs")
    assert "No runs yet" in index.read_text()


def test_cli_publish_no_build_writes_the_sources_only(tmp_path):
    """``--no-build`` writes the MkDocs sources and the plain pages into DIR, builds nothing."""
    root = tmp_path / "artifacts"
    write_synthetic_runs(root, 3, seed=4)

    assert _publish_cli(root, tmp_path / "out", "--no-build") == 0
    out = tmp_path / "out"
    assert (out / "generated" / "home.md").is_file()
    assert len(list((out / "generated" / "runs").glob("*/index.html"))) == 3
    assert not (out / "index.html").exists()


def test_the_nav_lists_every_drill_of_the_registry(built):
    """The built nav links each registry drill's page."""
    from flows import registry

    home = built["index"].read_text(encoding="utf-8")
    nav = home.split('class="md-content"')[0]
    for drill_id in registry.DRILL_IDS:
        assert f"generated/drills/{drill_id}/" in nav


def test_cli_publish_exits_1_when_a_run_does_not_verify(tmp_path, capsys):
    """Broken evidence is exit 1 even though the pages are written; the message names the run."""
    root = tmp_path / "artifacts"
    write_synthetic_runs(root, 3, seed=4)
    victim = next(
        run
        for run in sorted(root.glob("chaos-drill-*"))
        if (run / "manifest.json").is_file() and (run / "drill_bad_input.log").is_file()
    )
    (victim / "drill_bad_input.log").write_text("PASS: trust me\n")

    assert _publish_cli(root, tmp_path / "site") == 1
    assert (tmp_path / "site" / run_page_url(victim.name) / "index.html").is_file()
    assert f"1 run(s) do not verify ({victim.name})" in capsys.readouterr().err


def test_cli_publish_of_a_missing_root_is_a_usage_error(tmp_path):
    """A mistyped --artifacts exits 2 naming the folder, and builds nothing."""
    out = run_flows(
        "publish", "--artifacts", str(tmp_path / "typo"), "--site-dir", str(tmp_path / "site")
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"evidence root {tmp_path / 'typo'} is not a folder" in out.stderr
    assert not (tmp_path / "site").exists()


def test_counts_agree_between_the_archive_the_months_and_the_run_pages(built):
    """The archive index's run counts add up to the month pages' rows and the run pages."""
    index = page(built, "generated/archive")
    rows = re.findall(r'<a href="(\d{4}-\d{2})/">\1</a> \| (\d+) \|', index) or re.findall(
        r'href="(\d{4}-\d{2})/">\1</a></td>\s*<td[^>]*>(\d+)</td>', index
    )
    assert rows, "the archive index lists its months with their run counts"
    total = 0
    for month, runs in rows:
        month_page = page(built, f"generated/archive/{month}")
        listed = set(re.findall(r'<span id="(chaos-drill-[\d-]+)">', month_page))
        assert len(listed) == int(runs), month
        total += int(runs)
    assert total == len(built["runs"])
    assert len(list((built["site"] / "generated" / "runs").glob("*/index.html"))) == total


def test_a_deleted_newest_run_breaks_the_log_and_publish_says_so(tmp_path, capsys):
    """Every remaining folder matches its manifest, but the log lists a run that is gone:
    exit 1 naming the log, FAIL on the home page with the log's problems, and no run page
    claiming the evidence is intact without saying so."""
    root = tmp_path / "artifacts"
    write_synthetic_runs(root, 6, seed=3)
    shutil.rmtree(sorted(root.glob("chaos-drill-*"))[-1])
    problems = load_history(root).problems
    assert problems, "verify finds the log broken"

    assert _publish_cli(root, tmp_path / "out", "--no-build") == 1
    err = capsys.readouterr().err
    assert f"the evidence log does not verify ({len(problems)} problem(s))" in err
    home = (tmp_path / "out" / "generated" / "home.md").read_text()
    # the newest run is gone, so the word may be STALE too; never PASS, and the log is a reason
    assert 'data-state="pass"' not in home
    assert re.search(r'class="status-why">[^<]*the evidence log does not verify', home)
    assert "The evidence log does not verify" in home  # the integrity section
    assert "verifies intact" not in home
    kept = sorted(p.name for p in root.glob("chaos-drill-*"))[0]
    run_html = (tmp_path / "out" / run_page_url(kept) / "index.html").read_text()
    assert "The evidence log of this root does not verify" in run_html


def test_cli_publish_takes_the_window_and_refuses_a_non_positive_one(tmp_path):
    """--stale-hours reaches the home page's banner; 0 is a usage error naming the flag."""
    root = tmp_path / "artifacts"
    write_synthetic_runs(root, 2, seed=6)
    out = tmp_path / "out"
    done = run_flows(
        "publish", "--artifacts", str(root), "--site-dir", str(out), "--no-build",
        "--stale-hours", "3",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    home = (out / "generated" / "home.md").read_text()
    assert 'data-window-hours="3"' in home and "stale after 3 h" in home
    bad = run_flows(
        "publish", "--artifacts", str(root), "--site-dir", str(out), "--stale-hours", "0"
    )
    assert bad.returncode == 2 and "--stale-hours must be a positive number" in bad.stderr
