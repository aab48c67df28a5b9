"""The hash-chained signature ledger: append under a lock, verify end to end.

entry = {"seq", "prev_hash", "work_order_id", "signature_id", "key_id", "payload",
         "signature", "public_key"}           (signature and public key base64url)
entry_hash = sha256(JCS(entry)); the first entry's prev_hash is 64 zeros.

`verify` re-checks, for every entry in order: the entry hash, the link to the previous
entry, the Ed25519 signature over JCS(payload), that the signature row and the enrolled key
still say what the entry says, and that the work order's stored record still hashes to the
`record_sha256` that was signed. It stops at, and names, the first bad entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

from liftwatch import esign

LEDGER_LOCK_KEY = 0x4C45_4447  # "LEDG": serialises appends so the chain cannot fork


def append(conn: psycopg.Connection, *, signature_id: int, work_order_id: int, key_id: int,
           payload: dict[str, Any], signature: bytes, public_key: bytes) -> dict[str, Any]:
    """Append one entry; must run inside the transaction that inserted the signature (dict rows)."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (LEDGER_LOCK_KEY,))
    last = conn.execute("SELECT seq, entry_hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (1, esign.GENESIS_HASH) if last is None else (last["seq"] + 1, last["entry_hash"])
    entry = {"seq": seq, "prev_hash": prev, "work_order_id": work_order_id, "signature_id": signature_id,
             "key_id": key_id, "payload": payload, "signature": esign.b64url(signature),
             "public_key": esign.b64url(public_key)}
    entry_hash = esign.sha256_hex(esign.jcs(entry))
    conn.execute(
        "INSERT INTO ledger (seq, signature_id, entry, prev_hash, entry_hash) VALUES (%s, %s, %s, %s, %s)",
        (seq, signature_id, psycopg.types.json.Jsonb(entry), prev, entry_hash),
    )
    return {"seq": seq, "entry_hash": entry_hash, "prev_hash": prev}


@dataclass
class VerifyReport:
    entries: int = 0
    ok: bool = True
    first_bad_seq: int | None = None
    problem: str | None = None
    problems: list[str] = field(default_factory=list)

    def fail(self, seq: int | None, problem: str) -> None:
        if self.ok:
            self.ok, self.first_bad_seq, self.problem = False, seq, problem
        self.problems.append(f"entry {seq}: {problem}" if seq is not None else problem)


_VERIFY_SQL = """
SELECT l.seq, l.entry, l.prev_hash, l.entry_hash, l.signature_id,
       s.work_order_id AS s_work_order_id, s.key_id AS s_key_id, s.payload AS s_payload,
       s.signature AS s_signature, s.meaning AS s_meaning, s.person_id AS s_person_id,
       k.public_key AS k_public_key, k.person_id AS k_person_id,
       w.record, w.record_sha256
  FROM ledger l
  LEFT JOIN signatures s ON s.signature_id = l.signature_id
  LEFT JOIN signing_keys k ON k.key_id = s.key_id
  LEFT JOIN work_orders w ON w.work_order_id = s.work_order_id
 ORDER BY l.seq"""


def verify(conn: psycopg.Connection) -> VerifyReport:
    report = VerifyReport()
    prev_hash = esign.GENESIS_HASH
    expected_seq = 1
    seen_signatures: set[int] = set()
    with conn.cursor(row_factory=dict_row) as cur:
        for row in cur.execute(_VERIFY_SQL):  # streams: one row per signature
            report.entries += 1
            seq = row["seq"]
            _check_entry(report, row, seq, expected_seq, prev_hash)
            seen_signatures.add(row["signature_id"])
            prev_hash = row["entry_hash"]
            expected_seq = seq + 1
        orphans = cur.execute(
            "SELECT signature_id FROM signatures WHERE NOT (signature_id = ANY(%s)) ORDER BY signature_id",
            (list(seen_signatures),),
        ).fetchall()
    for row in orphans:
        sig_id = row["signature_id"]
        report.fail(None, f"signature {sig_id} has no ledger entry (a ledger row was deleted)")
    return report


def _check_entry(report: VerifyReport, row: dict, seq: int, expected_seq: int, prev_hash: str) -> None:
    entry = row["entry"]
    if seq != expected_seq:
        report.fail(seq, f"sequence jumps from {expected_seq - 1} to {seq} (entries missing)")
    if entry.get("seq") != seq:
        report.fail(seq, "entry.seq differs from the row's seq")
    if row["prev_hash"] != prev_hash or entry.get("prev_hash") != prev_hash:
        report.fail(seq, "prev_hash does not match the previous entry's hash (chain broken)")
    if esign.sha256_hex(esign.jcs(entry)) != row["entry_hash"]:
        report.fail(seq, "entry_hash does not match the entry's content (entry altered)")
    try:
        sig = esign.b64url_decode(entry["signature"])
        pub = esign.b64url_decode(entry["public_key"])
        payload = entry["payload"]
    except (KeyError, ValueError, TypeError):
        report.fail(seq, "entry is malformed")
        return
    if not esign.verify(pub, payload, sig):
        report.fail(seq, "Ed25519 signature does not verify over the payload")
    if row["s_work_order_id"] is None:
        report.fail(seq, f"signature {row['signature_id']} row is missing")
        return
    if bytes(row["s_signature"]) != sig or row["s_payload"] != payload or row["s_key_id"] != entry.get("key_id"):
        report.fail(seq, f"signature row {row['signature_id']} differs from the ledger entry")
    if row["s_work_order_id"] != entry.get("work_order_id"):
        report.fail(seq, "signature belongs to another work order than the entry says")
    if row["k_public_key"] is None or bytes(row["k_public_key"]) != pub or row["k_person_id"] != row["s_person_id"]:
        report.fail(seq, f"enrolled key {entry.get('key_id')} differs from the key in the entry")
    if payload.get("signer_id") != row["s_person_id"] or payload.get("meaning") != row["s_meaning"]:
        report.fail(seq, "payload signer or meaning differs from the signature row")
    record = row["record"]
    if record is None or row["record_sha256"] is None:
        report.fail(seq, f"work order {row['s_work_order_id']} has lost its signed record")
    elif esign.record_sha256(record) != payload.get("record_sha256") or row["record_sha256"] != payload.get("record_sha256"):
        report.fail(seq, f"work order {row['s_work_order_id']} record no longer matches the signed record_sha256")
