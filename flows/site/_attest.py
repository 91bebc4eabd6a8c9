"""The signed-evidence blocks of the site: per run (signature, key, log index, raw files) and
for the home page (the current checkpoint, and why to copy it elsewhere).

Each block checks the signature itself with the root's ``evidence-key.pub``, so a
page never claims "valid" for a statement that does not verify. The run page
links the raw envelope and inclusion proof, which :func:`flows.site._runs.copy_run`
puts beside the page with every other flat file of the run.
"""

from __future__ import annotations

import json
from html import escape as h
from pathlib import Path

from flows.errors import EvidenceError
from flows.evidence.dsse import IN_TOTO, EnvelopeError, open_envelope
from flows.evidence.keys import PUBLIC_KEY, PublicKey, load_public_key
from flows.evidence.layout import ATTESTATION, INCLUSION, REPORT
from flows.evidence.log import checkpoint_lines

__all__ = ["attest_block", "checkpoint_block"]


def _key(root: Path) -> PublicKey | None:
    try:
        return load_public_key(root / PUBLIC_KEY) if (root / PUBLIC_KEY).is_file() else None
    except EvidenceError:
        return None


def attest_block(run_dir: Path) -> str:
    """HTML for a run page: signature valid or not, key fingerprint, log index, raw links."""
    run_dir = Path(run_dir)
    report = (
        f'<p>Evidence document: <a href="{REPORT}">{REPORT}</a>.</p>'
        if (run_dir / REPORT).exists()
        else ""
    )
    try:
        raw = (run_dir / ATTESTATION).read_bytes()
    except OSError:
        return report + "<p>Not signed: this run predates signed evidence (chain only).</p>"
    key = _key(run_dir.parent)
    if key is None:
        verdict = f"<strong>not checked</strong>: {PUBLIC_KEY} is missing from the root"
    else:
        try:
            open_envelope(raw, IN_TOTO, key)
            verdict = "<strong>valid</strong>"
        except EnvelopeError as exc:
            verdict = f"<strong>INVALID</strong>: {h(str(exc))}"
    keyid = json.loads(raw).get("signatures", [{}])[0].get("keyid", "?")
    try:
        inclusion = json.loads((run_dir / INCLUSION).read_text())
        index = f"#{inclusion['log_index']} of {inclusion['tree_size']} when appended"
        proof = f', <a href="{INCLUSION}">inclusion proof</a>'
    except (OSError, ValueError, KeyError):
        index, proof = "not yet in the log", ""
    return (
        f"{report}<p>Signature: {verdict}. Key fingerprint (sha256 of the public key): "
        f"<code>{h(str(keyid))}</code>. Log index: {index}. Raw: "
        f'<a href="{ATTESTATION}">signed statement (DSSE)</a>{proof}.</p>'
    )


def checkpoint_block(root: Path, host: str = "") -> list[str]:
    """Markdown lines for the home page: the current checkpoint and how to use it."""
    lines = checkpoint_lines(Path(root))
    title = f"## Log checkpoint: {h(host)}" if host else "## Log checkpoint"
    return [title, "", *lines, ""] if lines else []
