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

On top of the chain, :mod:`flows.evidence.audit` checks what is signed: each
run's statement against its files, the sealed criteria, every leaf against
``log/entries.jsonl``, the Merkle root against the signed checkpoint, each kept
older checkpoint (and ``--since SIZE:ROOT``) for consistency, and each
``inclusion.json``. A root with ``hosts/<name>/`` folders is verified host by
host, and each problem names its host.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.errors import EvidenceError
from flows.evidence.atomic import sha256_file
from flows.evidence.audit import (
    Audit,
    RunSigned,
    audit,
    check_run,
    parse_since,
    resolve_key,
)
from flows.evidence.keys import PublicKey, is_synthetic_key
from flows.evidence.layout import (
    ATTESTATION,
    CHECKPOINT,
    HOSTS,
    INCLUSION,
    MANIFEST,
    RESULTS,
    RUN_PREFIX,
    digest_mismatches,
    hash_tree,
    list_runs,
    load_results,
    read_json,
    short_digest,
)
from flows.evidence.memo import VerifyMemo, content_digest


@dataclass
class RunCheck:
    """The outcome for one run folder: ``OK``, ``INCOMPLETE`` or ``BROKEN``."""

    run_id: str
    state: str
    files: int
    problems: int = 0
    synthetic: bool = False  # results.json says the run is made up
    signed: bool = False  # has an attestation.dsse.json
    log_index: int | None = None
    host: str | None = None  # under hosts/<name>/ of a multi-host root


@dataclass
class VerifyReport:
    """What :func:`verify` found; incomplete runs are listed, never a failure."""

    path: Path
    runs_checked: int = 0
    problems: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)
    runs: list[RunCheck] = field(default_factory=list)
    checkpoints: dict[str, dict[str, Any]] = field(default_factory=dict)  # by host ("" = root)
    keyid: str | None = None
    audits: dict[str, Audit] = field(default_factory=dict)  # the signed half, by host

    @property
    def ok(self) -> bool:
        return not self.problems


def _results_facts(run_dir: Path) -> tuple[object, bool]:
    """(status, synthetic) from a run's ``results.json``; (None, False) when unreadable."""
    try:
        results = load_results(run_dir)
    except EvidenceError:
        return None, False  # with a manifest, reported as a missing or changed file
    return results.get("status"), results.get("synthetic") is True


def _check_files(
    run_dir: Path, status: object, tree: dict[str, str]
) -> tuple[int, list[str], dict[str, Any] | None]:
    """(files the manifest covers, problems, parsed manifest or None) for one run folder;
    ``tree`` is every file's sha256 but the attestation's and the inclusion proof's."""
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
    expected = manifest["files"]
    actual = {rel: digest for rel, digest in tree.items() if rel != MANIFEST}
    for rel, want, found in digest_mismatches(expected, actual):
        if found is None:
            problems.append(f"{name}: missing file {rel}")
        elif want is None:
            problems.append(f"{name}: extra file {rel}")
        else:
            problems.append(
                f"{name}: changed file {rel} "
                f"(sha256 expected {short_digest(want)}, found {short_digest(found)})"
            )
    if not problems and status != "complete":
        problems.append(f"{name}: results.json says status {status!r} but the run is sealed")
    return len(expected), problems, manifest


def _check_link(
    name: str, previous: Any, root: Path, manifests: dict[str, str | None]
) -> list[str]:
    """``manifests`` is the sha256 of each checked run's manifest (None: it has none);
    a run outside it is looked up on disk."""
    if not isinstance(previous, dict) or not isinstance(previous.get("run_id"), str):
        return [f"{name}: chain broken: manifest.json has a malformed previous entry"]
    prev_id = previous["run_id"]
    if prev_id in manifests and "/" not in prev_id:
        known = manifests[prev_id]
        if known is None:
            return [f"{name}: chain broken: previous run {prev_id} has no manifest.json"]
        found = known
    else:
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
            f"(sha256 expected {short_digest(previous.get('manifest_sha256'))}, found {short_digest(found)})"
        ]
    return []


def _check_chain(
    sealed: dict[str, Any], manifests: dict[str, str | None], root: Path, whole: bool
) -> dict[str, list[str]]:
    """Chain problems per run id from each sealed run's ``previous`` entry; ``whole`` adds
    the one-chain checks a root allows."""
    found: dict[str, list[str]] = {name: [] for name in sealed}
    heads: list[str] = []
    children: dict[str, list[str]] = {}
    for name, previous in sealed.items():  # oldest first, so the first of a pair is kept
        if previous is None:
            heads.append(name)
            continue
        found[name] += _check_link(name, previous, root, manifests)
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


def verify(
    path: Path,
    key: str | None = None,
    since: str | None = None,
    *,
    memo: VerifyMemo | None = None,
) -> VerifyReport:
    """Re-check one run folder, or every run under a root: files, chain, signatures, log.

    ``key`` is the signer's public key file (default ``<root>/evidence-key.pub``);
    ``since`` a checkpoint ``SIZE:ROOT_SHA256`` copied elsewhere, which the log must extend.
    ``memo`` (the evidence site's, :mod:`flows.evidence.memo`) lets a root's unchanged run
    folders skip their per-run checks; ``python -m flows verify`` never passes one.
    """
    path = Path(path)
    if not path.exists():
        raise EvidenceError(
            f"evidence: {path} does not exist; run `python -m flows run` first, "
            "or pass the folder that holds the chaos-drill-* runs"
        )
    if not path.is_dir():
        raise EvidenceError(f"evidence: {path} is a file; pass a run folder or the evidence root")
    wanted = parse_since(since) if since else None
    hosts = sorted(p for p in (path / HOSTS).glob("*") if p.is_dir())
    if not hosts:
        return _verify_root(path, key, wanted, memo)
    report = VerifyReport(path=path)
    parts = [("", path)] if list_runs(path) else []
    for name, root in parts + [(h.name, h) for h in hosts]:
        part = _verify_root(root, key, wanted, memo)
        label = f"host {name}: " if name else ""
        report.runs_checked += part.runs_checked
        report.problems += [label + p for p in part.problems]
        report.incomplete += part.incomplete
        for run in part.runs:
            run.host = name or None
        report.runs += part.runs
        if "" in part.checkpoints:
            report.checkpoints[name] = part.checkpoints[""]
        if "" in part.audits:
            report.audits[name] = part.audits[""]
        report.keyid = report.keyid or part.keyid
    return report


@dataclass
class RunFacts:
    """What one run folder alone tells verify: its files against its manifest, what its
    chain link names, its signed half. JSON-able: the site keeps it between publishes."""

    status: Any  # results.json's "status", None when unreadable
    synthetic: bool
    files: int  # the files its manifest covers, else the files it holds
    problems: list[str]  # its files against its manifest
    sealed: bool  # has a readable manifest
    previous: Any  # the manifest's "previous" entry
    manifest_sha256: str | None
    signed: RunSigned

    def to_json(self) -> dict[str, Any]:
        return {**vars(self), "signed": vars(self.signed)}

    @classmethod
    def from_json(cls, data: Any) -> RunFacts:
        """Raises TypeError or KeyError when ``data`` has another shape."""
        return cls(**{**data, "signed": RunSigned(**data["signed"])})


def run_facts(run: Path, root: Path, key: PublicKey | None) -> tuple[RunFacts, dict[str, str]]:
    """(the checks of one run folder, the sha256 of every file it holds)."""
    status, made_up = _results_facts(run)
    digests = hash_tree(run, exclude=())
    tree = {rel: d for rel, d in digests.items() if rel not in (ATTESTATION, INCLUSION)}
    count, problems, manifest = _check_files(run, status, tree)
    facts = RunFacts(
        status=status,
        synthetic=made_up,
        files=count or len(tree),
        problems=problems,
        sealed=manifest is not None,
        previous=manifest.get("previous") if manifest is not None else None,
        manifest_sha256=tree.get(MANIFEST),
        signed=check_run(run, root, key, tree),
    )
    return facts, digests


def _verify_root(
    path: Path,
    key_file: str | None,
    since: tuple[int, str] | None,
    memo: VerifyMemo | None = None,
) -> VerifyReport:
    single = _is_run(path)
    runs = [path] if single else list_runs(path)
    if not runs:
        raise EvidenceError(
            f"evidence: no run folders ({RUN_PREFIX}*) under {path}; "
            "run `python -m flows run` first"
        )
    root = path.parent if single else path
    key = resolve_key(root, key_file)
    kept = memo.root(root) if memo is not None and key_file is None and not single else None
    facts: dict[str, RunFacts] = {}
    contents: dict[str, Any] = {}  # memo.content_digest of each run's files
    for run in runs:
        cached = kept.get(run) if kept is not None else None
        if cached is not None:
            try:
                facts[run.name] = RunFacts.from_json(cached["verify"])
                contents[run.name] = str(cached["content"])
                continue
            except (TypeError, KeyError):
                pass  # another shape: checked again below
        facts[run.name], digests = run_facts(run, root, key)
        contents[run.name] = content_digest(digests)
    sealed = {name: f.previous for name, f in facts.items() if f.sealed}
    manifests = {name: f.manifest_sha256 for name, f in facts.items()}
    chain = _check_chain(sealed, manifests, root, whole=not single)
    checked = {name: f.signed for name, f in facts.items()}
    signed = audit(root, runs, checked, key, whole=not single, since=since)
    if kept is not None:  # after audit: it records which inclusion proofs it checked
        for run in runs:
            kept.put(run, verify=facts[run.name].to_json(), content=contents[run.name])
    report = VerifyReport(path=path, runs_checked=len(runs), keyid=signed.keyid)
    report.audits[""] = signed
    if signed.checkpoint is not None:
        report.checkpoints[""] = signed.checkpoint
    report.problems += signed.root
    listed = {run.name for run in runs}
    for name, extra in signed.runs.items():  # log entries whose folder is gone
        if name not in listed:
            report.problems += extra
    for run in runs:
        fact = facts[run.name]
        problems = fact.problems + chain.get(run.name, []) + signed.runs.get(run.name, [])
        state = "BROKEN" if problems else "OK" if fact.sealed else "INCOMPLETE"
        if state == "INCOMPLETE":
            report.incomplete.append(run.name)
        report.runs.append(
            RunCheck(
                run.name,
                state,
                fact.files,
                len(problems),
                fact.synthetic,
                fact.signed.leaf is not None,
                signed.index.get(run.name),
            )
        )
        report.problems += problems
    return report


def _is_run(path: Path) -> bool:
    return (
        (path / RESULTS).exists() or (path / MANIFEST).exists() or path.name.startswith(RUN_PREFIX)
    )


def _proofs(signed: Audit, run_id: str | None) -> dict[str, Any]:
    """The proofs one verified log gives: the current checkpoint, a consistency proof from
    each kept older checkpoint (and ``--since``), and ``run_id``'s inclusion proof."""
    tree, checkpoint = signed.tree, signed.checkpoint
    if tree is None or checkpoint is None:
        raise EvidenceError(
            "evidence: no signed log to prove against (no log/checkpoint.dsse.json that "
            "matches log/entries.jsonl); a root gets one when its first signed run is sealed"
        )
    size = len(tree)
    out: dict[str, Any] = {"checkpoint": {"file": CHECKPOINT, **checkpoint}}
    out["consistency"] = [
        {
            "from": where,
            "old_size": old_size,
            "old_root_sha256": old_root,
            "new_size": size,
            "new_root_sha256": checkpoint["root_sha256"],
            "proof": [h.hex() for h in tree.consistency_proof(old_size)],
        }
        for where, old_size, old_root in signed.older
    ]
    if run_id is not None:
        if run_id not in signed.index:
            raise EvidenceError(f"evidence: {run_id} is not in the log; nothing to prove")
        index = signed.index[run_id]
        if index >= size:
            raise EvidenceError(
                f"evidence: {run_id} is log entry {index}, after the signed checkpoint "
                f"(size {size}); run any drill to sign a new one"
            )
        out["inclusion"] = {
            "run_id": run_id,
            "log_index": index,
            "tree_size": size,
            "leaf_hash": tree.leaves[index].hex(),
            "root_sha256": checkpoint["root_sha256"],
            "audit_path": [h.hex() for h in tree.inclusion_proof(index)],
        }
    return out


def prove(
    path: Path, key: str | None = None, since: str | None = None
) -> tuple[VerifyReport, dict[str, Any]]:
    """Fresh proofs against the current signed checkpoint, made only after the whole
    log verified: for a run folder, its inclusion proof (RFC 9162 §2.1.3) and the root's
    consistency proofs; for a root, a consistency proof (§2.1.4) from each kept older
    checkpoint and from ``since``. The proofs are ``{}`` when the log does not verify (the
    report says why)."""
    path = Path(path)
    run_id = path.name if path.is_dir() and _is_run(path) else None
    root = path.parent if run_id else path
    report = verify(root, key, since)
    if not report.ok:
        return report, {}
    if set(report.audits) == {""}:
        proofs = _proofs(report.audits[""], run_id)
    else:
        proofs = {"hosts": {host: _proofs(a, None) for host, a in report.audits.items()}}
    return report, ({"run_id": run_id, **proofs} if run_id else proofs)


def cmd_verify(args: Any) -> int:
    """``python -m flows verify [PATH] [--key PUB] [--since SIZE:ROOT] [--prove]``: 0 intact,
    1 any problem, 2 nothing to verify. 0 whatever the verdicts: a sealed run that failed
    its drills is intact evidence. ``--prove`` prints the proofs as JSON instead, once the
    whole log verified.
    """
    key, since = getattr(args, "key", None), getattr(args, "since", None)
    try:
        if getattr(args, "prove", False):
            report, proofs = prove(Path(args.path), key, since)
            if report.ok:
                print(json.dumps(proofs, indent=2))
                return 0
        else:
            report = verify(Path(args.path), key, since)
    except EvidenceError as exc:
        print(exc, file=sys.stderr)
        return 2
    for run in report.runs:
        detail = {
            "OK": f"{run.files} files",
            "INCOMPLETE": "not finalized; outside the chain",
            "BROKEN": f"{run.problems} problem(s)",
        }[run.state]
        if run.signed:
            detail += ", signed"
        if run.log_index is not None:
            detail += f", log #{run.log_index}"
        host = f"host {run.host}: " if run.host else ""
        made_up = ", synthetic" if run.synthetic else ""
        print(f"{host}{run.state} {run.run_id} ({detail}{made_up})")
    for problem in report.problems:
        print(problem)
    where = f"{report.runs_checked} run(s) checked in {report.path}"
    skipped = f", {len(report.incomplete)} incomplete" if report.incomplete else ""
    synthetic = sum(run.synthetic for run in report.runs)
    skipped += f", {synthetic} synthetic" if synthetic else ""
    if report.keyid:
        made_up_key = (
            " (the published synthetic key: anyone can sign with it, its signatures prove nothing)"
            if is_synthetic_key(report.keyid)
            else ""
        )
        print(f"key: {report.keyid}{made_up_key}")
    for host, checkpoint in report.checkpoints.items():
        label = f"host {host} " if host else ""
        print(f"{label}checkpoint: size {checkpoint['size']} root {checkpoint['root_sha256']}")
    if report.ok:
        print(f"verify: intact: {where}{skipped}")
        return 0
    print(f"verify: BROKEN: {len(report.problems)} problem(s); {where}{skipped}")
    return 1
