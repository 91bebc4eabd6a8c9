"""The generated reference page follows the code: drills, routes and CLI help."""

from __future__ import annotations

from flows.drills import DRILL_IDS, KEY_METRICS
from flows.site._reference import reference_page


def test_reference_lists_every_drill_route_and_command() -> None:
    """Each drill with its log and key metric, each HTTP route, each sub-command's help."""
    page = reference_page()
    for drill_id in DRILL_IDS:
        assert f"| `{drill_id}` | `drill_{drill_id}.log` | `{KEY_METRICS[drill_id]}` |" in page
    for route in (
        "/healthz",
        "/processes",
        "/process",
        "/process/start",
        "/process/kill",
        "/process/restart",
        "/events",
    ):
        assert f"| `{route}` |" in page
    for command in ("run", "verify", "trends", "publish", "nightly", "serve"):
        assert f"### `python -m flows {command}`" in page
    assert "### `python -m supervisor serve`" in page
    assert "| `POST` | `/process/kill` | 200, 401, 404, 413, 422 |" in page
