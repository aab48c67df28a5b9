"""Work orders: open -> in_progress (check-in) -> signed (technician) -> closed (countersign).

Functions here take a connection (dict rows) and the acting user; they raise ApiError with a
status a client can act on. Route handlers in routes_workorders.py are thin wrappers.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from liftwatch import esign
from maintenance import checklist as checklists
from maintenance import ledger
from maintenance.auth import verify_user_password
from maintenance.deps import Scope, User
from maintenance.errors import ApiError, not_found

RESULTS = ("ok", "adjusted", "replaced", "not_applicable", "defect")
RECORD_SCHEMA = "liftwatch/maintenance-record/1"

_ORDER_SQL = """
SELECT w.*, u.registration_code, u.kind AS unit_kind, u.maintenance_company_id, u.user_unit_id,
       p.name AS technician_name, p.certificate_no AS technician_certificate
  FROM work_orders w JOIN units u USING (unit_id)
  LEFT JOIN people p ON p.person_id = w.technician_id
 WHERE w.work_order_id = %s AND {scope}"""


def load_order(conn: psycopg.Connection, scope: Scope, work_order_id: int, *, lock: bool = False) -> dict[str, Any]:
    cond, params = scope.unit_filter("u")
    sql = _ORDER_SQL.format(scope=cond) + (" FOR UPDATE OF w" if lock else "")
    row = conn.execute(sql, (work_order_id, *params)).fetchone()
    if row is None:
        raise not_found(f"work order {work_order_id}")
    return row


def load_items(conn: psycopg.Connection, work_order_id: int) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT code, position, result, measured_value, note, updated_at FROM work_order_items "
        "WHERE work_order_id = %s ORDER BY position", (work_order_id,)).fetchall()


def create_order(conn: psycopg.Connection, *, unit_id: str, kind: str, due_on: date, plan_id: int | None = None,
                 corrects_id: int | None = None, checklist_id: str | None = None) -> int:
    """Insert an order and its checklist items (in one transaction with the caller's)."""
    unit = conn.execute("SELECT kind, maintenance_company_id FROM units WHERE unit_id = %s", (unit_id,)).fetchone()
    if unit is None:
        raise not_found(f"unit {unit_id}")
    if unit["maintenance_company_id"] is None:
        raise ApiError(409, "no_maintenance_company", f"unit {unit_id} has no maintenance company")
    cl = checklists.get(checklist_id) if checklist_id else checklists.checklist_for(unit["kind"])
    if cl is None:
        raise ApiError(409, "no_checklist", f"no statutory checklist is available for {unit['kind']} units yet")
    row = conn.execute(
        """INSERT INTO work_orders (unit_id, plan_id, kind, checklist_id, checklist_version, company_id, due_on, corrects_id)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING work_order_id""",
        (unit_id, plan_id, kind, cl.checklist_id, cl.version, unit["maintenance_company_id"], due_on, corrects_id),
    ).fetchone()
    wo_id = row["work_order_id"]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO work_order_items (work_order_id, code, position) VALUES (%s, %s, %s)",
            [(wo_id, it.code, pos) for pos, it in enumerate(cl.items_for(kind), start=1)],
        )
    return wo_id


def check_in(conn: psycopg.Connection, user: User, work_order_id: int, lat: float | None, lon: float | None,
             *, at: datetime | None = None) -> None:
    """Start the visit. `at` is a clock seam for replays of the past (the evaluation); the API
    never passes it, so a check-in is stamped by the database clock."""
    if user.role != "technician":
        raise ApiError(403, "forbidden", "only a technician checks in on site")
    with conn.transaction():
        wo = load_order(conn, user.scope, work_order_id, lock=True)
        if wo["status"] != "open":
            raise ApiError(409, "wrong_status", f"work order is {wo['status']}; only an open order can be checked in")
        conn.execute(
            """UPDATE work_orders SET status = 'in_progress', technician_id = %s, checked_in_at = COALESCE(%s, now()),
                      check_in_lat = %s, check_in_lon = %s, updated_at = now() WHERE work_order_id = %s""",
            (user.person_id, at, lat, lon, work_order_id))


def set_item(conn: psycopg.Connection, user: User, work_order_id: int, code: str, *, result: str,
             measured_value: float | None, note: str) -> dict[str, Any]:
    with conn.transaction():
        wo = load_order(conn, user.scope, work_order_id, lock=True)
        if wo["status"] != "in_progress":
            raise ApiError(409, "wrong_status", f"work order is {wo['status']}; items are filled after check-in and before signing")
        if user.person_id != wo["technician_id"]:
            raise ApiError(403, "forbidden", "only the technician who checked in fills the checklist")
        cl = checklists.get(wo["checklist_id"], wo["checklist_version"])
        item = cl.item(code) if cl else None
        exists = conn.execute("SELECT 1 FROM work_order_items WHERE work_order_id = %s AND code = %s",
                              (work_order_id, code)).fetchone()
        if item is None or exists is None:
            raise ApiError(404, "not_found", f"item {code} is not on this work order", field="code")
        _check_item(item, result, measured_value, note)
        conn.execute(
            """UPDATE work_order_items SET result = %s, measured_value = %s, note = %s, updated_at = now(), updated_by = %s
                WHERE work_order_id = %s AND code = %s""",
            (result, measured_value, note, user.person_id, work_order_id, code))
    return {"code": code, "result": result, "measured_value": measured_value, "note": note}


def _check_item(item: checklists.Item, result: str, value: float | None, note: str) -> None:
    if result == "not_applicable":
        if not note.strip():
            raise ApiError(422, "reason_required", f"{item.code}: not_applicable needs a reason in note", field="note")
        if value is not None:
            raise ApiError(422, "unexpected_value", f"{item.code}: not_applicable takes no measured value", field="measured_value")
        return
    m = item.measurement
    if m is None:
        if value is not None:
            raise ApiError(422, "unexpected_value", f"{item.code} has no measured value", field="measured_value")
        return
    if value is None:
        raise ApiError(422, "value_required", f"{item.code} needs the measured {m.quantity} in {m.unit}", field="measured_value")
    if not math.isfinite(value):
        raise ApiError(422, "invalid_value", "measured value must be a finite number", field="measured_value")
    problem = m.violation(value)
    if problem and result != "defect":
        raise ApiError(422, "out_of_limit",
                       f"{item.code} {item.name_en}: {problem}; record it as result 'defect', not '{result}'",
                       field="result")


# --- records and signatures ----------------------------------------------------------------

def build_record(conn: psycopg.Connection, wo: dict[str, Any]) -> dict[str, Any]:
    """The record the technician signs, from the current rows (frozen into work_orders at signing)."""
    cl = checklists.get(wo["checklist_id"], wo["checklist_version"])
    items = []
    for row in load_items(conn, wo["work_order_id"]):
        it = cl.item(row["code"]) if cl else None
        unit = it.measurement.unit if it and it.measurement else None
        items.append({"code": row["code"], "result": row["result"], "measured_value": row["measured_value"],
                      "unit": unit if row["measured_value"] is not None else None, "note": row["note"]})
    location = None
    if wo["check_in_lat"] is not None and wo["check_in_lon"] is not None:
        location = {"lat": wo["check_in_lat"], "lon": wo["check_in_lon"]}
    return {
        "schema": RECORD_SCHEMA,
        "work_order_id": wo["work_order_id"],
        "unit": {"unit_id": wo["unit_id"], "registration_code": wo["registration_code"], "kind": wo["unit_kind"]},
        "maintenance_company_id": wo["company_id"],
        "user_unit_id": wo["user_unit_id"],
        "kind": wo["kind"],
        "checklist": {"id": wo["checklist_id"], "version": wo["checklist_version"]},
        "due_on": wo["due_on"].isoformat(),
        "technician": {"person_id": wo["technician_id"], "name": wo["technician_name"],
                       "certificate_no": wo["technician_certificate"]},
        "checked_in_at": esign.timestamp(wo["checked_in_at"]),
        "check_in_location": location,
        "corrects_work_order_id": wo["corrects_id"],
        "items": items,
    }


def signing_payload(conn: psycopg.Connection, user: User, work_order_id: int) -> dict[str, Any]:
    """What the signer's device must sign now (it fills in signed_at)."""
    wo = load_order(conn, user.scope, work_order_id)
    meaning = _meaning_for(user)
    record, sha = _record_to_sign(conn, user, wo, meaning)
    return {"record": record, "record_sha256": sha,
            "payload": esign.signing_payload(record_sha=sha, signer_id=user.person_id, name=user.name,
                                             role=user.role, meaning=meaning, signed_at="")}


def _record_to_sign(conn: psycopg.Connection, user: User, wo: dict[str, Any], meaning: str) -> tuple[dict, str]:
    """The record a signature with this meaning covers: built now for the technician (who must
    be the one checked in, with every item filled), the frozen one for the countersignature."""
    if meaning == "performed":
        _ready_to_sign(conn, user, wo)
        record = build_record(conn, wo)
        return record, esign.record_sha256(record)
    if wo["status"] != "signed":
        raise ApiError(409, "wrong_status", f"work order is {wo['status']}; countersigning follows the technician's signature")
    return wo["record"], wo["record_sha256"]


def _meaning_for(user: User) -> str:
    for meaning, role in esign.MEANINGS.items():
        if role == user.role:
            return meaning
    raise ApiError(403, "forbidden", "only technicians (performed) and user-unit managers (confirmed) sign records")


def _ready_to_sign(conn: psycopg.Connection, user: User, wo: dict[str, Any]) -> None:
    if wo["status"] != "in_progress":
        raise ApiError(409, "wrong_status", f"work order is {wo['status']}; the technician signs an order in progress")
    if user.person_id != wo["technician_id"]:
        raise ApiError(403, "forbidden", "only the technician who checked in signs this order")
    missing = [r["code"] for r in load_items(conn, wo["work_order_id"]) if r["result"] is None]
    if missing:
        raise ApiError(409, "items_missing", f"{len(missing)} item(s) have no result: {', '.join(missing[:10])}")


def sign(conn: psycopg.Connection, user: User, work_order_id: int, *, payload: dict[str, Any], signature_b64: str,
         key_id: int, password: str, skew: timedelta, now: datetime | None = None) -> dict[str, Any]:
    """Verify and store one signature, append it to the ledger, advance the order. All or nothing.

    `signed_at` must be within `skew` of `now`: the server clock, unless a replay of the past
    (the evaluation) injects its simulated clock; the API never does."""
    meaning = _meaning_for(user)
    expected = {"signer_id": user.person_id, "name": user.name, "role": user.role, "meaning": meaning}
    if set(payload) != set(esign.PAYLOAD_FIELDS):
        raise ApiError(422, "bad_payload", f"payload must have exactly the fields {', '.join(esign.PAYLOAD_FIELDS)}", field="payload")
    for k, v in expected.items():
        if payload[k] != v:
            raise ApiError(422, "bad_payload", f"payload.{k} must be {v!r} for you", field=f"payload.{k}")
    signed_at = _parse_signed_at(payload["signed_at"])
    if abs((now or datetime.now(UTC)) - signed_at) > skew:
        raise ApiError(422, "clock_skew", f"signed_at is more than {skew.total_seconds():.0f} s from the server clock",
                       field="payload.signed_at")
    try:
        signature = esign.b64url_decode(signature_b64)
    except ValueError:
        raise ApiError(422, "bad_signature", "signature must be base64url", field="signature") from None
    if len(signature) != 64:
        raise ApiError(422, "bad_signature", "an Ed25519 signature is 64 bytes", field="signature")
    load_order(conn, user.scope, work_order_id)  # 404 before spending a password hash on a foreign order
    if not verify_user_password(conn, user.user_id, password):
        raise ApiError(401, "password_mismatch", "the password does not match: signing needs your password again", field="password")
    key = conn.execute("SELECT public_key, status, person_id FROM signing_keys WHERE key_id = %s", (key_id,)).fetchone()
    if key is None or key["person_id"] != user.person_id:
        raise ApiError(422, "unknown_key", f"key {key_id} is not one of your enrolled keys", field="key_id")
    if key["status"] != "active":
        raise ApiError(422, "key_revoked", f"key {key_id} has been revoked", field="key_id")
    if conn.execute("SELECT 1 FROM signatures WHERE signature = %s", (signature,)).fetchone():
        raise ApiError(409, "replayed", "this signature has already been used")
    with conn.transaction():
        wo = load_order(conn, user.scope, work_order_id, lock=True)
        record, sha = _record_to_sign(conn, user, wo, meaning)
        if payload["record_sha256"] != sha:
            raise ApiError(409, "record_mismatch",
                           "payload.record_sha256 is not this work order's current record (changed since, or another record)",
                           field="payload.record_sha256")
        if not esign.verify(bytes(key["public_key"]), payload, signature):
            raise ApiError(422, "bad_signature", "the signature does not verify with this key over the payload", field="signature")
        sig_row = conn.execute(
            """INSERT INTO signatures (work_order_id, person_id, key_id, meaning, payload, signature)
               VALUES (%s, %s, %s, %s, %s, %s) RETURNING signature_id, received_at""",
            (work_order_id, user.person_id, key_id, meaning, Jsonb(payload), signature)).fetchone()
        entry = ledger.append(conn, signature_id=sig_row["signature_id"], work_order_id=work_order_id, key_id=key_id,
                              payload=payload, signature=signature, public_key=bytes(key["public_key"]))
        if meaning == "performed":
            conn.execute(
                """UPDATE work_orders SET status = 'signed', record = %s, record_sha256 = %s, signed_at = %s,
                          updated_at = now() WHERE work_order_id = %s""",
                (Jsonb(record), sha, signed_at, work_order_id))
            _open_defect_hazards(conn, user, wo, record)
        else:
            conn.execute("UPDATE work_orders SET status = 'closed', closed_at = %s, updated_at = now() WHERE work_order_id = %s",
                         (signed_at, work_order_id))
    return {"signature_id": sig_row["signature_id"], "meaning": meaning, "ledger_seq": entry["seq"],
            "entry_hash": entry["entry_hash"], "status": "signed" if meaning == "performed" else "closed"}


def _parse_signed_at(value: Any) -> datetime:
    try:
        t = datetime.fromisoformat(value) if isinstance(value, str) and len(value) >= 20 else None
    except ValueError:
        t = None
    if t is None or t.tzinfo is None:
        raise ApiError(422, "bad_payload", "payload.signed_at must be an RFC 3339 time with offset", field="payload.signed_at")
    return t


def _open_defect_hazards(conn: psycopg.Connection, user: User, wo: dict[str, Any], record: dict[str, Any]) -> None:
    cl = checklists.get(wo["checklist_id"], wo["checklist_version"])
    for it in record["items"]:
        if it["result"] != "defect":
            continue
        item = cl.item(it["code"]) if cl else None
        what = f"{it['code']} {item.name_zh} / {item.name_en}" if item else it["code"]
        measured = f" (measured {it['measured_value']:g} {it['unit']})" if it["measured_value"] is not None else ""
        desc = f"Defect found in maintenance work order {wo['work_order_id']}: {what}{measured}. {it['note']}".strip()
        h = conn.execute(
            """INSERT INTO hazards (unit_id, source, work_order_id, item_code, description, reported_by)
               VALUES (%s, 'defect', %s, %s, %s, %s) RETURNING hazard_id""",
            (wo["unit_id"], wo["work_order_id"], it["code"], desc[:2000], user.person_id)).fetchone()
        conn.execute("INSERT INTO hazard_events (hazard_id, actor, action, note) VALUES (%s, %s, 'reported', %s)",
                     (h["hazard_id"], user.person_id, "from a defect item"))


def public_record(conn: psycopg.Connection, scope: Scope, work_order_id: int) -> dict[str, Any]:
    """Record, signed payloads, signatures and public keys: verifiable without Liftwatch."""
    wo = load_order(conn, scope, work_order_id)
    if wo["status"] not in ("signed", "closed"):
        raise ApiError(409, "not_signed", f"work order is {wo['status']}; a record exists once the technician has signed")
    sigs = conn.execute(
        """SELECT s.signature_id, s.meaning, s.payload, s.signature, s.key_id, k.public_key, l.seq, l.entry_hash
             FROM signatures s JOIN signing_keys k USING (key_id) LEFT JOIN ledger l USING (signature_id)
            WHERE s.work_order_id = %s ORDER BY s.signature_id""", (work_order_id,)).fetchall()
    return {
        "work_order_id": work_order_id, "status": wo["status"], "record": wo["record"],
        "record_sha256": wo["record_sha256"],
        "signatures": [{"signature_id": s["signature_id"], "meaning": s["meaning"], "payload": s["payload"],
                        "signature": esign.b64url(bytes(s["signature"])), "key_id": s["key_id"],
                        "public_key": esign.b64url(bytes(s["public_key"])), "algorithm": "Ed25519",
                        "ledger_seq": s["seq"], "ledger_entry_hash": s["entry_hash"]} for s in sigs],
        "how_to_verify": "record_sha256 = SHA-256(RFC 8785(record)); each signature is Ed25519 by public_key "
                         "over RFC 8785(payload); payload.record_sha256 must equal record_sha256",
    }
