"""The evidence store: one folder per drill run, sealed by a manifest and a hash chain.

The on-disk format is the contract in ``docs/evidence-format.md``. A run folder is
``<root>/chaos-drill-YYYYMMDD-HHMMSS[-N]``; :class:`RunWriter` fills it, and
:func:`verify` re-checks one folder, or every folder under a root and the chain
that links them (``python -m flows verify``).

Everything a run records about where and when it ran (the clock, host,
versions, git commit) comes from a constructor argument whose default reads this
machine, so :mod:`flows.evidence.synthetic` writes its made-up history through
this same writer, marked ``"synthetic": true``.

The chain follows finalisation order: under an exclusive lock on
``<root>/.chain.lock`` each run links to the *tail* of the chain, the sealed run
no other run links to yet. Folder names give start order, and a long run started
first may finish last; linking to the newest name would then fork the chain.
"""

from __future__ import annotations

import copy
import fcntl
import importlib.metadata
import logging
import os
import platform
import re
import socket
import subprocess
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flows.errors import EvidenceError
from flows.evidence import log as evidence_log
from flows.evidence.atomic import (
    fsync_dir,
    os_error_message,
    sha256_bytes,
    write_atomic,
    write_json,
)
from flows.evidence.attest import sign_run
from flows.evidence.criteria import build_criteria, drill_criteria, drill_digest
from flows.evidence.junit import build_junit
from flows.evidence.keys import SigningKey, load_signing_key, publish_public_key
from flows.evidence.layout import (
    CHAIN_LOCK,
    CRITERIA,
    JUNIT,
    MANIFEST,
    RESULTS,
    RUN_PREFIX,
    SCHEMA_VERSION,
    drill_log_name,
    hash_tree,
    load_results,
    read_json,
    run_key,
    run_names,
)
from flows.evidence.report import default_owner, write_report

__all__ = ["RunWriter", "batched_log", "new_run_dir"]

DRILL_STATUSES = ("pass", "fail", "error", "incomplete")
_VERSIONED = ("chaos-drills", "fastapi", "uvicorn", "psutil", "prefect", "pandas")
_UNFINISHED = "incomplete: the run stopped before this drill finished"

log = logging.getLogger("flows.evidence")


def _now() -> datetime:
    return datetime.now(UTC)


def new_run_dir(root: Path, now: datetime | None = None, *, durable: bool = True) -> Path:
    """Create and return ``root/chaos-drill-YYYYMMDD-HHMMSS`` (UTC), suffixed ``-2``… if taken.

    ``durable=False`` skips the fsync of ``root`` (a history rebuilt from a seed)."""
    root = Path(root)
    stamp = (now or _now()).astimezone(UTC).strftime("%Y%m%d-%H%M%S")
    try:
        root.mkdir(parents=True, exist_ok=True)
        for n in range(1, 10_000):
            path = root / (f"{RUN_PREFIX}{stamp}" if n == 1 else f"{RUN_PREFIX}{stamp}-{n}")
            try:
                os.mkdir(path)  # atomic: of two runs racing for one name, exactly one gets it
            except FileExistsError:
                continue
            if durable:
                fsync_dir(root)
            return path
    except OSError as exc:
        raise EvidenceError(os_error_message("create a run folder in", root, exc)) from exc
    raise EvidenceError(f"evidence: 10,000 run folders for {stamp} already exist in {root}")


def _host() -> dict[str, Any]:
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def _git_commit() -> str | None:
    """HEAD of the checkout this package runs from, if any: the provenance of the drill code.

    Asked in the package's own folder, not the working directory: a run started
    from another repository must not record that repository's commit, and an
    installed package outside any checkout records null.
    """
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("evidence.git_commit_unknown reason=%s", exc)
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", commit) else None


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in _VERSIONED:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass  # an extra that is not installed has no version to report
    return versions


def _unfinished(drill_id: str) -> dict[str, Any]:
    return {
        "id": drill_id,
        "status": "incomplete",
        "started_at": None,
        "duration_s": None,
        "summary": _UNFINISHED,
        "log": drill_log_name(drill_id),
        "metrics": {},
        "criteria_sha256": None,  # set when the result is recorded
    }


# manifest path -> (stat identity, the run it links to, sha256 of its bytes). Each
# finalize looks at every sealed run under the root; rereading unchanged manifests
# made writing a long history quadratic in file reads.
_SEALED: dict[str, tuple[tuple[int, int, int, int], str | None, str]] = {}


def _sealed(root: str, name: str) -> tuple[str | None, str] | None:
    """(the run it links to, sha256 of its manifest) for a sealed run; None if unsealed."""
    path = os.path.join(root, name, MANIFEST)
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        log.warning("evidence.chain_skip run=%s reason=%s", name, exc)
        return None
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)  # every writer renames in
    cached = _SEALED.get(path)
    if cached is not None and cached[0] == key:
        return cached[1], cached[2]
    try:
        manifest, raw = read_json(Path(path))
    except EvidenceError as exc:
        log.warning("evidence.chain_skip run=%s reason=%s", name, exc)
        return None
    previous = manifest.get("previous") if isinstance(manifest, dict) else None
    linked = previous.get("run_id") if isinstance(previous, dict) else None
    _SEALED[path] = (key, linked if isinstance(linked, str) else None, sha256_bytes(raw))
    return _SEALED[path][1], _SEALED[path][2]


@contextmanager
def _chain_lock(root: Path) -> Iterator[None]:
    path = root / CHAIN_LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise EvidenceError(os_error_message("open the chain lock", path, exc)) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released on close, and by the kernel if we die
        yield
    finally:
        os.close(fd)


def _chain_tail(root: Path, exclude: str, names: list[str] | None = None) -> dict[str, str] | None:
    """The ``previous`` entry for a run sealed now; call only under the chain lock.

    Every sealed run joins the log right after it links to the tail, under this same
    lock, so the tail is the newest sealed run in the log: one manifest read. Only when
    a sealed run is missing from the log (chain-only runs not adopted yet, a writer
    that died between its manifest and its leaf) are all manifests looked at.
    """
    names = run_names(root) if names is None else names
    where = os.path.abspath(root)
    logged = evidence_log.logged(root)
    loose = [
        name
        for name in names
        if name not in logged
        and name != exclude
        and os.path.exists(os.path.join(where, name, MANIFEST))
    ]
    if loose:
        return _scan_tail(root, exclude, names)
    for run_id in evidence_log.newest_first(root):
        found = _sealed(where, run_id) if run_id != exclude else None
        if found is not None:
            return {"run_id": run_id, "manifest_sha256": found[1]}
    return None


def _scan_tail(root: Path, exclude: str, names: list[str]) -> dict[str, str] | None:
    """The tail from every sealed run's manifest: the run no other run links to."""
    sealed: dict[str, tuple[str | None, str]] = {}
    where = os.path.abspath(root)
    for name in names:
        found = _sealed(where, name) if name != exclude else None
        if found is not None:
            sealed[name] = found
    linked = {previous for previous, _ in sealed.values()}
    # One tail when the chain is intact; after a break, the newest loose end.
    tails = [name for name in sealed if name not in linked] or list(sealed)
    if not tails:
        return None
    tail = max(tails, key=run_key)
    return {"run_id": tail, "manifest_sha256": sealed[tail][1]}


# Roots whose log this process appends to in batches (:func:`batched_log`).
_BATCHED: set[str] = set()


@contextmanager
def batched_log(
    root: Path, *, signing_key: SigningKey | None = None, durable: bool = True
) -> Iterator[None]:
    """Within: runs this process finalizes under ``root`` join the log without a checkpoint
    each and without a look for other runs the log lacks. On leaving: under the chain lock,
    the runs the log lacks (a dead writer's run, signed ``FAILED``), one signed checkpoint,
    and every run's inclusion proof. For a history one process writes alone (``synth``):
    thousands of runs, a checkpoint per batch, not per run.
    """
    root = Path(root)
    where = os.path.abspath(root)
    if where in _BATCHED:
        raise EvidenceError(f"evidence: the log of {root} is already being appended in a batch")
    _BATCHED.add(where)
    try:
        yield
    finally:
        _BATCHED.discard(where)
    key = signing_key or load_signing_key()
    with _chain_lock(root):
        evidence_log.append(
            root,
            run_names(root),
            key,
            own=None,
            sealer=lambda run_dir: _seal_dead(run_dir, key, durable),
            durable=durable,
        )


class RunWriter:
    """Writes one run folder: ``results.json`` from the start, then junit and the manifest."""

    def __init__(
        self,
        run_dir: Path,
        *,
        drills: Sequence[str],
        command: str,
        config: str | None,
        program: Mapping[str, str] | None = None,
        now: Callable[[], datetime] = _now,
        host: Callable[[], dict[str, Any]] = _host,
        versions: Callable[[], dict[str, str]] = _versions,
        git_commit: Callable[[], str | None] = _git_commit,
        synthetic: bool = False,
        durable: bool = True,
        signing_key: SigningKey | None = None,
        owner: str | None = None,
    ) -> None:
        """``now`` stamps the start and the end; ``host``, ``versions`` and ``git_commit``
        are read once, here. The defaults read the clock and this machine; a made-up
        history passes its own and ``synthetic=True``. ``durable=False`` skips the fsyncs
        and the rewrite of ``results.json`` after each drill (it is written when the run
        opens, ends or is closed): never for evidence meant to be kept, where a power cut
        or a crash may then lose the last writes.

        ``signing_key`` signs the statement and the log (default: :func:`load_signing_key`,
        generated on first use); ``owner`` goes into ``EVIDENCE.md`` (default ``--owner``
        / ``$EVIDENCE_OWNER``, else this user). ``criteria.json`` is sealed here, before
        any drill can start, and the writer holds an flock on the folder until it is
        finalized or closed: the log takes a folder nobody holds for a dead run's."""
        self.run_dir = Path(run_dir)
        self.run_id = self.run_dir.name
        drills = list(drills)
        if len(set(drills)) != len(drills):
            raise ValueError(f"drill ids must be distinct, got {drills}")
        for existing in (MANIFEST, RESULTS):
            if (self.run_dir / existing).exists():
                raise EvidenceError(
                    f"evidence: {self.run_dir} already holds a run ({existing}); "
                    "pass a new --run-dir, or omit it to get a fresh folder"
                )
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EvidenceError(os_error_message("create", self.run_dir, exc)) from exc
        self._key = signing_key or load_signing_key()
        publish_public_key(self.run_dir.parent, self._key, write=False)  # fail before drills
        self._hold = _hold_folder(self.run_dir)
        self._release = weakref.finalize(self, os.close, self._hold)
        self._now = now
        self._synthetic = synthetic
        self._durable = durable
        self._lock = threading.Lock()  # drills may finish on several worker threads
        self._finalized = False
        started = now().isoformat()
        self._results: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "run_id": self.run_id,
            **({"synthetic": True} if synthetic else {}),
            "status": "incomplete",
            "verdict": None,
            "started_at": started,
            "finished_at": None,
            "host": host(),
            "versions": versions(),
            "git_commit": git_commit(),
            "command": command,
            "config": config,
            "program": dict(program) if program else None,  # {name, chosen_by}
            "owner": owner or default_owner(),
            "drills": [_unfinished(d) for d in drills],
        }
        # The first thing the run commits to: what "pass" means, before any drill starts.
        criteria = build_criteria(self.run_id, drills, config, started)
        write_json(self.run_dir / CRITERIA, criteria, durable=self._durable)
        self._results["criteria_sha256"] = sha256_bytes((self.run_dir / CRITERIA).read_bytes())
        write_json(self.run_dir / RESULTS, self._results, durable=self._durable)
        log.log(
            logging.DEBUG if synthetic else logging.INFO,
            "evidence.criteria_sealed run=%s sha256=%s drills=%d",
            self.run_id,
            self._results["criteria_sha256"],
            len(drills),
        )

    def log_path(self, drill_id: str) -> Path:
        """Where drill ``drill_id`` writes its log."""
        if not drill_id or "/" in drill_id or drill_id in (".", ".."):
            raise ValueError(f"drill id must be a plain name, got {drill_id!r}")
        return self.run_dir / drill_log_name(drill_id)

    def record(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """Replace one drill's entry with its result; rewrites ``results.json`` atomically.

        Keys the result lacks get the unfinished entry's values (no start time, no
        duration, no metrics, the drill's log name); returns the entry as recorded.
        """
        entry = dict(result)
        drill_id, status = entry.get("id"), entry.get("status")
        if not isinstance(drill_id, str) or not drill_id:
            raise ValueError(f"a drill result needs a non-empty string id, got {drill_id!r}")
        if status not in DRILL_STATUSES:
            raise ValueError(
                f"drill {drill_id}: status must be one of {', '.join(DRILL_STATUSES)}, "
                f"got {status!r}"
            )
        for key, default in _unfinished(drill_id).items():
            entry.setdefault(key, default)
        # The criteria this drill ran under, from its code as it is now: verify compares
        # them with the sealed ones.
        entry["criteria_sha256"] = drill_digest(drill_criteria(drill_id))
        with self._lock:
            if self._finalized:
                raise EvidenceError(
                    f"evidence: {self.run_id} is already finalized; "
                    f"drill {drill_id} cannot be recorded into it"
                )
            drills = self._results["drills"]
            index = next((i for i, d in enumerate(drills) if d["id"] == drill_id), None)
            if index is None:
                drills.append(entry)
            else:
                drills[index] = entry
            if self._durable:  # else written once, when the run ends or is closed
                write_json(self.run_dir / RESULTS, self._results, durable=True)
            return copy.deepcopy(entry)

    def finalize(self) -> dict[str, Any]:
        """Seal the run: final ``results.json``, ``junit.xml``, then the chained manifest."""
        with self._lock:
            if self._finalized:
                return copy.deepcopy(self._results)
            drills = self._results["drills"]
            passed = bool(drills) and all(d["status"] == "pass" for d in drills)
            self._results.update(
                finished_at=self._now().isoformat(),
                status="complete",
                verdict="pass" if passed else "fail",
            )
            write_json(self.run_dir / RESULTS, self._results, durable=self._durable)
            junit = build_junit(self._results, self.run_dir)
            write_atomic(self.run_dir / JUNIT, junit, durable=self._durable)
            root = self.run_dir.parent
            batched = os.path.abspath(root) in _BATCHED
            with _chain_lock(root):
                names = [] if batched else run_names(root)  # a batch looks once, at its end
                last = evidence_log.last_entry(root)
                write_report(
                    self.run_dir, self._results, _previous(root, last), durable=self._durable
                )
                files = hash_tree(self.run_dir)
                previous = _chain_tail(root, exclude=self.run_id, names=names)
                manifest = {
                    "schema_version": SCHEMA_VERSION,
                    "run_id": self.run_id,
                    "algorithm": "sha256",
                    "files": files,
                    "previous": previous,
                }
                write_json(self.run_dir / MANIFEST, manifest, durable=self._durable)
                publish_public_key(root, self._key, durable=self._durable)
                envelope = sign_run(self.run_dir, self._results, self._key, durable=self._durable)
                appended = evidence_log.append(
                    root,
                    names,
                    self._key,
                    own=(self.run_id, envelope),
                    sealer=lambda run_dir: _seal_dead(run_dir, self._key, self._durable),
                    durable=self._durable,
                    checkpoint=not batched,
                )
            self._release()
            self._finalized = True
            log.log(
                logging.DEBUG if self._synthetic else logging.INFO,  # a history is thousands
                "evidence.run_sealed run=%s verdict=%s files=%d previous=%s log_index=%s",
                self.run_id,
                self._results["verdict"],
                len(files),
                previous and previous["run_id"],
                appended.get(self.run_id),
            )
            return copy.deepcopy(self._results)

    def close(self) -> None:
        """Let go of the folder without sealing it, as a runner that died would: the next
        append to the log signs it ``FAILED`` from what is on disk."""
        with self._lock:
            if not self._durable and not self._finalized and self._release.alive:
                write_json(self.run_dir / RESULTS, self._results, durable=False)
        self._release()


def _seal_dead(run_dir: Path, key: SigningKey, durable: bool) -> bytes:
    """Sign a run whose writer is gone, from its files; the envelope's bytes."""
    results = load_results(run_dir)
    write_report(run_dir, results, _previous_started(run_dir), durable=durable)
    return sign_run(run_dir, results, key, durable=durable)


def _previous_started(run_dir: Path) -> dict[str, Any] | None:
    """The results of the newest run started before ``run_dir`` (by folder name), for the
    "what changed since" of a run signed after its writer died: by then the log's newest
    entry is a run that started later."""
    mine = run_key(run_dir.name)
    before = sorted((n for n in run_names(run_dir.parent) if run_key(n) < mine), key=run_key)
    for name in reversed(before):
        try:
            return load_results(run_dir.parent / name)
        except EvidenceError:
            continue
    return None


def _hold_folder(run_dir: Path) -> int:
    """An fd holding an exclusive flock on ``run_dir``: this run is alive while it is open."""
    try:
        fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise EvidenceError(os_error_message("open", run_dir, exc)) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise EvidenceError(
            f"evidence: another writer holds {run_dir}; pass a new --run-dir"
        ) from exc
    return fd


def _previous(root: Path, last: evidence_log.Entry | None) -> dict[str, Any] | None:
    """The results of the newest run in the log, for "what changed since"."""
    if last is None:
        return None
    try:
        return load_results(root / last.run_id)
    except EvidenceError:
        return None
