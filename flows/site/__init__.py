"""The evidence site: a small MkDocs build plus plain-HTML run, log and month pages.

``publish(artifacts_root, site_dir)`` loads the history (per host when the root
holds ``hosts/<hostname>/``), writes every run's page, its log pages and raw
files straight into the site (only for runs whose evidence changed since the
last publish), and builds the summary pages (home, trends, drills, archive
index, reference, hand-written pages) with ``mkdocs build --strict`` from a
staging folder inside the site folder. The MkDocs config, theme override and
the site's own pages ship in ``flows/site/assets/``; nothing is looked up in a
checkout, and nothing is written outside the site folder.

One module per part of the site: ``_home`` (home and trends pages, the status
word), ``_drills`` (a page per drill), ``_archive`` (months), ``_runs`` (a page
per run and its logs), ``_timeline`` (the linked SVG timeline), ``_categories``
(failure categories from ``categories.toml``), ``_html`` and ``_shell``
(escaping, badges, the plain page frame), ``_build`` (mkdocs, search index,
merge) and ``_publish`` (all of it in order, incrementally).
"""

from flows.site._paths import run_page_url
from flows.site._publish import cmd_publish, publish, publish_histories

__all__ = ["cmd_publish", "publish", "publish_histories", "run_page_url"]
