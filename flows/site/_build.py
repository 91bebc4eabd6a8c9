"""The ``mkdocs build --strict`` of a docs folder, and the raw run files linked into the result.

The build uses a copy of the repository's ``mkdocs.yml`` whose paths point at
the docs folder being built and whose Drills section lists the registry's drills.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from flows import registry
from flows.errors import EvidenceError
from flows.site._paths import CONFIG, GENERATED
from flows.site._runs import link_or_copy

log = logging.getLogger("flows.site")


def _config(docs_dir: Path, site_dir: Path, where: Path) -> Path:
    """A copy of mkdocs.yml pointing at ``docs_dir`` and ``site_dir`` (absolute paths)."""
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    config["docs_dir"] = str(docs_dir.resolve())
    config["site_dir"] = str(site_dir.resolve())
    # Raw run files are linked into the site after the build (see _link_raw_files).
    config["exclude_docs"] = (config.get("exclude_docs") or "") + (
        f"/{GENERATED}/runs/*/*\n!/{GENERATED}/runs/*/index.md\n"
    )
    for entry in config.get("nav", []):
        if isinstance(entry, dict) and "Drills" in entry:
            entry["Drills"] = [f"{GENERATED}/drills/{d}.md" for d in registry.DRILL_IDS]
    for ext in config.get("markdown_extensions", []):
        if isinstance(ext, dict) and "pymdownx.snippets" in ext:
            ext["pymdownx.snippets"]["base_path"] = [str(docs_dir.resolve())]
    path = where / "mkdocs.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _link_raw_files(gen: Path, site_gen: Path) -> int:
    """Put every run's raw files beside its built page.

    MkDocs would copy them one by one (tens of thousands of files for years of
    runs); a hard link is one syscall each. Nothing writes to a built site in
    place, and the next build unlinks them.
    """
    count = 0
    runs = gen / "runs"
    if not runs.is_dir():
        return 0
    for run in os.scandir(runs):
        target = site_gen / "runs" / run.name
        target.mkdir(parents=True, exist_ok=True)
        for entry in os.scandir(run.path):
            if entry.name != "index.md" and entry.is_file():
                link_or_copy(entry.path, target / entry.name)
                count += 1
    return count


def build_site(docs_dir: Path, site_dir: Path) -> Path:
    """``mkdocs build --strict`` of ``docs_dir`` into ``site_dir``; returns its index.html."""
    with tempfile.TemporaryDirectory(prefix="flows-mkdocs-") as tmp:
        config = _config(docs_dir, site_dir, Path(tmp))
        # No -q: it silences the warnings --strict counts, and the build passes anyway.
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "mkdocs",
                "build",
                "--strict",
                "-f",
                str(config),
                "-d",
                str(site_dir.resolve()),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if proc.returncode != 0:
        output = (proc.stderr + proc.stdout).splitlines()
        warnings = [line for line in output if not line.startswith("INFO")] or output[-5:]
        raise EvidenceError(
            f"site: mkdocs build --strict failed (exit {proc.returncode}) for {docs_dir}:\n"
            + "\n".join(warnings)
            + "\nfix the page it names, or run `python -m flows publish --no-build` and "
            "`mkdocs build --strict` to see every warning"
        )
    log.debug("site.mkdocs_output %s", proc.stderr.strip())
    _link_raw_files(docs_dir / GENERATED, site_dir / GENERATED)
    return site_dir / "index.html"
