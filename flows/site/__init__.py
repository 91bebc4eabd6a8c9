"""The evidence site: generated Markdown and SVG charts, built by ``mkdocs build --strict``.

``publish(artifacts_root, site_dir)`` loads the history (:mod:`flows.trends.history`),
writes the generated pages under ``<docs>/generated/`` (git ignores it), copies
each run's raw files beside its page so every evidence line links to its file,
and builds the site with the repository's ``mkdocs.yml``. Hand-written pages
stay in ``docs/``; ``docs/index.md`` includes the generated ``home.md``.

Run pages are kept out of the nav (``not_in_nav``): Material renders the whole
nav into every page, and thousands of runs in it would make every page, and the
build, slow. They are reached from the archive and the drill pages.

One module per part of the site: ``_home`` (home and trends pages), ``_drills``
(a page per drill), ``_archive`` (months), ``_runs`` (a page per run and its raw
files), ``_html`` (escaping and badges), ``_build`` (mkdocs) and ``_publish``
(all of it in order).
"""

from flows.site._build import build_site
from flows.site._paths import CHECKOUT_SITE, run_page_url
from flows.site._publish import cmd_publish, generate, publish

__all__ = ["CHECKOUT_SITE", "build_site", "cmd_publish", "generate", "publish", "run_page_url"]
