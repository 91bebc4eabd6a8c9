"""What verify concluded about each run folder, kept between publishes of the site.

The evidence site re-verifies its whole history on every publish; years of runs
make that seconds of hashing and signature checks for folders nobody touched.
:class:`VerifyMemo` keeps, per run folder, the per-run checks' outcome (the
:class:`~flows.evidence.verify.RunFacts`, the sha256 of every file, the rows
the trends read) under a *fingerprint* of the folder: each file's relative path,
inode, size, mtime and ctime. ctime cannot be set from user space (git's index
trusts the same), so a file rewritten and touched back to its old mtime still
changes the fingerprint, as does a file added, removed or renamed.

What the memo does not skip: the log-level checks that tie runs together (chain
links, the Merkle root recomputed from the leaves against the signed checkpoint,
consistency with each kept checkpoint, each signature of a checkpoint) run in
full every time. An inclusion proof is re-hashed when its run changed or the
root it was proven against is no longer what the checkpoint it names signs.

The memo lives in the *site* folder (``.verify-memo.json``), never in the
evidence root: verifying writes nothing there. It is dropped whole when its
format, the code that made it (``flows/evidence``, the history reader, the drill
registry) or a root's public key file differ. A folder whose newest ctime is
within :data:`RACY_NS` of the moment it was looked at is not kept (a change in the
same clock tick would leave its fingerprint alone: git's "racy clean" problem).
``python -m flows verify`` never reads it: it is always the full check.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flows.errors import EvidenceError
from flows.evidence.atomic import write_atomic
from flows.evidence.keys import PUBLIC_KEY
from flows.evidence.layout import hash_tree

__all__ = ["MEMO_FILE", "RACY_NS", "RootMemo", "VerifyMemo", "content_digest", "fingerprint"]

log = logging.getLogger("flows.evidence.memo")

MEMO_FILE = ".verify-memo.json"
FORMAT = "verify-memo-1"
RACY_NS = 1_000_000_000  # one second: the coarsest ctime of a Linux file system (ext3)
_PACKAGE = Path(__file__).resolve().parent


def _code_digest() -> str:
    """sha256 of the code whose conclusions the memo keeps: a changed check drops it."""
    h = hashlib.sha256(FORMAT.encode())
    sources = sorted(_PACKAGE.glob("*.py")) + [
        _PACKAGE.parent / "trends" / "history.py",
        _PACKAGE.parent / "registry.py",
    ]
    for path in sources:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def fingerprint(run_dir: Path) -> tuple[str, int] | None:
    """(sha256 of every file's path, inode, size, mtime and ctime; the newest ctime in ns)
    of a run folder; None when it cannot be listed (verify then says why)."""
    rows: list[str] = []
    newest = 0
    todo = [("", os.fspath(run_dir))]
    try:
        while todo:
            prefix, folder = todo.pop()
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        todo.append((f"{prefix}{entry.name}/", entry.path))
                        continue
                    st = entry.stat()
                    rows.append(
                        f"{prefix}{entry.name}\0{st.st_ino}\0{st.st_size}\0"
                        f"{st.st_mtime_ns}\0{st.st_ctime_ns}"
                    )
                    newest = max(newest, st.st_ctime_ns)
    except OSError:
        return None
    rows.sort()
    return hashlib.sha256("\n".join(rows).encode()).hexdigest(), newest


def content_digest(digests: dict[str, str]) -> str:
    """One sha256 over every file's path and sha256 (:func:`hash_tree`): what a run
    folder holds, whatever its inodes and times."""
    lines = "".join(f"{rel}\0{digest}\n" for rel, digest in sorted(digests.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The collector off while a memo of years of runs (a million small objects) is built:
    every collection on the way would walk all of them again."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _key_file(root: Path) -> str | None:
    try:
        return hashlib.sha256((root / PUBLIC_KEY).read_bytes()).hexdigest()
    except OSError:
        return None


class RootMemo:
    """The memo of one evidence root: entries by run folder name."""

    def __init__(self, old: dict[str, Any], key_file: str | None) -> None:
        self._old = old
        self.key_file = key_file
        self.runs: dict[str, dict[str, Any]] = {}  # what the next save writes
        self._keys: dict[str, str | None] = {}

    def _key(self, run: Path) -> str | None:
        """The run's fingerprint, taken once; None when it cannot be trusted yet."""
        if run.name not in self._keys:
            looked = time.time_ns()
            found = fingerprint(run)
            racy = found is None or found[1] >= looked - RACY_NS
            self._keys[run.name] = None if found is None or racy else found[0]
        return self._keys[run.name]

    def get(self, run: Path) -> dict[str, Any] | None:
        """The entry kept for ``run`` if its folder is unchanged since, else None."""
        key = self._key(run)
        old = self._old.get(run.name)
        if key is None or not isinstance(old, dict) or old.get("key") != key:
            return None
        return old

    def put(self, run: Path, **parts: Any) -> None:
        """Keep ``parts`` for ``run`` under its fingerprint (not when it is too fresh)."""
        key = self._key(run)
        if key is not None:
            self.runs.setdefault(run.name, {"key": key}).update(parts)

    def refresh(self, run: Path) -> None:
        """Take ``run``'s fingerprint again after the site hard-linked its files (a link
        changes each file's ctime): the entry is kept only if every file still hashes to
        what was verified."""
        entry = self.runs.get(run.name)
        self._keys.pop(run.name, None)
        key = self._key(run)
        if entry is None or key == entry["key"]:
            return
        del self.runs[run.name]
        if key is None:
            return
        try:
            same = content_digest(hash_tree(run, exclude=())) == entry.get("content")
        except EvidenceError:
            return
        if same:
            self.runs[run.name] = {**entry, "key": key}


class VerifyMemo:
    """The site's memo file: one :class:`RootMemo` per evidence root verified."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._code = _code_digest()
        self._stored: dict[str, Any] = {}
        self._roots: dict[str, RootMemo] = {}
        try:
            with _gc_paused():
                data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("evidence.memo_unreadable path=%s reason=%s", self.path, exc)
            return
        if (
            isinstance(data, dict)
            and data.get("format") == FORMAT
            and data.get("code") == self._code
            and isinstance(data.get("roots"), dict)
        ):
            self._stored = data["roots"]
        else:
            log.info("evidence.memo_dropped path=%s reason=another version", self.path)

    @classmethod
    def in_site(cls, site_dir: Path) -> VerifyMemo:
        return cls(Path(site_dir) / MEMO_FILE)

    def root(self, root: Path) -> RootMemo:
        """The memo of ``root``; empty when its public key file changed."""
        name = os.path.abspath(root)
        if name not in self._roots:
            key_file = _key_file(Path(root))
            stored = self._stored.get(name)
            old: dict[str, Any] = {}
            if isinstance(stored, dict) and stored.get("key_file") == key_file:
                runs = stored.get("runs")
                old = runs if isinstance(runs, dict) else {}
            self._roots[name] = RootMemo(old, key_file)
        return self._roots[name]

    def content(self, run: Path) -> str | None:
        """The :func:`content_digest` of ``run`` as verified by this publish, None when
        its folder is not kept (changed too recently, or not verified with this memo)."""
        kept = self._roots.get(os.path.abspath(Path(run).parent))
        entry = kept.runs.get(Path(run).name) if kept is not None else None
        return None if entry is None else entry.get("content")

    def refresh(self, run: Path) -> None:
        """:meth:`RootMemo.refresh` of ``run`` under the root it was verified in."""
        kept = self._roots.get(os.path.abspath(Path(run).parent))
        if kept is not None:
            kept.refresh(Path(run))

    def save(self) -> None:
        """Write what this publish verified (roots and runs not seen are dropped)."""
        data = {
            "format": FORMAT,
            "code": self._code,
            "roots": {
                name: {"key_file": r.key_file, "runs": r.runs} for name, r in self._roots.items()
            },
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(data, separators=(",", ":")).encode(), durable=False)
