"""Electronic signatures: Ed25519 over RFC 8785 (JCS) canonical JSON.

The private key stays with the signer (a browser's non-extractable WebCrypto key, or a key
file made by `liftwatch keys new`). What is signed is the JCS form of
`{"record_sha256", "signer_id", "name", "role", "meaning", "signed_at"}` — the printed name,
time and meaning a regulator expects of a signature — where `record_sha256` is the SHA-256
of the record's own JCS bytes. Anyone can check a record with a standard Ed25519 library and
any RFC 8785 implementation; nothing here is Liftwatch-specific.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PAYLOAD_FIELDS = ("record_sha256", "signer_id", "name", "role", "meaning", "signed_at")
MEANINGS = {"performed": "technician", "confirmed": "user_unit"}  # meaning -> role that may sign it
GENESIS_HASH = "0" * 64


def jcs(value: Any) -> bytes:
    """RFC 8785 canonical bytes."""
    return rfc8785.dumps(value)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_sha256(record: dict[str, Any]) -> str:
    return sha256_hex(jcs(record))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """Strict base64url (padding optional); ValueError on anything else."""
    if not isinstance(text, str) or len(text) > 4096 or any(c not in _B64URL for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=")


def timestamp(t: datetime | None = None) -> str:
    """RFC 3339 UTC with milliseconds, the form used in records and payloads."""
    t = t or datetime.now(UTC)
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def signing_payload(*, record_sha: str, signer_id: int, name: str, role: str, meaning: str,
                    signed_at: str) -> dict[str, Any]:
    return {"record_sha256": record_sha, "signer_id": signer_id, "name": name, "role": role,
            "meaning": meaning, "signed_at": signed_at}


def public_key_from_raw(raw: bytes) -> Ed25519PublicKey:
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def verify(public_key_raw: bytes, payload: dict[str, Any], signature: bytes) -> bool:
    """True when `signature` is the key's Ed25519 signature of JCS(payload)."""
    try:
        public_key_from_raw(public_key_raw).verify(signature, jcs(payload))
        return True
    except (InvalidSignature, ValueError):
        return False


def sign(private_key: Ed25519PrivateKey, payload: dict[str, Any]) -> bytes:
    return private_key.sign(jcs(payload))


# --- CLI key files --------------------------------------------------------------------------

def new_key_file(path: Path) -> bytes:
    """Write a new private key (PKCS#8 PEM, mode 0600); return the raw public key."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "xb") as fh:  # never overwrite a key
        path.chmod(0o600)
        fh.write(pem)
    return raw_public_key(key.public_key())


def load_key_file(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return key
