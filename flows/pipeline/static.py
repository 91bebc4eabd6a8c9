"""``make serve --site-port N``: the built evidence site over HTTP on 127.0.0.1.

The Prefect UI drops ``file://`` links, so a served site is what makes the
``drill-site`` artifact a link: :func:`serve_site` sets ``NIGHTLY_SITE_URL`` for
the flow runs started by this process.
"""

from __future__ import annotations

import functools
import logging
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from flows.errors import DeployError

__all__ = ["SiteServer"]

log = logging.getLogger("flows.pipeline.static")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("site.request " + format, *args)


class SiteServer:
    """A static file server for ``site_dir`` on 127.0.0.1:``port`` (0 picks one), in a thread."""

    def __init__(self, site_dir: Path, port: int) -> None:
        site_dir.mkdir(parents=True, exist_ok=True)  # served before the first build
        handler = functools.partial(_QuietHandler, directory=str(site_dir))
        try:
            self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        except OSError as exc:
            raise DeployError(
                f"serve: cannot serve the site on 127.0.0.1:{port} ({exc.strerror}); "
                "pass another --site-port"
            ) from exc
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
