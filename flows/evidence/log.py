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
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.errors import EvidenceError
from flows.evidence import merkle
from flows.evidence.atomic import os_error_message, sha256_bytes, write_atomic, write_json
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
    """What this process knows of one root's log: entries, the tree, the file read so far."""

    identity: tuple[int, int] = (0, 0)  # (inode, bytes read)
    entries: list[Entry] = field(default_factory=list)
    tree: merkle.Tree = field(default_factory=merkle.Tree)
    leaves: dict[str, int] = field(default_factory=dict)  # run_id -> index


_LOGS: dict[str, _Log] = {}


def _load(root: Path) -> _Log:
    """The log of ``root``, reading only the lines appended since this process last looked."""
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
    for line in complete.splitlines():
        obj = json.loads(line)
        entry = Entry(obj["index"], obj["run_id"], obj["leaf_sha256"], obj.get("leaf", ATTESTATION))
        state.entries.append(entry)
        state.leaves[entry.run_id] = entry.index
        # the Merkle leaf is over the bytes; entries carry their sha256 only
        state.tree.append(_leaf_hash_of(root, entry))
    state.identity = (st.st_ino, state.identity[1] + len(complete))
    _LOGS[key] = state
    return state


def last_entry(root: Path) -> Entry | None:
    """The newest leaf of ``root``'s log; call under the chain lock."""
    entries = _load(Path(root)).entries
    return entries[-1] if entries else None


def _leaf_hash_of(root: Path, entry: Entry) -> bytes:
    """The Merkle leaf hash of a leaf another process appended (read from its file)."""
    try:
        return merkle.leaf_hash((root / entry.run_id / entry.leaf).read_bytes())
    except OSError as exc:
        raise EvidenceError(
            f"evidence: log entry {entry.index} names {entry.run_id}/{entry.leaf}, which cannot "
            f"be read ({exc}); `python -m flows verify {root}` names what broke"
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
) -> dict[str, int]:
    """Append ``own`` (run id, envelope bytes) and every run the log lacks; sign the checkpoint.

    Call only under the root's chain lock. Returns the index of each leaf appended.
    """
    root = Path(root)
    state = _load(root)
    todo = _missing(root, names, state.leaves, sealer, own[0] if own else "")
    if own is not None and own[0] not in state.leaves:
        todo.append((own[0], ATTESTATION, own[1]))
    if not todo:
        return {}
    old_size = len(state.entries)
    lines = []
    for run_id, leaf_name, data in todo:
        entry = Entry(len(state.entries), run_id, sha256_bytes(data), leaf_name)
        line = {"index": entry.index, "run_id": run_id, "leaf_sha256": entry.leaf_sha256}
        if leaf_name != ATTESTATION:
            line["leaf"] = leaf_name
        lines.append(json.dumps(line) + "\n")
        state.entries.append(entry)
        state.leaves[run_id] = entry.index
        state.tree.append(merkle.leaf_hash(data))
    _write_entries(root, "".join(lines).encode("utf-8"), state, durable)
    _write_checkpoint(root, state, key, old_size, origin, durable)
    for run_id, leaf_name, _ in todo:
        if leaf_name == ATTESTATION:
            _write_inclusion(root / run_id, state, state.leaves[run_id], durable)
    return {run_id: state.leaves[run_id] for run_id, _, _ in todo}


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


def _write_checkpoint(
    root: Path, state: _Log, key: SigningKey, old_size: int, origin: str | None, durable: bool
) -> None:
    current = root / CHECKPOINT
    if old_size and current.exists():
        (root / CHECKPOINTS).mkdir(exist_ok=True)
        kept = root / checkpoint_name(old_size)
        if not kept.exists():
            write_atomic(kept, current.read_bytes(), durable=durable)
    payload = checkpoint_payload(
        origin or os.path.basename(os.path.abspath(root)), len(state.entries), state.tree.root()
    )
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    write_atomic(current, seal(CHECKPOINT_TYPE, body, key), durable=durable)


def _write_inclusion(run_dir: Path, state: _Log, index: int, durable: bool) -> None:
    size = len(state.entries)
    write_json(
        run_dir / INCLUSION,
        {
            "log_index": index,
            "tree_size": size,
            "leaf_sha256": state.entries[index].leaf_sha256,
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
        payload = json.loads(base64.b64decode(json.loads(raw)["payload"]))
    except (OSError, ValueError, KeyError, TypeError):
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
