"""Re-checking the evidence store: files against manifests, and the hash chain.

A run with a manifest is *sealed*: every file it lists must still hash the same,
nothing may be missing or added, and its ``previous`` link must name a sealed run
whose manifest still hashes to the recorded value. Under a root, the links must
form one chain: a single first run (``previous`` null) and no run linked twice.
A run without a manifest whose ``results.json`` says ``incomplete`` was never
sealed; it is reported, never a failure, and the chain skips it. A run whose
``results.json`` says ``"synthetic": true`` (a made-up history) is checked the same
way and named as synthetic. A sealed run whose verdict is ``fail`` is intact
evidence of a failure: verify checks the evidence, not the verdict.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.errors import EvidenceError
from flows.evidence.atomic import sha256_file
from flows.evidence.layout import (
    MANIFEST,
    RESULTS,
    RUN_PREFIX,
    hash_tree,
    list_runs,
    load_results,
    read_json,
)


@dataclass
class RunCheck:
    """The outcome for one run folder: ``OK``, ``INCOMPLETE`` or ``BROKEN``."""

    run_id: str
    state: str
    files: int
    problems: int = 0
    synthetic: bool = False  # results.json says the run is made up


@dataclass
class VerifyReport:
    """What :func:`verify` found; incomplete runs are listed, never a failure."""

    path: Path
    runs_checked: int = 0
    problems: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)
    runs: list[RunCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _short(digest: object) -> str:
    return f"{str(digest)[:12]}…"


def _results_facts(run_dir: Path) -> tuple[object, bool]:
    """(status, synthetic) from a run's ``results.json``; (None, False) when unreadable."""
    try:
        results = load_results(run_dir)
    except EvidenceError:
        return None, False  # with a manifest, reported as a missing or changed file
    return results.get("status"), results.get("synthetic") is True


def _check_files(run_dir: Path, status: object) -> tuple[int, list[str], dict[str, Any] | None]:
    """(files the manifest covers, problems, parsed manifest or None) for one run folder."""
    name, problems = run_dir.name, []
    if not (run_dir / MANIFEST).exists():
        if status == "incomplete":
            return 0, [], None
        what = "a complete run" if status == "complete" else "a folder with no readable results"
        return 0, [f"{name}: manifest.json missing on {what}; its files cannot be checked"], None
    try:
        manifest, _ = read_json(run_dir / MANIFEST)
    except EvidenceError as exc:
        return 0, [f"{name}: {str(exc).removeprefix('evidence: ')}"], None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return 0, [f'{name}: manifest.json has no "files" object; it was damaged'], None
    if manifest.get("run_id") != name:
        problems.append(
            f"{name}: manifest.json belongs to run {manifest.get('run_id')!r}; "
            "the folder was renamed or the manifest copied from another run"
        )
    expected, actual = manifest["files"], hash_tree(run_dir)
    for rel, digest in expected.items():
        if rel not in actual:
            problems.append(f"{name}: missing file {rel}")
        elif actual[rel] != digest:
            problems.append(
                f"{name}: changed file {rel} "
                f"(sha256 expected {_short(digest)}, found {_short(actual[rel])})"
            )
    problems += [f"{name}: extra file {rel}" for rel in actual if rel not in expected]
    if not problems and status != "complete":
        problems.append(f"{name}: results.json says status {status!r} but the run is sealed")
    return len(expected), problems, manifest


def _check_link(name: str, previous: Any, root: Path) -> list[str]:
    if not isinstance(previous, dict) or not isinstance(previous.get("run_id"), str):
        return [f"{name}: chain broken: manifest.json has a malformed previous entry"]
    prev_id = previous["run_id"]
    if "/" in prev_id or not (root / prev_id).is_dir():
        return [f"{name}: chain broken: previous run {prev_id} is missing"]
    prev_manifest = root / prev_id / MANIFEST
    if not prev_manifest.is_file():
        return [f"{name}: chain broken: previous run {prev_id} has no manifest.json"]
    try:
        found = sha256_file(prev_manifest)
    except OSError as exc:
        return [f"{name}: chain broken: manifest of previous run {prev_id} unreadable ({exc})"]
    if found != previous.get("manifest_sha256"):
        return [
            f"{name}: chain broken: manifest of previous run {prev_id} changed "
            f"(sha256 expected {_short(previous.get('manifest_sha256'))}, found {_short(found)})"
        ]
    return []


def _check_chain(
    sealed: dict[str, dict[str, Any]], root: Path, whole: bool
) -> dict[str, list[str]]:
    """Chain problems per run id; ``whole`` adds the one-chain checks a root allows."""
    found: dict[str, list[str]] = {name: [] for name in sealed}
    heads: list[str] = []
    children: dict[str, list[str]] = {}
    for name, manifest in sealed.items():  # oldest first, so the first of a pair is kept
        previous = manifest.get("previous")
        if previous is None:
            heads.append(name)
            continue
        found[name] += _check_link(name, previous, root)
        if isinstance(previous, dict) and isinstance(previous.get("run_id"), str):
            children.setdefault(previous["run_id"], []).append(name)
    if whole:
        for prev_id, (first, *others) in children.items():
            for kid in others:
                found[kid].append(f"{kid}: chain forked: {first} and {kid} both link to {prev_id}")
        for head in heads[1:]:
            found[head].append(
                f"{head}: chain broken: previous run is null, but {heads[0]} "
                "already started the chain under this root"
            )
    return found


def verify(path: Path) -> VerifyReport:
    """Re-hash one run folder, or every run under a root and the chain between them."""
    path = Path(path)
    if not path.exists():
        raise EvidenceError(
            f"evidence: {path} does not exist; run `python -m flows run` first, "
            "or pass the folder that holds the chaos-drill-* runs"
        )
    if not path.is_dir():
        raise EvidenceError(f"evidence: {path} is a file; pass a run folder or the evidence root")
    single = (path / RESULTS).exists() or (path / MANIFEST).exists()
    single = single or path.name.startswith(RUN_PREFIX)
    runs = [path] if single else list_runs(path)
    if not runs:
        raise EvidenceError(
            f"evidence: no run folders ({RUN_PREFIX}*) under {path}; "
            "run `python -m flows run` first"
        )
    found: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    sealed: dict[str, dict[str, Any]] = {}
    synthetic: set[str] = set()
    for run in runs:
        status, made_up = _results_facts(run)
        if made_up:
            synthetic.add(run.name)
        counts[run.name], found[run.name], manifest = _check_files(run, status)
        if manifest is not None:
            sealed[run.name] = manifest
    chain = _check_chain(sealed, path.parent if single else path, whole=not single)
    report = VerifyReport(path=path, runs_checked=len(runs))
    for run in runs:
        problems = found[run.name] + chain.get(run.name, [])
        state = "BROKEN" if problems else "OK" if run.name in sealed else "INCOMPLETE"
        if state == "INCOMPLETE":
            report.incomplete.append(run.name)
        report.runs.append(
            RunCheck(run.name, state, counts[run.name], len(problems), run.name in synthetic)
        )
        report.problems += problems
    return report


def cmd_verify(args: Any) -> int:
    """``python -m flows verify [PATH]``: 0 intact, 1 any problem, 2 nothing to verify.

    0 whatever the verdicts: a sealed run that failed its drills is intact evidence.
    """
    try:
        report = verify(Path(args.path))
    except EvidenceError as exc:
        print(exc, file=sys.stderr)
        return 2
    for run in report.runs:
        detail = {
            "OK": f"{run.files} files",
            "INCOMPLETE": "not finalized; outside the chain",
            "BROKEN": f"{run.problems} problem(s)",
        }[run.state]
        print(f"{run.state} {run.run_id} ({detail}{', synthetic' if run.synthetic else ''})")
    for problem in report.problems:
        print(problem)
    where = f"{report.runs_checked} run(s) checked in {report.path}"
    skipped = f", {len(report.incomplete)} incomplete" if report.incomplete else ""
    made_up = sum(run.synthetic for run in report.runs)
    skipped += f", {made_up} synthetic" if made_up else ""
    if report.ok:
        print(f"verify: intact: {where}{skipped}")
        return 0
    print(f"verify: BROKEN: {len(report.problems)} problem(s); {where}{skipped}")
    return 1
