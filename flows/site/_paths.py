"""Where the site's inputs live, and the URLs of pages in the built site.

Nothing here looks for a repository: the MkDocs config, the theme override and
the site's own pages (home, About, stylesheet) ship inside the package
(``flows/site/assets/``, read with :mod:`importlib.resources`). The other
hand-written pages (architecture, verify, ...) come from a docs folder given by
the caller, by default ``./docs`` of the working directory when it exists (a
checkout), else none: an installed wheel builds the evidence pages alone.
"""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path

GENERATED = "generated"
ASSETS = files("flows.site") / "assets"


def default_docs() -> Path | None:
    """``./docs`` of the working directory if it is a folder, else None."""
    docs = Path.cwd() / "docs"
    return docs if docs.is_dir() else None


def assets_dir() -> Path:
    """The packaged assets as a real folder (a wheel installs them as plain files)."""
    with as_file(ASSETS) as path:
        return Path(path)


def host_prefix(host: str) -> str:
    """Where a host's pages live under ``generated/``: nothing for a one-host root."""
    return f"hosts/{host}/" if host else ""


def run_page_url(run_id: str, host: str = "") -> str:
    """The URL of a run's page relative to the site root, e.g. ``generated/runs/<id>/``."""
    return f"{GENERATED}/{host_prefix(host)}runs/{run_id}/"
