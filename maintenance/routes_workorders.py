"""Work-order, key-enrolment, checklist and schedule endpoints (thin wrappers over workorders.py)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from psycopg.errors import UniqueViolation
from pydantic import BaseModel, ConfigDict, Field

from liftwatch import esign
from maintenance import audit
from maintenance import checklist as checklists
from maintenance import workorders as wo
from maintenance.auth import verify_user_password
from maintenance.deps import ConnDep, CurrentUser, SettingsDep, User, require
from maintenance.errors import ApiError, not_found
from maintenance.schedule import schedule

router = APIRouter(prefix="/api/v1", tags=["maintenance"])
Strict = ConfigDict(extra="forbid")  # unknown fields (status, signed_by, ...) are refused, not ignored


class WorkOrderPublic(BaseModel):
    work_order_id: int
    unit_id: str
    kind: str
    status: str
    due_on: date
    checklist_id: str
    checklist_version: int
    company_id: str
    technician_id: int | None
    technician_name: str | None
    checked_in_at: Any | None
    signed_at: Any | None
    closed_at: Any | None
    corrects_id: int | None
    record_sha256: str | None


class ItemSeason(BaseModel):
    """An item the regulation ties to a season (D-2-05 before the rainy season, D-3-12 before winter)."""

    before: Literal["rainy_season", "winter"]
    note_zh: str
    note_en: str


class ItemPublic(BaseModel):
    code: str
    position: int
    name_zh: str
    name_en: str
    requirement_zh: str
    requirement_en: str
    test_item: bool
    seasonal: ItemSeason | None = None
    measurement: dict[str, Any] | None
    result: str | None
    measured_value: float | None
    note: str


class WorkOrderDetail(WorkOrderPublic):
    items: list[ItemPublic]


class WorkOrderCreate(BaseModel):
    model_config = Strict
    unit_id: str = Field(min_length=1, max_length=64)
    kind: Literal["half_monthly", "quarterly", "semi_annual", "annual"]
    due_on: date
    corrects_id: int | None = Field(None, description="the signed order this one corrects")


class CheckIn(BaseModel):
    model_config = Strict
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)


class ItemResult(BaseModel):
    model_config = Strict
    result: Literal["ok", "adjusted", "replaced", "not_applicable", "defect"]
    measured_value: float | None = Field(None, allow_inf_nan=False)
    note: str = Field("", max_length=2000)


class SignRequest(BaseModel):
    model_config = Strict
    payload: dict[str, Any] = Field(description="exactly the fields of the signing payload, signed_at filled in")
    signature: str = Field(max_length=200, description="base64url Ed25519 signature of RFC 8785(payload)")
    key_id: int
    password: str = Field(min_length=1, max_length=200, description="your password, again (second component)")


class KeyEnrol(BaseModel):
    model_config = Strict
    public_key: str = Field(max_length=100, description="base64url raw 32-byte Ed25519 public key")
    label: str = Field("", max_length=100)
    password: str = Field(min_length=1, max_length=200)


class KeyPublic(BaseModel):
    key_id: int
    person_id: int
    public_key: str
    label: str
    status: str
    enrolled_at: Any
    revoked_at: Any | None


def _order_list_sql(user: User) -> tuple[str, tuple]:
    cond, params = user.scope.unit_filter("u")
    return (f"""SELECT w.*, p.name AS technician_name FROM work_orders w JOIN units u USING (unit_id)
                LEFT JOIN people p ON p.person_id = w.technician_id WHERE {cond}""", params)  # noqa: S608


@router.get("/work-orders", response_model=list[WorkOrderPublic])
def list_orders(user: CurrentUser, conn: ConnDep,
                unit_id: str | None = None,
                status: Literal["open", "in_progress", "signed", "closed", "cancelled"] | None = None,
                kind: Literal["half_monthly", "quarterly", "semi_annual", "annual"] | None = None,
                due_before: date | None = None,
                mine: bool = Query(False, description="only orders I checked in to"),
                limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0, le=10_000_000)) -> list[dict]:
    sql, params = _order_list_sql(user)
    where, args = [], []
    for col, val in (("w.unit_id", unit_id), ("w.status", status), ("w.kind", kind)):
        if val is not None:
            where.append(f"{col} = %s")
            args.append(val)
    if due_before is not None:
        where.append("w.due_on < %s")
        args.append(due_before)
    if mine:
        where.append("w.technician_id = %s")
        args.append(user.person_id)
    sql += "".join(f" AND {w}" for w in where) + " ORDER BY w.due_on, w.work_order_id LIMIT %s OFFSET %s"
    return conn.execute(sql, (*params, *args, limit, offset)).fetchall()


@router.post("/work-orders", response_model=WorkOrderPublic, status_code=201)
def create_order(body: WorkOrderCreate, request: Request, conn: ConnDep,
                 user: Annotated[User, Depends(require("admin", "company_manager"))]) -> dict:
    cond, params = user.scope.unit_filter("u")
    if not conn.execute(f"SELECT 1 FROM units u WHERE u.unit_id = %s AND {cond}", (body.unit_id, *params)).fetchone():  # noqa: S608
        raise not_found(f"unit {body.unit_id}")
    with conn.transaction():
        if body.corrects_id is not None:
            orig = wo.load_order(conn, user.scope, body.corrects_id)
            if orig["status"] not in ("signed", "closed") or orig["unit_id"] != body.unit_id:
                raise ApiError(422, "bad_correction", "a correction references a signed order of the same unit",
                               field="corrects_id")
        wo_id = wo.create_order(conn, unit_id=body.unit_id, kind=body.kind, due_on=body.due_on,
                                corrects_id=body.corrects_id)
        audit.record(conn, request, user.username, "work_order_created", f"work_order:{wo_id}",
                     {"work_order_id": wo_id, "unit_id": body.unit_id, "kind": body.kind, "due_on": body.due_on,
                      "corrects_id": body.corrects_id})
    return wo.load_order(conn, user.scope, wo_id)


@router.get("/work-orders/{work_order_id}", response_model=WorkOrderDetail)
def get_order(work_order_id: int, user: CurrentUser, conn: ConnDep) -> dict:
    order = wo.load_order(conn, user.scope, work_order_id)
    cl = checklists.get(order["checklist_id"], order["checklist_version"])
    items = []
    signed = order["record"] is not None
    rows = order["record"]["items"] if signed else wo.load_items(conn, work_order_id)  # signed: show what was signed
    for pos, row in enumerate(rows, start=1):
        it = cl.item(row["code"])
        m = it.measurement
        items.append({"code": it.code, "position": pos, "name_zh": it.name_zh, "name_en": it.name_en,
                      "requirement_zh": it.requirement_zh, "requirement_en": it.requirement_en,
                      "test_item": it.test_item,
                      "seasonal": ({"before": it.seasonal.before, "note_zh": it.seasonal.note_zh,
                                    "note_en": it.seasonal.note_en} if it.seasonal else None),
                      "measurement": ({"quantity": m.quantity, "unit": m.unit, "min": m.min, "max": m.max,
                                       "limit_source": m.limit_source} if m else None),
                      "result": row["result"], "measured_value": row["measured_value"], "note": row["note"]})
    return {**order, "items": items}


@router.post("/work-orders/{work_order_id}/check-in", response_model=WorkOrderPublic)
def check_in(work_order_id: int, body: CheckIn, user: CurrentUser, conn: ConnDep) -> dict:
    wo.check_in(conn, user, work_order_id, body.lat, body.lon)
    return wo.load_order(conn, user.scope, work_order_id)


@router.put("/work-orders/{work_order_id}/items/{code}")
def set_item(work_order_id: int, code: Annotated[str, Field(max_length=16)], body: ItemResult,
             user: CurrentUser, conn: ConnDep) -> dict:
    return wo.set_item(conn, user, work_order_id, code, result=body.result,
                       measured_value=body.measured_value, note=body.note)


@router.get("/work-orders/{work_order_id}/signing-payload",
            summary="The record and the payload to sign (fill in signed_at, sign RFC 8785 bytes)")
def signing_payload(work_order_id: int, user: CurrentUser, conn: ConnDep) -> dict:
    return wo.signing_payload(conn, user, work_order_id)


@router.post("/work-orders/{work_order_id}/signatures", status_code=201,
             summary="Sign (technician: performed) or countersign (user unit: confirmed)")
def sign(work_order_id: int, body: SignRequest, request: Request, user: CurrentUser, conn: ConnDep,
         settings: SettingsDep) -> dict:
    try:
        with conn.transaction():  # the signature and its audit row commit together
            out = wo.sign(conn, user, work_order_id, payload=body.payload, signature_b64=body.signature,
                          key_id=body.key_id, password=body.password,
                          skew=timedelta(seconds=settings.signature_clock_skew_s))
            audit.record(conn, request, user.username, "work_order_signed", f"work_order:{work_order_id}",
                         {"work_order_id": work_order_id, "meaning": out["meaning"], "ledger_seq": out["ledger_seq"],
                          "signature_id": out["signature_id"]})
        return out
    except UniqueViolation as exc:
        if "signature" in (exc.diag.constraint_name or ""):
            raise ApiError(409, "replayed", "this signature has already been used") from None
        raise ApiError(409, "already_signed", "this order already carries a signature with that meaning") from None


@router.get("/work-orders/{work_order_id}/record",
            summary="Signed record, payloads, signatures and public keys for independent verification")
def record(work_order_id: int, user: CurrentUser, conn: ConnDep) -> dict:
    return wo.public_record(conn, user.scope, work_order_id)


# --- keys -----------------------------------------------------------------------------------

@router.post("/keys", response_model=KeyPublic, status_code=201, tags=["keys"],
             summary="Enrol my Ed25519 public key (the private key never leaves my device)")
def enrol_key(body: KeyEnrol, request: Request, user: CurrentUser, conn: ConnDep) -> dict:
    try:
        raw = esign.b64url_decode(body.public_key)
        esign.public_key_from_raw(raw)
    except ValueError:
        raise ApiError(422, "bad_key", "public_key must be a base64url raw 32-byte Ed25519 key", field="public_key") from None
    if not verify_user_password(conn, user.user_id, body.password):
        raise ApiError(401, "password_mismatch", "the password does not match", field="password")
    try:
        with conn.transaction():
            row = conn.execute(
                "INSERT INTO signing_keys (person_id, public_key, label) VALUES (%s, %s, %s) RETURNING *",
                (user.person_id, raw, body.label)).fetchone()
            audit.record(conn, request, user.username, "key_enrolled", f"key:{row['key_id']}",
                         {"key_id": row["key_id"], "person_id": user.person_id, "label": body.label})
    except UniqueViolation:
        raise ApiError(409, "key_exists", "this public key is already enrolled") from None
    return _key_public(row)


@router.get("/keys", response_model=list[KeyPublic], tags=["keys"], summary="My enrolled keys")
def my_keys(user: CurrentUser, conn: ConnDep) -> list[dict]:
    rows = conn.execute("SELECT * FROM signing_keys WHERE person_id = %s ORDER BY key_id", (user.person_id,)).fetchall()
    return [_key_public(r) for r in rows]


@router.post("/keys/{key_id}/revoke", response_model=KeyPublic, tags=["keys"])
def revoke_key(key_id: int, request: Request, user: CurrentUser, conn: ConnDep) -> dict:
    with conn.transaction():
        row = conn.execute(
            """UPDATE signing_keys SET status = 'revoked', revoked_at = now()
                WHERE key_id = %s AND status = 'active' AND (person_id = %s OR %s) RETURNING *""",
            (key_id, user.person_id, user.role == "admin")).fetchone()
        if row is None:
            raise not_found(f"active key {key_id}")
        audit.record(conn, request, user.username, "key_revoked", f"key:{key_id}",
                     {"key_id": key_id, "person_id": row["person_id"]})
    return _key_public(row)


def _key_public(row: dict) -> dict:
    return {**row, "public_key": esign.b64url(bytes(row["public_key"]))}


# --- checklists and scheduling ----------------------------------------------------------------

@router.get("/checklists", tags=["checklists"])
def list_checklists(user: CurrentUser) -> list[dict]:
    return [{"checklist_id": c.checklist_id, "version": c.version, "title_en": c.title_en,
             "items": len(c.items), "interval_days": c.interval_days, "applies_to": list(c.applies_to),
             "provenance": c.provenance}
            for c in checklists.all_checklists().values()]


@router.get("/checklists/{checklist_id}/{version}", tags=["checklists"])
def get_checklist(checklist_id: str, version: int, user: CurrentUser) -> dict:
    cl = checklists.get(checklist_id, version)
    if cl is None:
        raise not_found(f"checklist {checklist_id} v{version}")
    return cl.raw


@router.post("/maintenance/schedule", tags=["maintenance"],
             summary="Create missing plans and the next work order of each plan")
def run_schedule(request: Request, conn: ConnDep, user: Annotated[User, Depends(require("admin"))]) -> dict:
    with conn.transaction():
        r = schedule(conn)
        audit.record(conn, request, user.username, "schedule_run", None,
                     {"plans_created": r.plans_created, "orders_created": r.orders_created,
                      "orders_redated": r.orders_redated})
    return {"plans_created": r.plans_created, "orders_created": r.orders_created, "orders_redated": r.orders_redated,
            "units_without_checklist": r.units_without_checklist}
