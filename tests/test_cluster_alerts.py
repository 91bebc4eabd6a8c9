"""Alerts, for real: a Prefect server, automations made by code, a webhook receiver on 127.0.0.1.

One local server (SQLite) serves the test: the automations are upserted twice
(idempotent by name), a nightly-drills run that fails before any drill (a
missing config) makes the server POST the failed-run alert to the receiver, and
a deployment that never completes a run makes it POST the missed-night alert
once the (10-second) window passes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.pipeline.alerts import (
    FAILED_ALERT,
    ensure_alerts,
    missed_alert_name,
    webhook_notifier,
)
from flows.pipeline.deploy import LocalServer, nightly_deployment
from flows.pipeline.nightly import nightly_drills
from tests.conftest import free_port
from tests.test_deploy import wait_for


class _Receiver(BaseHTTPRequestHandler):
    posts: list[dict[str, Any]]

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length", 0))
        self.posts.append(json.loads(self.rfile.read(length) or b"{}"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    posts: list[dict[str, Any]] = []
    handler = type("Receiver", (_Receiver,), {"posts": posts})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/hook", posts
    httpd.shutdown()
    httpd.server_close()


def _drain_to_this_server() -> None:
    """Deliver this process's buffered events and logs while the server still answers, and
    stop their workers. Prefect keeps one events worker per process, bound to the API it
    first sent to: left running, it would carry later tests' events (another server's) to
    this one once it is gone, and their final drain would wait on it until a timeout."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        _, pending = service.drain_all(timeout=60)  # type: ignore[misc]
        assert not pending, f"{service.__name__}: {len(pending)} item(s) not delivered in 60s"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LocalServer]:
    local = LocalServer(free_port(), home=tmp_path / "prefect-home")
    local.start()
    try:
        with temporary_settings(updates={PREFECT_API_URL: local.api_url}):
            yield local
            _drain_to_this_server()
    finally:
        local.stop()


def _posts_with(posts: list[dict[str, Any]], words: str) -> list[dict[str, Any]]:
    return [p for p in posts if words in json.dumps(p)]


@pytest.mark.slow
def test_failed_run_and_missed_night_post_to_the_webhook(
    server: LocalServer, receiver: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """Re-deploying keeps one automation per name; a failed nightly run and a night with
    no completed run each reach the webhook receiver on 127.0.0.1."""
    url, posts = receiver
    deployment = nightly_deployment(artifacts_root=tmp_path / "art", site_dir=tmp_path / "site")
    deployment_id = deployment.apply()
    window = timedelta(seconds=10)
    first = ensure_alerts({"nightly": (deployment_id, "default")}, webhook_notifier(url), window)
    again = ensure_alerts({"nightly": (deployment_id, "default")}, webhook_notifier(url), window)
    assert first == again and set(first) == {FAILED_ALERT, missed_alert_name("nightly")}
    with get_client(sync_client=True) as client:
        for name in first:
            assert len(client.read_automations_by_name(name)) == 1, name

    state = nightly_drills(
        config=str(tmp_path / "no-such.toml"), artifacts_root=str(tmp_path / "art"),
        publish=False, return_state=True,
    )  # fmt: skip
    assert state.is_failed()
    failed = wait_for(lambda: _posts_with(posts, "a nightly run failed"), 60, "failed alert")
    assert "Failed" in failed[0]["text"], failed
    missed = wait_for(lambda: _posts_with(posts, "missed night"), 90, "missed-night alert")
    assert "nightly" in missed[0]["text"] and "default" in missed[0]["text"], missed
