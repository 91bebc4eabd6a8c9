"""Where things live in the evidence store, and reading them back.

A root holds run folders ``chaos-drill-YYYYMMDD-HHMMSS[-N]``; each holds
``results.json``, ``junit.xml``, ``manifest.json`` and the drill logs. Shared by
the writer (``flows.evidence``) and the checker (``flows.evidence.verify``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from flows.errors import EvidenceError
from flows.evidence.atomic import os_error_message, sha256_file

RUN_PREFIX = "chaos-drill-"
SCHEMA_VERSION = 1
RESULTS = "results.json"
JUNIT = "junit.xml"
MANIFEST = "manifest.json"
CRITERIA = "criteria.json"
REPORT = "EVIDENCE.md"
ATTESTATION = "attestation.dsse.json"  # signed over every other file: in no manifest
INCLUSION = "inclusion.json"  # written once the attestation is in the log: in no manifest
CHAIN_LOCK = ".chain.lock"  # also the log's lock: one append at a time per root
LOG_DIR = "log"
ENTRIES = "log/entries.jsonl"
CHECKPOINT = "log/checkpoint.dsse.json"
CHECKPOINTS = "log/checkpoints"
HOSTS = "hosts"  # a multi-host root: hosts/<hostname>/ each a root of its own


def short_digest(value: object) -> str:
    """A digest as problems quote it: its first 12 characters."""
    return f"{str(value)[:12]}…"


def digest_mismatches(
    expected: Mapping[str, str], actual: Mapping[str, str]
) -> Iterator[tuple[str, str | None, str | None]]:
    """(path, expected sha256, found sha256) of every file that differs: found None when it
    is missing, expected None when it is extra; missing and changed files in ``expected``'s
    order, then the extra ones in ``actual``'s."""
    for rel, digest in expected.items():
        if rel not in actual:
            yield rel, digest, None
        elif actual[rel] != digest:
            yield rel, digest, actual[rel]
    for rel in actual:
        if rel not in expected:
            yield rel, None, actual[rel]


def drill_log_name(drill_id: str) -> str:
    """The file name of drill ``drill_id``'s log in a run folder."""
    return f"drill_{drill_id}.log"


_NAME = re.compile(re.escape(RUN_PREFIX) + r"(\d{8}-\d{6})(?:-(\d+))?")


def run_key(name: str) -> tuple[str, int, str]:
    """Name order, with ``-10`` after ``-9`` for runs started in the same second."""
    m = _NAME.fullmatch(name)
    if m is None:
        return (name.removeprefix(RUN_PREFIX), 0, name)
    return (m.group(1), int(m.group(2) or 1), name)


def run_names(root: Path) -> list[str]:
    """The names of the run folders (``chaos-drill-*`` directories) directly under ``root``,
    unordered; ``[]`` when ``root`` does not exist."""
    try:
        # scandir: the entry type comes with the listing, no stat per folder.
        with os.scandir(root) as entries:
            return [e.name for e in entries if e.name.startswith(RUN_PREFIX) and e.is_dir()]
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise EvidenceError(os_error_message("list", root, exc)) from exc


def list_runs(root: Path) -> list[Path]:
    """Every run folder (``chaos-drill-*`` directory) directly under ``root``, oldest first."""
    root = Path(root)
    return [root / name for name in sorted(run_names(root), key=run_key)]


def read_json(path: Path) -> tuple[Any, bytes]:
    """(parsed JSON, raw bytes) of an evidence file; EvidenceError when missing or invalid."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise EvidenceError(
            f"evidence: {path} is missing; {path.parent} is not a run folder "
            "(a run writes results.json as soon as it starts)"
        ) from exc
    except OSError as exc:
        raise EvidenceError(os_error_message("read", path, exc)) from exc
    try:
        return json.loads(raw), raw
    except ValueError as exc:
        raise EvidenceError(
            f"evidence: {path} is not valid JSON ({exc}); the file is damaged, "
            f"`python -m flows verify {path.parent}` shows whether it was changed"
        ) from exc


def load_results(run_dir: Path) -> dict[str, Any]:
    """The parsed ``results.json`` of a run folder."""
    data, _ = read_json(Path(run_dir) / RESULTS)
    if not isinstance(data, dict):
        raise EvidenceError(
            f"evidence: {Path(run_dir) / RESULTS} holds a JSON {type(data).__name__}, "
            "not an object; the file is damaged"
        )
    return data


def hash_tree(
    run_dir: Path, exclude: tuple[str, ...] = (MANIFEST, ATTESTATION, INCLUSION)
) -> dict[str, str]:
    """sha256 of every file under ``run_dir`` but ``exclude`` (the files written after the
    manifest, and the manifest itself), by '/'-relative path. As ``os.walk``: a link to a
    folder is neither followed nor hashed; an unreadable folder or file is an error."""
    files: dict[str, str] = {}

    def walk(folder: str, prefix: str) -> None:
        # os.scandir, not pathlib: this runs for every file of years of runs
        with os.scandir(folder) as entries:
            for entry in entries:
                rel = prefix + entry.name
                if entry.is_dir():
                    if not entry.is_symlink():
                        walk(entry.path, rel + "/")
                elif rel not in exclude:
                    files[rel] = sha256_file(entry.path)

    try:
        walk(os.fspath(run_dir), "")
    except OSError as exc:
        raise EvidenceError(os_error_message("read", Path(exc.filename or run_dir), exc)) from exc
    return dict(sorted(files.items()))
