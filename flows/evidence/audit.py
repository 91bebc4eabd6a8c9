"""The signed half of ``verify``: statements, the log, its checkpoints, the sealed criteria.

:func:`audit` takes the run folders of one root (or one run) and the public key
(``--key``, else ``<root>/evidence-key.pub``) and returns the problems per run
and for the root. Each message names what broke: the file, the run, the log
entry or checkpoint, and the values that disagree. Nothing here trusts a
digest it did not recompute, and the only trusted input is the public key.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from flows.errors import EvidenceError
from flows.evidence import merkle
from flows.evidence.attest import PREDICATE_TYPE, STATEMENT_TYPE
from flows.evidence.criteria import drill_digest
from flows.evidence.dsse import CHECKPOINT as CHECKPOINT_TYPE
from flows.evidence.dsse import IN_TOTO, EnvelopeError, open_envelope
from flows.evidence.keys import PUBLIC_KEY, PublicKey, load_public_key
from flows.evidence.layout import (
    ATTESTATION,
    CHECKPOINT,
    CHECKPOINTS,
    CRITERIA,
    ENTRIES,
    INCLUSION,
    MANIFEST,
    RESULTS,
    digest_mismatches,
    read_json,
    run_key,
    run_names,
    short_digest,
)
from flows.evidence.log import Entry, checkpoint_name, parse_entries

__all__ = ["Audit", "RunSigned", "audit", "check_run", "parse_since", "resolve_key"]


@dataclass
class Audit:
    """Problems per run id and for the root; each run's log index; the signed checkpoint."""

    runs: dict[str, list[str]] = field(default_factory=dict)
    root: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    checkpoint: dict[str, Any] | None = None
    keyid: str | None = None
    tree: merkle.Tree | None = None  # the log's tree, recomputed and matching the checkpoint
    older: list[tuple[str, int, str]] = field(default_factory=list)  # (where, size, root hex)


def resolve_key(root: Path, given: str | None) -> PublicKey | None:
    """``--key PUB`` if given, else ``<root>/evidence-key.pub``, else None."""
    if given:
        return load_public_key(Path(given))
    if (root / PUBLIC_KEY).is_file():
        return load_public_key(root / PUBLIC_KEY)
    return None


def parse_since(value: str) -> tuple[int, str]:
    """``SIZE:ROOT_SHA256`` (a checkpoint copied elsewhere) as (size, hex root)."""
    size, _, root = value.partition(":")
    if not size.isdigit() or len(root) != 64:
        raise EvidenceError(
            f"--since {value!r}: expected SIZE:ROOT_SHA256 as copied from a checkpoint, "
            "e.g. 42:3f0a…(64 hex digits)"
        )
    return int(size), root.lower()


def _check_statement(
    run_dir: Path, raw: bytes, key: PublicKey, actual: dict[str, str]
) -> list[str]:
    name = run_dir.name
    try:
        statement = open_envelope(raw, IN_TOTO, key)
    except EnvelopeError as exc:
        return [f"{name}: {ATTESTATION}: {exc}"]
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        return [f"{name}: {ATTESTATION} is signed but is not an in-toto Statement v1"]
    problems = []
    if statement.get("predicateType") != PREDICATE_TYPE:
        problems.append(f"{name}: statement predicateType is {statement.get('predicateType')!r}")
    signed: dict[str, str] = {}
    for subject in statement.get("subject", []):
        subject_name = str(subject.get("name", ""))
        run_id, _, rel = subject_name.partition("/")
        if run_id != name:
            problems.append(
                f"{name}: the signed statement is for run {run_id!r}, not this folder: "
                "runs swapped or renamed"
            )
            break
        signed[rel] = str(subject.get("digest", {}).get("sha256"))
    for rel, want, found in digest_mismatches(signed, actual):
        if found is None:
            problems.append(f"{name}: {rel} is missing; the signed statement lists it")
        elif want is None:
            problems.append(f"{name}: {rel} is not in the signed statement (added after signing)")
        else:
            problems.append(
                f"{name}: {rel} differs from the signed statement "
                f"(sha256 signed {short_digest(want)}, found {short_digest(found)})"
            )
    return problems


def _when(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def check_criteria(run_dir: Path) -> list[str]:
    """The criteria were sealed before the first drill, unchanged, and every drill ran
    under them."""
    name = run_dir.name
    try:
        criteria, raw = read_json(run_dir / CRITERIA)
        results, _ = read_json(run_dir / RESULTS)
    except EvidenceError as exc:
        return [f"{name}: {str(exc).removeprefix('evidence: ')}"]
    problems = []
    found = hashlib.sha256(raw).hexdigest()
    if results.get("criteria_sha256") != found:
        problems.append(
            f"{name}: {CRITERIA} changed after it was sealed (the run committed to sha256 "
            f"{short_digest(results.get('criteria_sha256'))}, the file is {short_digest(found)})"
        )
    sealed: dict[str, str] = {}
    for entry in criteria.get("drills", []):
        body = {k: v for k, v in entry.items() if k != "sha256"}
        if drill_digest(body) != entry.get("sha256"):
            problems.append(
                f"{name}: {CRITERIA} entry for drill {entry.get('id')} was edited: its "
                "thresholds, timeouts or code digest no longer match its sealed sha256"
            )
        sealed[str(entry.get("id"))] = str(entry.get("sha256"))
    sealed_at = _when(criteria.get("sealed_at"))
    for drill in results.get("drills", []):
        if drill.get("started_at") is None and drill.get("status") == "incomplete":
            continue  # never ran
        ran = drill.get("criteria_sha256")
        if ran != sealed.get(drill.get("id")):
            problems.append(
                f"{name}: drill {drill.get('id')} ran under criteria other than the sealed "
                f"ones (ran under {short_digest(ran)}, sealed {short_digest(sealed.get(drill.get('id')))})"
            )
        started = _when(drill.get("started_at"))
        if sealed_at is not None and started is not None and started < sealed_at:
            problems.append(
                f"{name}: {CRITERIA} was sealed at {criteria.get('sealed_at')}, after drill "
                f"{drill.get('id')} started at {drill.get('started_at')}"
            )
    return problems


def _open_checkpoint(root: Path, rel: str, key: PublicKey) -> tuple[int, str] | str:
    """(size, root hex) of a checkpoint file, or the problem with it."""
    try:
        payload = open_envelope((root / rel).read_bytes(), CHECKPOINT_TYPE, key)
        return int(payload["size"]), str(payload["root_sha256"])
    except OSError as exc:
        return f"{rel}: unreadable ({exc.strerror or exc})"
    except EnvelopeError as exc:
        return f"{rel}: {exc}"
    except (KeyError, TypeError, ValueError) as exc:
        return f"{rel}: signed payload lacks size/root_sha256 ({exc})"


@dataclass
class _Leaves:
    entries: list[Entry]
    hashes: list[bytes | None]


def _check_entries(
    root: Path, entries: list[Entry], leaves: dict[str, tuple[str, bytes]], out: Audit
) -> _Leaves:
    """Each entry against its run's leaf; ``leaves`` holds the statements already read
    (sha256 hex, Merkle leaf hash), the others are read here."""
    by_sha = {e.leaf_sha256: e for e in entries}
    hashes: list[bytes | None] = []
    seen: set[str] = set()
    for entry in entries:
        where = f"log entry {entry.index} ({entry.run_id})"
        if entry.run_id in seen:
            out.root.append(f"{where}: run logged twice")
        seen.add(entry.run_id)
        out.index[entry.run_id] = entry.index
        known = leaves.get(entry.run_id) if entry.leaf == ATTESTATION else None
        if known is None:
            try:
                data = (root / entry.run_id / entry.leaf).read_bytes()
            except OSError:
                if (root / entry.run_id).is_dir():
                    out.runs.setdefault(entry.run_id, []).append(
                        f"{where}: {entry.run_id}/{entry.leaf} is missing"
                    )
                else:
                    out.root.append(
                        f"{where}: run folder {entry.run_id} is missing: deleted after it was "
                        "logged"
                    )
                hashes.append(None)
                continue
            known = (hashlib.sha256(data).hexdigest(), merkle.leaf_hash(data))
        digest, leaf_hash = known
        if digest != entry.leaf_sha256:
            other = by_sha.get(digest)
            problem = (
                f"{where}: the folder holds the statement logged for {other.run_id} "
                f"(entry {other.index}): runs swapped or renamed"
                if other is not None
                else f"{where}: {entry.leaf} does not match the log (sha256 logged "
                f"{short_digest(entry.leaf_sha256)}, found {short_digest(digest)}): replaced after logging"
            )
            out.runs.setdefault(entry.run_id, []).append(problem)
        hashes.append(leaf_hash)
    return _Leaves(entries, hashes)


def _check_log(
    root: Path,
    checked: dict[str, RunSigned],
    key: PublicKey,
    since: tuple[int, str] | None,
    out: Audit,
) -> None:
    names = {name for name, c in checked.items() if c.sealed}
    leaves = {
        name: (c.leaf[0], bytes.fromhex(c.leaf[1]))
        for name, c in checked.items()
        if c.leaf is not None
    }
    try:
        raw = (root / ENTRIES).read_bytes()
    except FileNotFoundError:
        why = (
            "runs are signed"
            if leaves
            else f"the root is signed ({PUBLIC_KEY} or --key names its signer)"
        )
        out.root.append(
            f"{ENTRIES} is missing, but {why}: the log was deleted, and with it the proof "
            "that no run was removed or rewritten; restore log/ from a copy"
        )
        if since is not None:
            out.root.append(
                f"--since {since[0]}:{short_digest(since[1])}: there is no log to extend that "
                "checkpoint: the log was deleted"
            )
        return
    entries, problems = parse_entries(raw)
    _check_downgrade(root, entries, out)
    out.root += problems
    got = _check_entries(root, entries, leaves, out)
    for name in sorted(names - set(out.index)):
        out.runs.setdefault(name, []).append(
            f"{name}: sealed but not in {ENTRIES}: added after the fact, or its entry removed"
        )
    signed = _open_checkpoint(root, CHECKPOINT, key)
    if isinstance(signed, str):
        out.root.append(signed)
        return
    size, root_hex = signed
    out.checkpoint = {"size": size, "root_sha256": root_hex}
    n = len(entries)
    if size > n:
        out.root.append(
            f"{CHECKPOINT} covers {size} runs but {ENTRIES} lists {n}: the newest "
            f"{size - n} run(s) were removed after the checkpoint was signed"
        )
        return
    if size < n:
        out.root.append(
            f"{ENTRIES} lists {n} runs but the signed checkpoint covers {size}: entries "
            f"{size}..{n - 1} are signed by no checkpoint"
        )
    gone = [str(i) for i, h in enumerate(got.hashes[:size]) if h is None]
    if gone:
        out.root.append(
            f"{CHECKPOINT}: the Merkle root cannot be recomputed without leaves {', '.join(gone)}"
        )
        return
    tree = merkle.Tree([h for h in got.hashes[:size] if h is not None])
    if tree.root().hex() != root_hex:
        out.root.append(
            f"the Merkle root of {ENTRIES} ({short_digest(tree.root().hex())}) is not the one "
            f"{CHECKPOINT} signs ({short_digest(root_hex)}): the history was rewritten after signing"
        )
        return
    out.tree = tree
    opened: dict[str, tuple[int, str] | str] = {}  # each kept checkpoint's signature checked once
    _check_older(root, tree, key, since, opened, out)
    _check_inclusion(root, tree, key, opened, checked, out)


def _open_kept(
    root: Path, rel: str, key: PublicKey, opened: dict[str, tuple[int, str] | str]
) -> tuple[int, str] | str:
    if rel not in opened:
        opened[rel] = _open_checkpoint(root, rel, key)
    return opened[rel]


def _check_older(
    root: Path,
    tree: merkle.Tree,
    key: PublicKey,
    since: tuple[int, str] | None,
    opened: dict[str, tuple[int, str] | str],
    out: Audit,
) -> None:
    older: list[tuple[str, tuple[int, str] | str]] = []
    try:
        kept = sorted(os.listdir(root / CHECKPOINTS))
    except FileNotFoundError:
        kept = []
    for file in kept:
        rel = f"{CHECKPOINTS}/{file}"
        older.append((rel, _open_kept(root, rel, key, opened)))
    if since is not None:
        older.append(("--since", since))
    size = len(tree)
    for rel, signed in older:
        if isinstance(signed, str):
            out.root.append(signed)
            continue
        old_size, old_root = signed
        if old_size > size:
            out.root.append(f"{rel}: size {old_size} is larger than the current log ({size})")
            continue
        if old_size == 0:
            continue
        out.older.append((rel, old_size, old_root))
        proof = tree.consistency_proof(old_size)
        if not merkle.verify_consistency(
            old_size, size, proof, bytes.fromhex(old_root), tree.root()
        ):
            out.root.append(
                f"{rel} (size {old_size}, root {short_digest(old_root)}): the current log is not an "
                f"extension of it: its first {old_size} entries were rewritten"
            )


def _check_inclusion(
    root: Path,
    tree: merkle.Tree,
    key: PublicKey,
    opened: dict[str, tuple[int, str] | str],
    checked: dict[str, RunSigned],
    out: Audit,
) -> None:
    """Each run's ``inclusion.json`` against the checkpoint it names. A proof the run's
    :class:`RunSigned` says was proven for the same index, leaf and root (its folder
    unchanged, the kept checkpoint's signature checked again above) is not re-hashed:
    only the runs proven against the current checkpoint (the newest append) and the
    changed ones are."""
    size = len(tree)
    current: str | None = None
    for run_id, index in out.index.items():
        run = checked.get(run_id)
        if index >= size or (
            run.leaf is None if run is not None else not (root / run_id / ATTESTATION).exists()
        ):
            continue
        leaf = tree.leaves[index]
        if run is not None and run.proven is not None:
            at, ts, proven_root, proven_leaf = run.proven
            if at == index and ts <= size and proven_leaf == leaf.hex():
                if ts == size:
                    current = current or tree.root().hex()
                    signed: tuple[int, str] | str = (size, current)
                else:
                    signed = _open_kept(root, checkpoint_name(ts), key, opened)
                if not isinstance(signed, str) and signed[1] == proven_root:
                    continue
        try:
            proof, _ = read_json(root / run_id / INCLUSION)
            ts, path = int(proof["tree_size"]), [bytes.fromhex(h) for h in proof["audit_path"]]
            at = int(proof["log_index"])
        except (EvidenceError, KeyError, TypeError, ValueError) as exc:
            out.runs.setdefault(run_id, []).append(f"{run_id}: {INCLUSION} unusable ({exc})")
            continue
        if ts == size:
            current = current or tree.root().hex()
            signed = (size, current)
        else:
            signed = _open_kept(root, checkpoint_name(ts), key, opened)
        if (
            isinstance(signed, str)
            or at != index
            or ts > size
            or not merkle.verify_inclusion(index, ts, leaf, path, bytes.fromhex(signed[1]))
        ):
            why = signed if isinstance(signed, str) else f"log index {at}, tree size {ts}"
            out.runs.setdefault(run_id, []).append(
                f"{run_id}: {INCLUSION} does not prove the run in the checkpoint it names ({why})"
            )
        elif run is not None:
            run.proven = [index, ts, signed[1], leaf.hex()]


@dataclass
class RunSigned:
    """What the signed half concludes from one run folder alone (JSON-able: the site keeps
    it between publishes, :mod:`flows.evidence.memo`)."""

    problems: list[str]  # its criteria and its statement
    sealed: bool  # has a manifest or a statement
    unsigned: bool  # sealed, no statement, and nothing else says it was signed
    leaf: list[str] | None = None  # the statement's [sha256, Merkle leaf hash], hex
    # [log index, tree size, root hex, leaf hash hex] its inclusion.json was last proven with
    proven: list[Any] | None = None


def check_run(run: Path, root: Path, key: PublicKey | None, actual: dict[str, str]) -> RunSigned:
    """The checks of one run folder that need nothing else: its sealed criteria, and its
    statement against ``actual`` (its files and sha256, the attestation and proof aside)."""
    problems = check_criteria(run) if (run / CRITERIA).exists() else []
    try:
        raw = (run / ATTESTATION).read_bytes()
    except FileNotFoundError:
        if not (run / MANIFEST).exists():
            return RunSigned(problems, sealed=False, unsigned=False)
        if (run / CRITERIA).exists():
            problems.append(
                f"{run.name}: sealed but {ATTESTATION} is missing (the run wrote "
                f"{CRITERIA}, so it was signed)"
            )
            return RunSigned(problems, sealed=True, unsigned=False)
        return RunSigned(problems, sealed=True, unsigned=True)
    leaf = [hashlib.sha256(raw).hexdigest(), merkle.leaf_hash(raw).hex()]
    if key is None:
        problems.append(
            f"{run.name}: signed, but no public key: {root / PUBLIC_KEY} is missing; "
            "pass the signer's key with --key"
        )
    else:
        problems += _check_statement(run, raw, key, actual)
    return RunSigned(problems, sealed=True, unsigned=False, leaf=leaf)


def audit(
    root: Path,
    runs: list[Path],
    checked: dict[str, RunSigned],
    key: PublicKey | None,
    *,
    whole: bool,
    since: tuple[int, str] | None = None,
) -> Audit:
    """The signed half of ``runs`` from each one's :func:`check_run` (``checked``, by run
    id); with ``whole``, the log of ``root`` too: entries, Merkle root, checkpoints,
    inclusion proofs (all of it each time: cheap once the leaves are known)."""
    out = Audit(keyid=key.keyid if key else None)
    for run in runs:
        out.runs[run.name] = list(checked[run.name].problems)
    if since is not None and key is None:
        out.root.append(
            f"--since {since[0]}:{short_digest(since[1])} names a signed checkpoint, but there is "
            f"no public key to check the log with: {root / PUBLIC_KEY} is missing (removed "
            "with the signatures?); pass the signer's key with --key"
        )
    if key is None:
        return out
    unsigned = {name for name, c in checked.items() if c.unsigned}
    _check_unsigned(root, runs, unsigned, out)
    if whole:
        _check_log(root, checked, key, since, out)
    else:
        _check_single(root, runs[0].name, key, out)
    return out


def _check_unsigned(root: Path, runs: list[Path], unsigned: set[str], out: Audit) -> None:
    """A sealed run without a statement, newer than a signed run of the same root: a
    downgrade (the statement was removed, or the run written by something that does not
    sign). Runs older than the first signed one predate signing and are left alone."""
    if not unsigned:
        return
    first = min(
        (name for name in run_names(root) if (root / name / ATTESTATION).exists()),
        key=run_key,
        default=None,
    )
    if first is None:
        return
    for run in runs:
        if run.name in unsigned and run_key(run.name) > run_key(first):
            out.runs.setdefault(run.name, []).append(
                f"{run.name}: sealed but not signed, although {first} before it is: a "
                f"downgrade ({ATTESTATION} removed, or the run written unsigned)"
            )


def _check_downgrade(root: Path, entries: list[Entry], out: Audit) -> None:
    """No chain-only (unsigned) leaf may follow a signed one in the log."""
    first = next((e for e in entries if e.leaf == ATTESTATION), None)
    for entry in entries:
        if first is not None and entry.index > first.index and entry.leaf != ATTESTATION:
            out.root.append(
                f"log entry {entry.index} ({entry.run_id}): logged unsigned ({entry.leaf}) "
                f"after entry {first.index} ({first.run_id}) was signed: a downgrade"
            )


def _check_single(root: Path, run_id: str, key: PublicKey, out: Audit) -> None:
    """One run against its root's log: its entry, the whole log behind it and its
    ``inclusion.json``; ``verify RUN --prove`` prints a fresh proof (:func:`verify.prove`)."""
    try:
        entries, problems = parse_entries((root / ENTRIES).read_bytes())
    except FileNotFoundError:
        out.root.append(
            f"{ENTRIES} is missing, but the root is signed ({PUBLIC_KEY} or --key): the log "
            "was deleted, so the run cannot be placed in it"
        )
        return
    whole = Audit()
    names = {e.run_id for e in entries}
    _check_log(root, {}, key, None, whole)
    out.root += problems + whole.root
    out.checkpoint = whole.checkpoint
    if run_id not in names:
        out.runs.setdefault(run_id, []).append(f"{run_id}: not in {ENTRIES}")
        return
    out.runs.setdefault(run_id, []).extend(whole.runs.get(run_id, []))
    out.index[run_id] = whole.index[run_id]
