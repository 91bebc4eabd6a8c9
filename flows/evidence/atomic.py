"""Crash-safe file writes and hashing for the evidence store.

A reader (``verify``, trends, a person with ``cat``) must only ever see the old
content or the new content of an evidence file, never half of one: every write
goes to a temp file in the same folder, is fsynced, then ``os.replace``d over the
target, and the folder is fsynced so the rename itself survives a power cut.
``durable=False`` keeps the rename (readers still never see half a file) and skips
the fsyncs, for a history that is rebuilt from a seed rather than kept.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import Any

from flows.errors import EvidenceError

_CHUNK = 1 << 20


def os_error_message(action: str, path: Path, exc: OSError) -> str:
    """``evidence: cannot write /x: [Errno 28] No space left on device; <what to do>``."""
    if exc.errno is not None and exc.strerror:
        reason = f"[Errno {exc.errno}] {exc.strerror}"
    else:
        reason = str(exc) or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        advice = "free space on that disk or pass another --artifacts root"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = "make that folder writable or pass another --artifacts root"
    elif action == "read":
        advice = "check that the run folder is intact (`python -m flows verify`)"
    else:
        advice = "check that folder or pass another --artifacts root"
    return f"evidence: cannot {action} {path}: {reason}; {advice}"


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` so readers never see a partial file."""
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; evidence is meant to be read by others
        os.replace(tmp, path)
        tmp = None
        if durable:
            fsync_dir(path.parent)
    except OSError as exc:
        raise EvidenceError(os_error_message("write", path, exc)) from exc
    finally:
        if tmp is not None:
            with suppress(OSError):
                os.unlink(tmp)


def write_json(path: Path, obj: Any, *, durable: bool = True) -> None:
    """Atomically write ``obj`` as indented UTF-8 JSON with a final newline."""
    text = json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
    write_atomic(path, text.encode("utf-8"), durable=durable)


def fsync_dir(path: Path) -> None:
    """Make a rename or mkdir inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in chunks (logs can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
