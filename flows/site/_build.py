"""The ``mkdocs build --strict`` of the small part of the site, and its merge into the site.

MkDocs builds the summary pages (home, trends, drills, archive index, reference
and the hand-written pages) from a staging folder into a staging site; the
result is then moved into the site folder file by file, beside the plain-HTML
run, log and month pages that publish writes there itself (MkDocs would delete
them: it cleans its site_dir). After the build every run page is added to the
search index, and ``sitemap.xml`` is removed: the site has no ``site_url``, so
MkDocs' sitemap would list no address at all.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from flows import registry
from flows.errors import EvidenceError
from flows.site._paths import GENERATED, assets_dir, host_prefix

log = logging.getLogger("flows.site")

MKDOCS_FILES = ".mkdocs-files.json"  # in the site: what the last build put there


def _nav_pages(entry: Any) -> list[str]:
    if isinstance(entry, str):
        return [entry]
    if isinstance(entry, list):
        return [p for e in entry for p in _nav_pages(e)]
    if isinstance(entry, dict):
        return [p for v in entry.values() for p in _nav_pages(v)]
    return []


def _prune(entry: Any, docs_dir: Path) -> Any:
    """The nav without pages missing from ``docs_dir`` (and without sections left empty)."""
    if isinstance(entry, str):
        return entry if (docs_dir / entry).is_file() else None
    if isinstance(entry, list):
        kept = [k for k in (_prune(e, docs_dir) for e in entry) if k is not None]
        return kept or None
    if isinstance(entry, dict):
        pruned = {k: v for k, v in ((k, _prune(v, docs_dir)) for k, v in entry.items()) if v}
        return pruned or None
    return entry


def write_config(stage: Path, hosts: list[str], status: str) -> Path:
    """``stage/mkdocs.yml``: the packaged config pointing at ``stage/docs``, with the
    drills (per host when there are several), the site status and the theme override."""
    assets = assets_dir()
    config = yaml.safe_load((assets / "mkdocs.yml").read_text(encoding="utf-8"))
    docs_dir = stage / "docs"
    shutil.copytree(assets / "theme", stage / "theme", dirs_exist_ok=True)
    config["docs_dir"] = str(docs_dir.resolve())
    config["theme"]["custom_dir"] = str((stage / "theme").resolve())
    config.setdefault("extra", {})["evidence_status"] = status
    nav: list[Any] = []
    for entry in config.get("nav", []):
        if isinstance(entry, dict) and "Drills" in entry:
            if hosts == [""]:
                entry = {"Drills": [f"{GENERATED}/drills/{d}.md" for d in registry.DRILL_IDS]}
            else:
                entry = {
                    "Hosts": [
                        {host: [f"{GENERATED}/{host_prefix(host)}{p}" for p in _host_nav()]}
                        for host in hosts
                    ]
                }
        nav.append(entry)
    config["nav"] = _prune(nav, docs_dir) or []
    for ext in config.get("markdown_extensions", []):
        if isinstance(ext, dict) and "pymdownx.snippets" in ext:
            ext["pymdownx.snippets"]["base_path"] = [str(docs_dir.resolve())]
    path = stage / "mkdocs.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _host_nav() -> list[str]:
    return ["trends.md", "archive/index.md", *(f"drills/{d}.md" for d in registry.DRILL_IDS)]


class _Warnings(logging.Handler):
    """Collects what MkDocs logs at WARNING and above: the lines --strict counts."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} - {record.getMessage()}")


def _cache_templates(theme: Any) -> None:
    """Jinja keeps the theme's compiled templates between publishes (keyed by each
    template's path and checked against its source): compiling Material's templates was
    a fifth of every build. The cache is Jinja's own per-user folder (mode 0700, owner
    checked: ``_jinja2-cache-<uid>`` in the temp dir), never the site folder: its
    files are marshalled code that the next publish would run, and the site folder is
    the one anybody serving or copying the site may write."""
    import jinja2

    make = theme.get_env

    def get_env() -> jinja2.Environment:
        env: jinja2.Environment = make()
        env.bytecode_cache = jinja2.FileSystemBytecodeCache()
        return env

    setattr(theme, "get_env", get_env)  # noqa: B010  # the build's own Theme, this build only


def run_mkdocs(config: Path, out: Path, cache_templates: bool = False) -> None:
    """``mkdocs build --strict`` of ``config`` into ``out``, in this process (a child
    interpreter cost a second per publish); EvidenceError with its warnings.
    ``cache_templates`` keeps the compiled theme templates from one publish to the next."""
    from mkdocs.commands.build import build
    from mkdocs.config import load_config
    from mkdocs.exceptions import MkDocsException

    caught = _Warnings()
    mkdocs_log = logging.getLogger("mkdocs")
    mkdocs_log.addHandler(caught)
    try:
        cfg = load_config(str(config), site_dir=str(out), strict=True)
        # no site_url, so no sitemap: not rendered (then dropped) on every publish
        cfg.theme.static_templates.discard("sitemap.xml")
        if cache_templates:
            _cache_templates(cfg.theme)
        cfg.plugins.on_startup(command="build", dirty=False)
        try:
            build(cfg)
        finally:
            cfg.plugins.on_shutdown()
    except MkDocsException as exc:
        raise EvidenceError(
            f"site: mkdocs build --strict failed for {config} ({exc}):\n"
            + "\n".join(caught.lines)
            + "\nfix the page it names, or run `python -m flows publish --no-build` and "
            "`mkdocs build --strict -f DIR/mkdocs.yml` to see every warning"
        ) from exc
    finally:
        mkdocs_log.removeHandler(caught)


def add_to_search(built: Path, entries: Iterable[dict[str, str]]) -> int:
    """Append run pages to Material's search index (they are not MkDocs pages)."""
    index = built / "search" / "search_index.json"
    if not index.is_file():
        return 0
    data = json.loads(index.read_text(encoding="utf-8"))
    extra = list(entries)
    data["docs"].extend(extra)
    index.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
    return len(extra)


def drop_sitemap(built: Path) -> None:
    """No ``site_url``, no addresses: an empty sitemap is wrong, so there is none."""
    for name in ("sitemap.xml", "sitemap.xml.gz"):
        (built / name).unlink(missing_ok=True)


def merge(built: Path, site: Path) -> int:
    """Move every file MkDocs built into ``site``; remove what the previous build left
    that this one did not make. Plain pages publish wrote are left alone."""
    record = site / MKDOCS_FILES
    try:
        previous = set(json.loads(record.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        previous = set()
    made: list[str] = []
    for folder, _, names in os.walk(built):
        rel = Path(folder).relative_to(built)
        (site / rel).mkdir(parents=True, exist_ok=True)
        for name in names:
            os.replace(Path(folder) / name, site / rel / name)
            made.append(str(rel / name))
    for gone in previous - set(made):
        (site / gone).unlink(missing_ok=True)
    record.write_text(json.dumps(sorted(made)), encoding="utf-8")
    return len(made)
