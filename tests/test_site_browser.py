"""The built evidence site in a real browser (Debian's chromium), served on 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from flows.evidence.synthetic import write_synthetic_runs
from flows.site import publish, run_page_url
from flows.trends import maths as trends
from flows.trends.history import load_history

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="/usr/bin/chromium missing: `apt-get install chromium` (make test does it as root)",
    ),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="PyPI playwright not installed")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".log": "text/plain"}

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    work = tmp_path_factory.mktemp("browser")
    root = work / "artifacts"
    write_synthetic_runs(root, 10, seed=5)
    publish(root, work / "site", docs_dir=work / "docs")
    handler = functools.partial(_Quiet, directory=str(work / "site"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {
            "base": f"http://127.0.0.1:{server.server_address[1]}/",
            "runs": load_history(root, check=False).runs,
        }
    finally:
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
    """A fresh page that records every URL the browser asks for."""
    context = browser.new_context()
    pg = context.new_page()
    pg.requested = []
    pg.on("request", lambda request: pg.requested.append(request.url))
    try:
        yield pg
    finally:
        hosts = {urlsplit(u).hostname for u in pg.requested if not u.startswith(("data:", "blob:"))}
        context.close()
        assert hosts <= {"127.0.0.1"}, f"requests left 127.0.0.1: {sorted(hosts)}"


def test_home_shows_every_drill_status_and_charts_load(served, page, tmp_path):
    """Every drill has a status badge, each chart image decodes, and a screenshot is saved."""
    page.goto(served["base"], wait_until="networkidle")
    table = page.locator("table").first
    for drill in trends.EXPECTED_DRILLS:
        row = table.locator("tr", has=page.locator(f'a[href*="drills/{drill}/"]'))
        assert row.locator(".badge").first.inner_text().strip() in {
            "PASS",
            "FAIL",
            "ERROR",
            "INCOMPLETE",
            "MISSING",
        }
    images = page.locator('img[src$=".svg"]')
    assert images.count() >= 4
    for i in range(images.count()):
        img = images.nth(i)
        img.scroll_into_view_if_needed()
        page.wait_for_function("(img) => img.complete", arg=img.element_handle())
        assert img.evaluate("(img) => img.naturalWidth") > 0
    shot = tmp_path / "home.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_run_page_opens_from_the_archive_and_its_raw_log_loads(served, page):
    runs = served["runs"]
    run_id = runs["run_id"].iloc[-1]
    page.goto(served["base"], wait_until="networkidle")
    page.locator("nav.md-nav--primary a", has_text="Archive").first.click()
    page.wait_for_load_state("networkidle")
    page.locator("table a").first.click()  # newest month
    page.wait_for_load_state("networkidle")
    page.locator(f'a[href*="{run_id}"]').first.click()
    page.wait_for_load_state("networkidle")
    assert page.url.endswith(run_page_url(run_id))
    assert page.locator("h1").inner_text().strip() == run_id
    with page.expect_navigation():
        page.locator('a[href="drill_sigterm.log"]').first.click()
    body = page.locator("body").inner_text()
    assert body.strip().splitlines()[-1].split(" ", 1)[1].startswith(("PASS:", "FAIL:"))


def test_search_finds_a_run_by_id(served, page):
    """Typing a run id lists the archive month that holds it; from there the run opens.

    Run pages opt out of the search index (thousands of them would make it
    megabytes), so the hit is the month page with the id highlighted.
    """
    run_id = served["runs"]["run_id"].iloc[2]
    month = f"{run_id[12:16]}-{run_id[16:18]}"
    page.goto(served["base"], wait_until="networkidle")
    page.locator("label.md-search__icon, .md-search__input").first.click()
    page.locator("input.md-search__input").press_sequentially(run_id, delay=20)
    hit = page.locator(f'a.md-search-result__link[href*="generated/archive/{month}/"]').first
    hit.wait_for(timeout=20_000)
    assert run_id.split("-")[2] in hit.inner_text()
    hit.click()
    page.wait_for_load_state("networkidle")
    page.locator(f'a[href*="{run_id}"]').first.click()
    page.wait_for_load_state("networkidle")
    assert page.url.endswith(run_page_url(run_id))
