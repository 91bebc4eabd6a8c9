"""The rerun form in the real Prefect UI (Debian's chromium): pick a drill, submit, see the table.

``python -m flows serve --with-server`` runs as a child process (its own Prefect
server on a free loopback port, and the served ``nightly`` deployment); the
browser goes Deployments, nightly, Run, Custom run, switches ``drills`` to a
list, picks ``api_kill`` from the multi-select of the registry's ids, submits,
waits for the run to be Completed and opens its Artifacts tab.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import CHROMIUM, NEEDS_CHROMIUM, free_port
from tests.test_deploy import start_serve, stop_serve, wait_for

pytestmark = NEEDS_CHROMIUM
sync_api = pytest.importorskip("playwright.sync_api", reason="PyPI playwright not installed")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """``make serve`` on a free port, from a folder outside the checkout; the UI's base URL."""
    port = free_port()
    proc, log = start_serve(tmp_path, port, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"

    def registered() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}")
        try:
            answer = httpx.post(f"{base}/api/deployments/filter", json={}, timeout=5)
        except httpx.HTTPError:
            return False
        return answer.status_code == 200 and any(d["name"] == "nightly" for d in answer.json())

    try:
        wait_for(registered, 150, "the served nightly deployment")
        yield base
    finally:
        stop_serve(proc, timeout=60)
        log.close()


def test_custom_run_form_picks_a_drill_from_the_list_and_shows_the_table(
    served: str, tmp_path: Path
) -> None:
    """Custom run offers exactly the registry's ids for ``drills``; picking api_kill and
    submitting runs only that drill to Completed, and the Artifacts tab shows its table."""
    from flows.registry import DRILL_IDS

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            page.goto(f"{served}/v2/deployments")
            page.get_by_role("link", name="nightly", exact=True).first.click()
            page.get_by_role("button", name="Run", exact=True).first.click()
            page.get_by_role("menuitem", name="Custom run").click()
            page.get_by_text("drills (Optional)").wait_for()
            page.get_by_text("list", exact=True).first.click()  # drills: list, not None
            page.get_by_text("Select", exact=True).first.click()
            options = [o.inner_text().strip() for o in page.get_by_role("option").all()]
            assert options == list(DRILL_IDS)
            page.get_by_role("option", name="api_kill", exact=True).click()
            page.keyboard.press("Escape")
            page.get_by_role("button", name="Submit", exact=True).click()
            # back on the deployment's runs; open the new run (the only one: no schedule fired)
            page.locator("a[href*='/runs/flow-run/']").first.click()
            page.wait_for_url("**/runs/flow-run/**")
            page.get_by_text("Completed", exact=True).first.wait_for(timeout=180_000)
            page.get_by_role("tab", name="Artifacts").click()
            page.get_by_text("drill-results", exact=True).first.click()  # the TABLE card
            table = page.get_by_role("table").first
            table.wait_for()
            text = table.inner_text()
        finally:
            browser.close()
    assert "api_kill" in text and "PASS" in text, text
    for other in set(DRILL_IDS) - {"api_kill"}:
        assert other not in text, text
    (run_dir,) = (tmp_path / "art").glob("chaos-drill-*")
    assert (run_dir / "results.json").is_file()
