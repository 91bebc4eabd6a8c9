"""Where the site's inputs live, and the URL of a run's page in the built site."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
DOCS = REPO / "docs"
CONFIG = REPO / "mkdocs.yml"
CHECKOUT_SITE = REPO / "site"  # where `make site` builds: the one site DOCS/generated is for
GENERATED = "generated"


def run_page_url(run_id: str) -> str:
    """The URL of a run's page relative to the site root, e.g. ``generated/runs/<id>/``."""
    return f"{GENERATED}/runs/{run_id}/"
