"""The signed-evidence blocks of the site: per run (signature, key, log index, raw files) and
for the home page (the current checkpoint, and why to copy it elsewhere).

Each block checks the signature itself with the root's ``evidence-key.pub``, so a
page never claims "valid" for a statement that does not verify. The run page
links the raw envelope and inclusion proof, which :func:`flows.site._runs.copy_run`
puts beside the page with every other flat file of the run.
"""

from __future__ import annotations

import functools
import json
from html import escape as h
from pathlib import Path

from flows.errors import EvidenceError
from flows.evidence.dsse import IN_TOTO, EnvelopeError, open_envelope
from flows.evidence.keys import PUBLIC_KEY, PublicKey, is_synthetic_key, load_public_key
from flows.evidence.layout import (
    ATTESTATION,
    CRITERIA,
    ENTRIES,
    INCLUSION,
    MANIFEST,
    REPORT,
    run_key,
)
from flows.evidence.log import checkpoint_lines, parse_entries

__all__ = ["attest_block", "checkpoint_block"]


def _key(root: Path) -> PublicKey | None:
    try:
        return load_public_key(root / PUBLIC_KEY) if (root / PUBLIC_KEY).is_file() else None
    except EvidenceError:
        return None


@functools.lru_cache(maxsize=8)
def _signed_in_log(entries: Path, stamp: tuple[int, int]) -> tuple[str | None, frozenset[str]]:
    """(the first run the log lists with a signed leaf, every such run); ``stamp``
    (inode, size) makes a grown log read again."""
    try:
        parsed, _ = parse_entries(entries.read_bytes())
    except OSError:
        return None, frozenset()
    signed = [e.run_id for e in parsed if e.leaf == ATTESTATION]
    return (signed[0] if signed else None), frozenset(signed)


def _unsigned(run_dir: Path) -> str:
    """Why a run has no statement: it predates signing, it has not been signed yet, or
    its statement was removed (which ``verify`` reports as BROKEN)."""
    root = run_dir.parent
    entries = root / ENTRIES
    try:
        st = entries.stat()
        first, signed = _signed_in_log(entries, (st.st_ino, st.st_size))
        logged = True
    except OSError:
        first, signed, logged = None, frozenset(), False
    sealed = (run_dir / MANIFEST).exists()
    if not sealed and (run_dir / CRITERIA).exists():
        return (
            "<p>Not signed yet: the run never finished (still going, or its writer died); "
            "the next run signs it FAILED from what it left.</p>"
        )
    removed = f"<p><strong>NOT SIGNED</strong>: {ATTESTATION} is missing, yet "
    if run_dir.name in signed:
        return removed + "the log lists this run as signed: it was removed after signing.</p>"
    if (run_dir / CRITERIA).exists():
        return removed + f"the run sealed {CRITERIA}, so it was signed: it was removed.</p>"
    if first is not None and run_key(run_dir.name) > run_key(first):
        return (
            removed + f"{h(first)} before it is signed: a run this new must be "
            "signed (removed, or written by something that does not sign).</p>"
        )
    if not logged and (root / PUBLIC_KEY).exists():
        return (
            removed + f"the root is signed ({PUBLIC_KEY}) and its log "
            f"({ENTRIES}) is missing: nothing shows this run predates signing.</p>"
        )
    return "<p>Not signed: this run predates signed evidence (chain only).</p>"


def attest_block(run_dir: Path) -> str:
    """HTML for a run page: signature valid or not, the fingerprint of the key that checked
    it, log index, raw links."""
    run_dir = Path(run_dir)
    report = (
        f'<p>Evidence document: <a href="{REPORT}">{REPORT}</a>.</p>'
        if (run_dir / REPORT).exists()
        else ""
    )
    try:
        raw = (run_dir / ATTESTATION).read_bytes()
    except OSError:
        return report + _unsigned(run_dir)
    key = _key(run_dir.parent)
    try:
        claimed = str(json.loads(raw).get("signatures", [{}])[0].get("keyid", "?"))
    except (ValueError, AttributeError, IndexError, TypeError):
        claimed = "?"
    if key is None:
        verdict = f"<strong>not checked</strong>: {PUBLIC_KEY} is missing from the root"
        fingerprint = f"Key: none to check with; the envelope claims key <code>{h(claimed)}</code>."
    else:
        try:
            open_envelope(raw, IN_TOTO, key)
            verdict = "<strong>valid</strong>"
        except EnvelopeError as exc:
            verdict = f"<strong>INVALID</strong>: {h(str(exc))}"
        fingerprint = (
            "Checked with the root's key, fingerprint (sha256 of the public key) "
            f"<code>{h(key.keyid)}</code>"
        )
        if is_synthetic_key(key.keyid):
            fingerprint += " (the published synthetic key: anyone can sign with it)"
        if claimed != key.keyid:
            fingerprint += f"; the envelope claims another key, <code>{h(claimed)}</code>"
        fingerprint += "."
    if not (run_dir / MANIFEST).exists():
        verdict += (
            " (signed FAILED by a later run after this run's writer died: the statement "
            "covers the files as they were left)"
        )
    try:
        inclusion = json.loads((run_dir / INCLUSION).read_text())
        index = f"#{inclusion['log_index']} of {inclusion['tree_size']} when appended"
        proof = f', <a href="{INCLUSION}">inclusion proof</a>'
    except (OSError, ValueError, KeyError):
        index, proof = "not yet in the log", ""
    return (
        f"{report}<p>Signature: {verdict}. {fingerprint} Log index: {index}. Raw: "
        f'<a href="{ATTESTATION}">signed statement (DSSE)</a>{proof}.</p>'
    )


def checkpoint_block(root: Path, host: str = "") -> list[str]:
    """Markdown lines for the home page: the current checkpoint and how to use it."""
    lines = checkpoint_lines(Path(root))
    title = f"## Log checkpoint: {h(host)}" if host else "## Log checkpoint"
    return [title, "", *lines, ""] if lines else []
