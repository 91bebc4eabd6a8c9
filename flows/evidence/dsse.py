"""DSSE envelopes (https://github.com/secure-systems-lab/dsse): sign and open.

An envelope is JSON ``{"payloadType", "payload" (base64), "signatures": [{"keyid",
"sig" (base64)}]}``; each signature is Ed25519 over the pre-authentication
encoding ``DSSEv1 <len(type)> <type> <len(body)> <body>``. securesystemslib's
``dsse.Envelope`` reads and verifies what this writes (``tests/test_evidence_signed.py``).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from flows.evidence.keys import PublicKey, SigningKey

__all__ = ["EnvelopeError", "open_envelope", "pae", "seal"]

IN_TOTO = "application/vnd.in-toto+json"
CHECKPOINT = "application/vnd.chaos-drills.checkpoint+json"


class EnvelopeError(ValueError):
    """An envelope that does not open; the message says which part failed."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding of ``payload``."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def seal(payload_type: str, payload: bytes, key: SigningKey) -> bytes:
    """The envelope (UTF-8 JSON, final newline) of ``payload`` signed by ``key``."""
    envelope = {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [
            {
                "keyid": key.keyid,
                "sig": base64.b64encode(key.sign(pae(payload_type, payload))).decode("ascii"),
            }
        ],
    }
    return (json.dumps(envelope, indent=2) + "\n").encode("utf-8")


def open_envelope(raw: bytes, payload_type: str, key: PublicKey) -> Any:
    """The parsed JSON payload of an envelope signed by ``key``; :class:`EnvelopeError` if not."""
    try:
        envelope = json.loads(raw)
        kind, payload_b64 = envelope["payloadType"], envelope["payload"]
        signatures = envelope["signatures"]
        payload = base64.b64decode(payload_b64, validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise EnvelopeError(f"not a DSSE envelope ({type(exc).__name__}: {exc})") from exc
    if kind != payload_type:
        raise EnvelopeError(f"payloadType is {kind!r}, expected {payload_type!r}")
    if not isinstance(signatures, list) or not signatures:
        raise EnvelopeError("no signatures")
    keyids = []
    for entry in signatures:
        if not isinstance(entry, dict):
            continue
        keyids.append(str(entry.get("keyid")))
        try:
            sig = base64.b64decode(str(entry.get("sig")), validate=True)
        except binascii.Error:
            continue
        if key.verifies(sig, pae(kind, payload)):
            try:
                return json.loads(payload)
            except ValueError as exc:
                raise EnvelopeError(f"signed payload is not JSON ({exc})") from exc
    ours = key.keyid[:16]
    theirs = ", ".join(k[:16] + "…" for k in keyids) or "none"
    if key.keyid in keyids:
        raise EnvelopeError(
            f"signature invalid: the payload or signature changed after key {ours}… signed it"
        )
    raise EnvelopeError(f"not signed by key {ours}… (signed by keyid {theirs})")
