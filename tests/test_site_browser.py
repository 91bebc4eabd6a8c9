"""The built evidence site in a real browser (Debian's chromium), served on 127.0.0.1 by
``python -m http.server``'s own handler (which serves ``.log`` as a download).

Three sites are built once for the module: a clean history (PASS), one with a
flaky, a regressed and a drifting drill (FAIL), and one whose last two nights are
missing (STALE), written by :func:`tests.test_site_marks.write_history`.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from flows import registry
from flows.site import publish, run_page_url
from tests.conftest import CHROMIUM, NEEDS_CHROMIUM
from tests.test_site_marks import drifting, marked, write_history

pytestmark = NEEDS_CHROMIUM
sync_api = pytest.importorskip("playwright.sync_api", reason="PyPI playwright not installed")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def _serve(site: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    work = tmp_path_factory.mktemp("browser")
    write_history(work / "clean", 12)
    write_history(work / "marked", 30, marked, drifting)
    tonight = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
    write_history(work / "stale", 10, end=tonight - timedelta(days=2))
    publish(work / "clean", work / "clean-site")
    publish(work / "marked", work / "marked-site")
    publish(work / "stale", work / "stale-site")
    servers = [_serve(work / f"{name}-site") for name in ("clean", "marked", "stale")]
    runs = sorted(p.name for p in (work / "marked").glob("chaos-drill-*"))
    try:
        yield {
            "clean": servers[0][1],
            "marked": servers[1][1],
            "stale": servers[2][1],
            "runs": runs,
        }
    finally:
        for server, _ in servers:
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def browser(served) -> Iterator:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser) -> Iterator:
    """A fresh 1400 px page that records every URL the browser asks for."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.requested = []
    pg.on("request", lambda request: pg.requested.append(request.url))
    try:
        yield pg
    finally:
        hosts = {urlsplit(u).hostname for u in pg.requested if not u.startswith(("data:", "blob:"))}
        context.close()
        assert hosts <= {"127.0.0.1"}, f"requests left 127.0.0.1: {sorted(hosts)}"


def _status(page) -> tuple[str, str]:
    meta = page.locator('meta[name="evidence-status"]').get_attribute("content")
    return meta, page.locator("#evidence-status .status-word").inner_text().strip()


def test_headline_says_pass_for_a_clean_history_and_fail_for_a_failing_drill(served, page):
    page.goto(served["clean"], wait_until="networkidle")
    assert _status(page) == ("pass", "PASS")
    page.goto(served["marked"], wait_until="networkidle")
    assert _status(page) == ("fail", "FAIL")
    assert "api_kill fails" in page.locator("#evidence-status").inner_text()


def test_a_site_nobody_republished_turns_stale_in_the_browser(served, page):
    """Three days after publishing, the page's own script says STALE (no republish)."""
    page.clock.install(time=datetime.now(UTC) + timedelta(days=3))
    page.goto(served["clean"], wait_until="networkidle")
    assert _status(page) == ("stale", "STALE")
    assert "older than the 26 h" in page.locator("#evidence-status").inner_text()
    ages = page.locator("[data-at]").all_inner_texts()
    assert ages and all(a.endswith("days ago") for a in ages)
    # a drill page ages its "Last verified pass" the same way: red, in days
    page.goto(served["clean"] + "generated/drills/sigterm/", wait_until="networkidle")
    last_pass = page.locator("[data-at]")
    assert last_pass.inner_text().endswith("days ago")
    assert "badge-fail" in (last_pass.get_attribute("class") or "")


def test_a_history_whose_last_nights_are_missing_reads_stale(served, page):
    """No clock moved: the published word is STALE, the missed nights named as gaps."""
    page.goto(served["stale"], wait_until="networkidle")
    assert _status(page) == ("stale", "STALE")
    assert "newest outcome is from" in page.locator("#evidence-status").inner_text()
    assert page.locator("text=gap(s) in the last 30 nights").count() == 1


def test_flaky_regressed_and_drifting_drills_are_marked_on_home(served, page):
    page.goto(served["marked"], wait_until="networkidle")
    table = page.locator("table").first
    for drill, kind in (
        ("sigkill", "flaky"),
        ("api_kill", "regressed"),
        ("crash_restart", "drifting"),
    ):
        row = table.locator("tr", has=page.locator(f'a[href$="drills/{drill}/"]'))
        assert row.locator(f".mark-{kind}").count() == 1, (drill, kind)
        assert row.locator(".mark-" + kind).get_attribute("title")  # the numbers behind it
    clean_row = table.locator("tr", has=page.locator('a[href$="drills/bad_input/"]'))
    assert clean_row.locator(".mark").count() == 0


def test_one_click_from_a_red_cell_to_the_fail_line(served, page):
    """The red api_kill cell opens the run page at that drill, first, FAIL line beside it."""
    page.goto(served["marked"], wait_until="networkidle")
    row = page.locator("table").first.locator("tr", has=page.locator('a[href$="drills/api_kill/"]'))
    row.locator(".badge-fail").first.click()
    page.wait_for_load_state("networkidle")
    assert page.url.endswith(f"{run_page_url(served['runs'][-1])}#drill-api_kill")
    section = page.locator("section#drill-api_kill")
    assert page.locator("section.drill-result").first.get_attribute("id") == "drill-api_kill"
    fail_line = section.locator("a.fail-line")
    assert fail_line.is_visible() and fail_line.bounding_box()["y"] < 900  # no scrolling
    assert "FAIL: 1 of 4 workload processes survived" in fail_line.inner_text()
    fail_line.click()  # the log page, scrolled to the line
    page.wait_for_load_state("networkidle")
    assert page.url.endswith("drill_api_kill.log.html#L44")
    line = page.locator("#L44")
    assert line.is_visible() and "FAIL:" in line.inner_text()


def test_a_raw_log_is_displayed_not_downloaded(served, page):
    """Every log link opens a page (http.server serves .log itself as a download)."""
    run = served["runs"][-1]
    page.goto(served["marked"] + run_page_url(run), wait_until="networkidle")
    downloads = []
    page.on("download", lambda d: downloads.append(d))
    with page.expect_navigation():
        page.locator('a[href="drill_sigterm.log.html"]').first.click()
    body = page.locator("pre.log").inner_text()
    assert "PASS: sigterm held" in body
    assert not downloads


def test_tables_fit_at_1400_px_and_pages_at_390_px(served, browser):
    base = served["marked"]
    run = served["runs"][-1]
    urls = [
        "",
        "generated/trends/",
        "generated/drills/api_kill/",
        "generated/archive/",
        f"generated/archive/{run[12:16]}-{run[16:18]}/",
        run_page_url(run),
    ]
    for width in (1400, 390):
        context = browser.new_context(viewport={"width": width, "height": 900})
        pg = context.new_page()
        try:
            for url in urls:
                pg.goto(base + url, wait_until="networkidle")
                if width == 1400:
                    over = pg.evaluate(
                        "[...document.querySelectorAll('table')].filter("
                        "t => t.getBoundingClientRect().right > "
                        "t.parentElement.getBoundingClientRect().right + 1).length"
                    )
                    assert over == 0, f"{url}: {over} table(s) wider than their column"
                page_width = pg.evaluate("document.documentElement.scrollWidth")
                assert page_width <= width + 1, f"{url} at {width} px is {page_width} px wide"
        finally:
            context.close()


def test_search_for_a_run_id_leads_to_its_run_page(served, page):
    run_id = served["runs"][5]
    page.goto(served["marked"], wait_until="networkidle")
    page.locator("label.md-search__icon, .md-search__input").first.click()
    page.locator("input.md-search__input").press_sequentially(run_id, delay=20)
    hit = page.locator("a.md-search-result__link").first
    hit.wait_for(timeout=20_000)
    assert urlsplit(hit.get_attribute("href")).path.endswith(run_page_url(run_id))
    hit.click()
    page.wait_for_load_state("networkidle")
    assert page.locator("h1").inner_text().strip() == run_id


def test_timeline_cells_link_to_their_run(served, page):
    """The SVG (an <object>, so its links work) has a linked cell per drill and night."""
    page.goto(served["marked"], wait_until="networkidle")
    count = "document.querySelector('object').contentDocument.querySelectorAll('a').length"
    page.wait_for_function(f"() => {count} > 0")
    assert page.evaluate(count) == len(registry.DRILL_IDS) * 30
    href = page.evaluate(
        "[...document.querySelector('object').contentDocument.querySelectorAll('a')]"
        ".map(a => a.getAttribute('href')).pop()"
    )
    assert href == f"../runs/{served['runs'][-1]}/#drill-{registry.DRILL_IDS[-1]}"
