"""The append-only log over all runs of a root (RFC 6962 / RFC 9162 style).

``<root>/log/entries.jsonl`` lists the leaves in order, one JSON line each:
``{"index", "run_id", "leaf_sha256", "leaf"}``; the leaf of a run is the exact
bytes of its ``attestation.dsse.json`` (``leaf`` names the file; a run written
before signing existed is adopted with its ``manifest.json`` as the leaf and is
never rewritten). ``log/checkpoint.dsse.json`` is a DSSE envelope, same key, over
``{"origin", "size", "root_sha256"}``; each checkpoint it replaces is kept as
``log/checkpoints/checkpoint-<size>.dsse.json``, so anyone can check later that
the log only grew. Each appended run gets ``inclusion.json`` (its leaf index,
the tree size and the audit path against that checkpoint).

Every append happens under the root's chain lock (:func:`flows.evidence.writer`):
the appender also brings in every run the log lacks: chain-only runs (in chain
order), statements signed but never appended, and runs whose writer died, which
are signed ``FAILED`` from what is on disk first. A writer holds an flock on its
run folder while alive, so a run still going is never taken for a dead one.

An append costs O(log n) hashes and no leaf reads: a process keeps the tree it
built, and one that has not looked at the log yet takes the tree's compact range
from the newest run's audit path, trusted only if it reproduces the root of the
checkpoint on disk (else it rehashes every leaf once). ``checkpoint=False``
appends entries only, for a batch that signs one checkpoint at its end.
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from flows.errors import EvidenceError
from flows.evidence import merkle
from flows.evidence.atomic import (
    fsync_dir,
    os_error_message,
    sha256_bytes,
    write_atomic,
    write_json,
)
from flows.evidence.dsse import CHECKPOINT as CHECKPOINT_TYPE
from flows.evidence.dsse import seal
from flows.evidence.keys import SigningKey
from flows.evidence.layout import (
    ATTESTATION,
    CHECKPOINT,
    CHECKPOINTS,
    CRITERIA,
    ENTRIES,
    INCLUSION,
    LOG_DIR,
    MANIFEST,
    read_json,
    run_key,
)

__all__ = [
    "Entry",
    "append",
    "checkpoint_lines",
    "checkpoint_name",
    "checkpoint_payload",
    "last_entry",
    "logged",
    "newest_first",
    "parse_entries",
    "writer_alive",
]

log = logging.getLogger("flows.evidence.log")


@dataclass(frozen=True)
class Entry:
    index: int
    run_id: str
    leaf_sha256: str
    leaf: str = ATTESTATION


def checkpoint_name(size: int) -> str:
    """Where the checkpoint of ``size`` leaves is kept once a newer one replaces it."""
    return f"{CHECKPOINTS}/checkpoint-{size:08d}.dsse.json"


def parse_entries(raw: bytes) -> tuple[list[Entry], list[str]]:
    """(entries, problems) of ``entries.jsonl``; a line that does not parse is a problem."""
    entries: list[Entry] = []
    problems: list[str] = []
    for number, line in enumerate(raw.splitlines(), 1):
        try:
            obj = json.loads(line)
            entry = Entry(
                int(obj["index"]),
                str(obj["run_id"]),
                str(obj["leaf_sha256"]),
                str(obj.get("leaf", ATTESTATION)),
            )
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"{ENTRIES} line {number} is not a log entry ({exc})")
            continue
        if entry.index != len(entries):
            problems.append(
                f"{ENTRIES} line {number} has index {entry.index}, expected {len(entries)}: "
                "an entry was removed or inserted"
            )
        entries.append(entry)
    return entries, problems


@dataclass
class _Log:
    """What this process knows of one root's log: the entries, the tree, the file read so far."""

    identity: tuple[int, int] = (0, 0)  # (inode, bytes read)
    run_ids: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)  # run_id -> index
    leaf_files: dict[int, str] = field(default_factory=dict)  # index -> file, if not ATTESTATION
    # leaf_sha256 of the newest line read and of every leaf this process appended; the
    # others are verify's business (an append needs only the tree)
    leaf_sha256: dict[int, str] = field(default_factory=dict)
    tree: merkle.Tree = field(default_factory=merkle.Tree)
    unproven: list[str] = field(default_factory=list)  # appended, no checkpoint/inclusion yet

    def entry(self, index: int) -> Entry:
        return Entry(
            index,
            self.run_ids[index],
            self.leaf_sha256[index],
            self.leaf_files.get(index, ATTESTATION),
        )

    def add(self, run_id: str, leaf_sha256: str, leaf: str) -> int:
        index = len(self.run_ids)
        self.run_ids.append(run_id)
        self.leaf_sha256[index] = leaf_sha256
        if leaf != ATTESTATION:
            self.leaf_files[index] = leaf
        self.index[run_id] = index
        return index

    def extend(self, lines: _Lines) -> None:
        start = len(self.run_ids)
        self.run_ids.extend(lines.run_ids)
        self.index.update(zip(lines.run_ids, range(start, len(self.run_ids)), strict=True))
        self.leaf_files.update((start + i, f) for i, f in lines.leaf_files.items())
        self.leaf_sha256.update((start + i, h) for i, h in lines.leaf_sha256.items())


@dataclass
class _Lines:
    """Complete lines of ``entries.jsonl``: run ids, and by line number the leaf file (when
    not the attestation) and the leaf sha256 (of the newest line at least)."""

    run_ids: list[str]
    leaf_files: dict[int, str]
    leaf_sha256: dict[int, str]


_LOGS: dict[str, _Log] = {}

# The start of a line as :func:`append` writes it. A fresh process reads a log of years
# on every append: one pass of this finds every run id; only the newest line and those
# naming another leaf file are parsed whole, and any other shape sends all to ``json``.
_RUN_ID = re.compile(r'\{"index": \d+, "run_id": "([^"\\\n]*)", ')
_OTHER_LEAF = '"leaf": "'


def _parse_lines(path: Path, data: bytes, first: int) -> _Lines:
    """The complete lines of ``data``, the first being line ``first + 1`` of ``path``."""
    try:
        text = data.decode("utf-8")
        count = text.count("\n")
        run_ids = _RUN_ID.findall(text)
        if len(run_ids) != count:
            lines = text.splitlines()
            parsed = {n: json.loads(line) for n, line in enumerate(lines)}
            run_ids = [str(parsed[n]["run_id"]) for n in range(len(lines))]
        elif _OTHER_LEAF in text:  # chain-only runs adopted: a few, read whole
            lines = text.splitlines()
            numbered = {n for n, line in enumerate(lines) if _OTHER_LEAF in line} | {count - 1}
            parsed = {n: json.loads(lines[n]) for n in numbered}
        else:  # the newest line, for the leaf it names
            parsed = {count - 1: json.loads(text[text.rfind("\n", 0, -1) + 1 :])} if count else {}
        return _Lines(
            run_ids,
            {n: str(obj["leaf"]) for n, obj in parsed.items() if "leaf" in obj},
            {n: str(obj["leaf_sha256"]) for n, obj in parsed.items()},
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise EvidenceError(
            f"evidence: {path} from line {first + 1} on holds a line that is not a log entry "
            f"({exc}); no run can join the log until it is repaired: "
            f"`python -m flows verify {path.parent.parent}` names what broke"
        ) from exc


def _load(root: Path) -> _Log:
    """The log of ``root``, reading only the lines appended since this process last looked.

    A process that has not looked yet reads the entries (not the leaves) and takes the
    tree's compact range from the newest run's inclusion proof, checked against the
    checkpoint on disk: O(log n) hashes. Only when they disagree (a crash between the
    entries and the checkpoint, adopted chain-only runs last) does it rehash every leaf.
    """
    path = root / ENTRIES
    key = os.path.abspath(root)
    state = _LOGS.get(key) or _Log()
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_ino != state.identity[0] or st.st_size < state.identity[1]:
                state = _Log()
            f.seek(state.identity[1])
            new = f.read()
    except FileNotFoundError:
        _LOGS[key] = _Log()
        return _LOGS[key]
    except OSError as exc:
        raise EvidenceError(os_error_message("read", path, exc)) from exc
    complete = new[: new.rfind(b"\n") + 1]  # a line cut by a crash is rewritten whole
    known = len(state.run_ids)
    state.extend(_parse_lines(path, complete, known))  # by position: verify judges indexes
    tree = _tree_from_checkpoint(root, state) if known == 0 else None
    if tree is not None:
        state.tree = tree
    else:
        for index in range(len(state.tree), len(state.run_ids)):
            # the Merkle leaf is over the bytes; entries carry their sha256 only
            state.tree.append(_leaf_hash_of(root, index, state))
    state.identity = (st.st_ino, state.identity[1] + len(complete))
    _LOGS[key] = state
    return state


def _tree_from_checkpoint(root: Path, state: _Log) -> merkle.Tree | None:
    """The tree of ``state`` from the newest leaf's inclusion proof (its audit path is the
    compact range of the leaves before it), if the checkpoint's root agrees; else None."""
    size = len(state.run_ids)
    if not size:
        return None
    last = state.entry(size - 1)
    try:
        signed = json.loads(
            base64.b64decode(json.loads((root / CHECKPOINT).read_bytes())["payload"])
        )
        proof = json.loads((root / last.run_id / INCLUSION).read_bytes())
        leaf = (root / last.run_id / last.leaf).read_bytes()
        if (
            int(signed["size"]) != size
            or int(proof["log_index"]) != size - 1
            or int(proof["tree_size"]) != size
            or sha256_bytes(leaf) != last.leaf_sha256
        ):
            return None
        path = [bytes.fromhex(h) for h in proof["audit_path"]]
        tree = merkle.Tree.from_compact_range(size - 1, path[::-1])
        tree.append(merkle.leaf_hash(leaf))
        if tree.root().hex() != signed["root_sha256"]:
            return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.debug("evidence.log_rehash root=%s reason=%s", root, exc)
        return None
    return tree


def last_entry(root: Path) -> Entry | None:
    """The newest leaf of ``root``'s log; call under the chain lock."""
    state = _load(Path(root))
    return state.entry(len(state.run_ids) - 1) if state.run_ids else None


def logged(root: Path) -> Mapping[str, int]:
    """Run id -> leaf index of every run in ``root``'s log (a read-only view); call under
    the chain lock."""
    return MappingProxyType(_load(Path(root)).index)


def newest_first(root: Path) -> Iterator[str]:
    """The run ids of ``root``'s log, newest leaf first; call under the chain lock."""
    return reversed(_load(Path(root)).run_ids)


def _leaf_hash_of(root: Path, index: int, state: _Log) -> bytes:
    """The Merkle leaf hash of a leaf another process appended (read from its file)."""
    leaf = root / state.run_ids[index] / state.leaf_files.get(index, ATTESTATION)
    try:
        return merkle.leaf_hash(leaf.read_bytes())
    except OSError as exc:
        raise EvidenceError(
            f"evidence: log entry {index} names {leaf}, which cannot be read ({exc}); "
            f"`python -m flows verify {root}` names what broke"
        ) from exc


def writer_alive(run_dir: Path) -> bool:
    """True while a :class:`RunWriter` holds ``run_dir`` (its flock on the folder)."""
    try:
        fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's lock
    return False


def _chain_order(root: Path, names: list[str]) -> list[str]:
    """Chain-only runs in their chain's order (hops from its head), name order on ties."""
    previous: dict[str, str | None] = {}
    for name in names:
        try:
            manifest, _ = read_json(root / name / MANIFEST)
            link = manifest.get("previous") if isinstance(manifest, dict) else None
            previous[name] = link.get("run_id") if isinstance(link, dict) else None
        except EvidenceError:
            previous[name] = None
    depth: dict[str, int] = {}

    def hops(name: str) -> int:
        seen: list[str] = []
        while name in previous and name not in depth and name not in seen:
            seen.append(name)
            name = previous[name] or ""
        base = depth.get(name, -1)
        for n in reversed(seen):
            base += 1
            depth[n] = base
        return depth[seen[0]] if seen else base

    return sorted(names, key=lambda n: (hops(n), run_key(n)))


Sealer = Callable[[Path], bytes]  # signs a dead writer's run from disk; the envelope's bytes


def _missing(
    root: Path, names: Iterable[str], known: dict[str, int], sealer: Sealer, own: str
) -> list[tuple[str, str, bytes]]:
    """(run_id, leaf file, leaf bytes) of every run the log lacks, in the order to append."""
    legacy: list[str] = []
    signed: list[tuple[str, str, bytes]] = []
    for name in sorted((n for n in names if n not in known and n != own), key=run_key):
        run = root / name
        if (run / ATTESTATION).exists():
            signed.append((name, ATTESTATION, (run / ATTESTATION).read_bytes()))
        elif (run / CRITERIA).exists():
            if not writer_alive(run):
                log.warning("evidence.run_adopted run=%s reason=its writer is gone", name)
                signed.append((name, ATTESTATION, sealer(run)))
        elif (run / MANIFEST).exists():
            legacy.append(name)
    chained = [
        (n, MANIFEST, (root / n / MANIFEST).read_bytes()) for n in _chain_order(root, legacy)
    ]
    return chained + signed


def append(
    root: Path,
    names: Iterable[str],
    key: SigningKey,
    *,
    own: tuple[str, bytes] | None,
    sealer: Sealer,
    durable: bool = True,
    origin: str | None = None,
    checkpoint: bool = True,
) -> dict[str, int]:
    """Append ``own`` (run id, envelope bytes) and every run the log lacks; sign the checkpoint.

    Call only under the root's chain lock. Returns the index of each leaf appended.
    ``checkpoint=False`` writes the entries only: the checkpoint and the inclusion proofs
    of those runs come with the next append that signs one (a batch, see
    :func:`flows.evidence.writer.batched_log`).
    """
    root = Path(root)
    state = _load(root)
    todo = _missing(root, names, state.index, sealer, own[0] if own else "")
    if own is not None and own[0] not in state.index:
        todo.append((own[0], ATTESTATION, own[1]))
    if not todo and (not checkpoint or not state.unproven):
        return {}
    before, lines = len(state.tree), []
    for run_id, leaf_name, data in todo:
        index = state.add(run_id, sha256_bytes(data), leaf_name)
        line = {"index": index, "run_id": run_id, "leaf_sha256": state.leaf_sha256[index]}
        if leaf_name != ATTESTATION:
            line["leaf"] = leaf_name
        lines.append(json.dumps(line) + "\n")
        state.tree.append(merkle.leaf_hash(data))
        if leaf_name == ATTESTATION:
            state.unproven.append(run_id)
    if lines:
        _write_entries(root, "".join(lines).encode("utf-8"), state, durable)
    if checkpoint:
        _write_checkpoint(root, state, key, before, origin, durable)
        for run_id in state.unproven:
            _write_inclusion(root / run_id, state, state.index[run_id], durable)
        state.unproven.clear()
    return {run_id: state.index[run_id] for run_id, _, _ in todo}


def _write_entries(root: Path, data: bytes, state: _Log, durable: bool) -> None:
    path = root / ENTRIES
    try:
        (root / LOG_DIR).mkdir(exist_ok=True)
        with open(path, "ab") as f:
            if f.tell() != state.identity[1]:
                f.truncate(state.identity[1])  # a line half-written by a crashed appender
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
            state.identity = (os.fstat(f.fileno()).st_ino, state.identity[1] + len(data))
    except OSError as exc:
        raise EvidenceError(os_error_message("append to", path, exc)) from exc


def checkpoint_payload(origin: str, size: int, root_hash: bytes) -> dict[str, Any]:
    return {"origin": origin, "size": size, "root_sha256": root_hash.hex()}


def stated_checkpoint(raw: bytes) -> dict[str, Any] | None:
    """The payload a checkpoint envelope states, its signature unchecked: ``size`` (an int)
    and ``root_sha256``; None when the bytes are no such envelope."""
    try:
        payload = json.loads(base64.b64decode(json.loads(raw)["payload"]))
        return {**payload, "size": int(payload["size"]), "root_sha256": str(payload["root_sha256"])}
    except (ValueError, KeyError, TypeError):
        return None


def _signed_size(raw: bytes) -> int | None:
    """The size a checkpoint envelope states (its signature unchecked), None if unreadable."""
    payload = stated_checkpoint(raw)
    return None if payload is None else int(payload["size"])


def _keep(root: Path, current: Path, before: int, durable: bool) -> None:
    """Keep the checkpoint about to be replaced as ``checkpoint-<its size>``: a hard link to
    the same bytes (no copy), a copy where the file system has no links."""
    raw = current.read_bytes()
    size = _signed_size(raw)
    if size is None:
        log.warning("evidence.checkpoint_unreadable path=%s kept_as_size=%d", current, before)
        size = before  # a damaged checkpoint is kept all the same, for verify to show
    (root / CHECKPOINTS).mkdir(exist_ok=True)
    kept = root / checkpoint_name(size)
    if kept.exists():
        return
    try:
        os.link(current, kept)
    except OSError:
        write_atomic(kept, raw, durable=durable)
        return
    if durable:
        fsync_dir(kept.parent)


def _write_checkpoint(
    root: Path, state: _Log, key: SigningKey, before: int, origin: str | None, durable: bool
) -> None:
    current = root / CHECKPOINT
    try:
        _keep(root, current, before, durable)
    except FileNotFoundError:
        pass  # the first checkpoint of this root
    except OSError as exc:
        raise EvidenceError(os_error_message("keep", current, exc)) from exc
    payload = checkpoint_payload(
        origin or os.path.basename(os.path.abspath(root)), len(state.tree), state.tree.root()
    )
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    write_atomic(current, seal(CHECKPOINT_TYPE, body, key), durable=durable)


def _write_inclusion(run_dir: Path, state: _Log, index: int, durable: bool) -> None:
    size = len(state.tree)
    write_json(
        run_dir / INCLUSION,
        {
            "log_index": index,
            "tree_size": size,
            "leaf_sha256": state.leaf_sha256[index],
            "root_sha256": state.tree.root(size).hex(),
            "audit_path": [h.hex() for h in state.tree.inclusion_proof(index, size)],
            "checkpoint": CHECKPOINT,
            "kept_as": checkpoint_name(size),
        },
        durable=durable,
    )


def checkpoint_lines(root: Path) -> list[str]:
    """Markdown: the current checkpoint (size, root hash, signature checked with the root's
    public key) and why to copy it elsewhere; [] when the root has no log yet."""
    from flows.evidence.dsse import EnvelopeError, open_envelope
    from flows.evidence.keys import PUBLIC_KEY, load_public_key

    try:
        raw = (Path(root) / CHECKPOINT).read_bytes()
    except OSError:
        return []
    payload = stated_checkpoint(raw)
    if payload is None:
        return []
    try:
        open_envelope(raw, CHECKPOINT_TYPE, load_public_key(Path(root) / PUBLIC_KEY))
        signed = "signature valid"
    except (EnvelopeError, EvidenceError):
        signed = "signature NOT valid"
    return [
        f"- log checkpoint: size **{payload.get('size')}**, root hash "
        f"`{payload.get('root_sha256')}` ({signed})",
        "- copy these two values somewhere we do not control (a ticket, a chat): later, "
        "`python -m flows verify ROOT --since SIZE:ROOT_HASH` shows the log only grew from "
        "them, so no run before it was rewritten or removed",
    ]
