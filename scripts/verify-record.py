#!/usr/bin/env python3
"""Verify a Liftwatch maintenance record without any Liftwatch code.

    curl -s -H "Authorization: Bearer $TOKEN" $API/api/v1/work-orders/N/record | python3 scripts/verify-record.py

Needs only `cryptography` and `rfc8785` (pip install cryptography rfc8785). Checks that
record_sha256 is the SHA-256 of the record's RFC 8785 bytes and that every signature is a
valid Ed25519 signature by its public key over the RFC 8785 bytes of its payload, which
names that same record hash. Exit 0 and a summary if all holds, 1 and the reason if not.
"""

import base64
import hashlib
import json
import sys

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def b64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def main() -> int:
    doc = json.load(sys.stdin)
    if "record" not in doc:
        print(f"not a record document: {json.dumps(doc)[:200]}", file=sys.stderr)
        return 1
    sha = hashlib.sha256(rfc8785.dumps(doc["record"])).hexdigest()
    if sha != doc["record_sha256"]:
        print(f"FAIL: the record hashes to {sha}, not {doc['record_sha256']}", file=sys.stderr)
        return 1
    lines = []
    for s in doc["signatures"]:
        p = s["payload"]
        if p["record_sha256"] != sha:
            print(f"FAIL: signature {s['signature_id']} signs another record ({p['record_sha256']})", file=sys.stderr)
            return 1
        try:
            Ed25519PublicKey.from_public_bytes(b64(s["public_key"])).verify(b64(s["signature"]), rfc8785.dumps(p))
        except InvalidSignature:
            print(f"FAIL: signature {s['signature_id']} ({p['meaning']} by {p['name']}) does not verify",
                  file=sys.stderr)
            return 1
        lines.append(f"  {p['meaning']:<9} by {p['name']} ({p['role']}) at {p['signed_at']}: Ed25519 OK")
    rec = doc["record"]
    print(f"OK: work order {doc['work_order_id']}, unit {rec['unit']['unit_id']} ({rec['unit']['kind']}), "
          f"{rec['kind']} visit, {len(rec['items'])} items, checklist {rec['checklist']['id']} "
          f"v{rec['checklist']['version']}\n  record sha256 {sha}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
