"""The evidence signing key: where it lives, generated on first use, and its public half.

The private key is an Ed25519 key in PKCS#8 PEM, mode 0600, at (first found):
``--signing-key PATH`` (the CLI puts it in ``EVIDENCE_SIGNING_KEY``), then
``$EVIDENCE_SIGNING_KEY``, then ``$XDG_CONFIG_HOME/chaos-drills/evidence-key.pem``
(``~/.config`` when unset). It never goes under an artifacts root; the public
key does, as ``<root>/evidence-key.pub`` (PEM SubjectPublicKeyInfo). A key's id
is the hex SHA-256 of its public key's DER bytes. The cryptography is the
``cryptography`` package's; nothing here signs or verifies by hand.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from flows.errors import EvidenceError
from flows.evidence.atomic import os_error_message, write_atomic

__all__ = [
    "KEY_ENV",
    "PUBLIC_KEY",
    "SYNTHETIC_KEY_SEED",
    "PublicKey",
    "SigningKey",
    "default_key_path",
    "is_synthetic_key",
    "load_public_key",
    "load_signing_key",
    "publish_public_key",
    "synthetic_key",
]

KEY_ENV = "EVIDENCE_SIGNING_KEY"
PUBLIC_KEY = "evidence-key.pub"
# The private key of every synthetic history is SHA-256 of this text: published, so anyone
# can sign with it, and a statement it signs proves nothing. ``synth`` signs with it unless
# given ``--signing-key``, so a made-up run never carries the signature of a real key.
SYNTHETIC_KEY_SEED = b"chaos-drills synthetic evidence: a published key that proves nothing"

log = logging.getLogger("flows.evidence.keys")


def default_key_path() -> Path:
    """Where the private key is: ``$EVIDENCE_SIGNING_KEY``, else under ``$XDG_CONFIG_HOME``."""
    given = os.environ.get(KEY_ENV, "").strip()
    if given:
        return Path(given).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME", "").strip() or str(Path.home() / ".config")
    return Path(config) / "chaos-drills" / "evidence-key.pem"


@dataclass(frozen=True)
class PublicKey:
    """An Ed25519 public key with its id (hex SHA-256 of the DER SubjectPublicKeyInfo)."""

    key: Ed25519PublicKey
    keyid: str
    pem: bytes

    @classmethod
    def of(cls, key: Ed25519PublicKey) -> PublicKey:
        der = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        pem = key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(key, hashlib.sha256(der).hexdigest(), pem)

    def verifies(self, signature: bytes, data: bytes) -> bool:
        """True when ``signature`` is this key's Ed25519 signature over ``data``."""
        try:
            self.key.verify(signature, data)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class SigningKey:
    """The private key and its public half."""

    key: Ed25519PrivateKey
    public: PublicKey
    path: Path

    @property
    def keyid(self) -> str:
        return self.public.keyid

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data)


_CACHE: dict[tuple[str, int, int], SigningKey] = {}


def _generate(path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # O_EXCL: of two runs generating at once, one key wins and both load it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise EvidenceError(
            os_error_message("create the signing key", path, exc)
            + f", or point {KEY_ENV} / --signing-key at a key file"
        ) from exc
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    log.info("evidence.key_generated path=%s", path)


def load_signing_key(path: Path | None = None) -> SigningKey:
    """The key at ``path`` (default :func:`default_key_path`), generated there if missing."""
    path = Path(path) if path is not None else default_key_path()
    if not path.exists():
        _generate(path)
    try:
        st = path.stat()
        cached = _CACHE.get((str(path), st.st_ino, st.st_mtime_ns))
        if cached is not None:
            return cached
        raw = path.read_bytes()
    except OSError as exc:
        raise EvidenceError(os_error_message("read the signing key", path, exc)) from exc
    try:
        key = serialization.load_pem_private_key(raw, password=None)
    except (ValueError, TypeError) as exc:
        raise EvidenceError(
            f"evidence: {path} is not an unencrypted PEM private key ({exc}); "
            f"point {KEY_ENV} / --signing-key at an Ed25519 key, or move the file away "
            "to have a new one generated"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise EvidenceError(
            f"evidence: {path} holds a {type(key).__name__}, not an Ed25519 key; "
            "evidence is signed with Ed25519 only"
        )
    signing = SigningKey(key, PublicKey.of(key.public_key()), path)
    _CACHE[(str(path), st.st_ino, st.st_mtime_ns)] = signing
    return signing


def synthetic_key() -> SigningKey:
    """The well-known key synthetic histories are signed with (see :data:`SYNTHETIC_KEY_SEED`)."""
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(SYNTHETIC_KEY_SEED).digest())
    return SigningKey(key, PublicKey.of(key.public_key()), Path("<the synthetic key>"))


def is_synthetic_key(keyid: str | None) -> bool:
    """True for the id of :func:`synthetic_key`: its signatures prove nothing."""
    return keyid is not None and keyid == synthetic_key().keyid


def load_public_key(path: Path) -> PublicKey:
    """The Ed25519 public key in PEM file ``path``."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise EvidenceError(
            os_error_message("read the public key", Path(path), exc)
            + "; pass the signer's evidence-key.pub with --key"
        ) from exc
    try:
        key = serialization.load_pem_public_key(raw)
    except ValueError as exc:
        raise EvidenceError(
            f"evidence: {path} is not a PEM public key ({exc}); pass evidence-key.pub"
        ) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise EvidenceError(f"evidence: {path} holds a {type(key).__name__}, not Ed25519")
    return PublicKey.of(key)


def publish_public_key(
    root: Path, key: SigningKey, *, durable: bool = True, write: bool = True
) -> None:
    """Write ``<root>/evidence-key.pub`` (``write=False``: only check it); refuse a root
    already signed by another key."""
    path = Path(root) / PUBLIC_KEY
    try:
        existing = path.read_bytes()
    except FileNotFoundError:
        if write:
            write_atomic(path, key.public.pem, durable=durable)
        return
    except OSError as exc:
        raise EvidenceError(os_error_message("read", path, exc)) from exc
    if existing != key.public.pem:
        try:
            other = load_public_key(path).keyid[:16]
        except EvidenceError:
            other = "unreadable"
        raise EvidenceError(
            f"evidence: {root} is signed by key {other}…, but the signing key {key.path} "
            f"is {key.keyid[:16]}…; pass that root's key with --signing-key / {KEY_ENV}, "
            "or use a new --artifacts root"
        )
