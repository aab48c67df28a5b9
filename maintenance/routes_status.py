"""A unit's status at a glance: last sample, online, open alerts, maintenance due and done,
inspection validity, open hazards (GET /api/v1/units/{unit_id}/status; the unit page uses it too)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from maintenance.checklist import PLAN_KINDS
from maintenance.deps import ConnDep, CurrentUser, SettingsDep
from maintenance.routes_registry import unit_in_scope

router = APIRouter(prefix="/api/v1", tags=["registry"])
INSPECTION_DUE_SOON_DAYS = 30  # the certificate runs out within a month: book the inspector


class MaintenanceKindStatus(BaseModel):
    kind: str
    next_work_order_id: int | None
    next_due_on: date | None
    next_status: str | None
    overdue: bool
    days_until_due: int | None
    last_work_order_id: int | None
    last_status: str | None
    last_signed_at: datetime | None
    last_closed_at: datetime | None
    last_done_at: datetime | None = Field(
        None, description="what the next due date counts from: the later of the last signed visit and the last "
                          "imported legacy record covering this plan's items")
    last_done_source: Literal["signed", "legacy"] | None = Field(
        None, description="legacy: an imported record (paper archive or previous system), not e-signed")
    last_legacy_on: date | None = Field(None, description="date of the last imported legacy visit covering the plan")


class InspectionStatus(BaseModel):
    last_inspection_on: date | None
    next_inspection_due: date | None
    state: Literal["valid", "due_soon", "overdue", "unknown"]
    days_left: int | None


class AlertBrief(BaseModel):
    alert_id: int
    kind: str
    severity: str
    reason: str
    opened_at: datetime
    acknowledged_at: datetime | None


class UnitStatus(BaseModel):
    unit_id: str
    status: str
    as_of: datetime
    online: bool
    last_seen_at: datetime | None
    last_sample: dict[str, Any] | None
    open_alerts: list[AlertBrief]
    maintenance: list[MaintenanceKindStatus]
    inspection: InspectionStatus
    open_hazards: int


_LAST_SAMPLE = """SELECT time, seq, mode, floor, direction, moving, door, door_zone, passengers, speed_mps,
       load_pct, vibration_mg, motor_temp_c, leveling_mm, door_close_ms, run_count, run_hours, extra
  FROM telemetry WHERE unit_id = %s ORDER BY time DESC LIMIT 1"""
_NEXT_DUE = """SELECT DISTINCT ON (kind) kind, work_order_id, due_on, status FROM work_orders
 WHERE unit_id = %s AND status IN ('open', 'in_progress') ORDER BY kind, due_on, work_order_id"""
_LAST_DONE = """SELECT DISTINCT ON (kind) kind, work_order_id, status, signed_at, closed_at FROM work_orders
 WHERE unit_id = %s AND status IN ('signed', 'closed') ORDER BY kind, signed_at DESC, work_order_id DESC"""


@router.get("/units/{unit_id}/status", response_model=UnitStatus,
            summary="Last sample, online, open alerts, maintenance due and done, inspection validity, hazards")
def unit_status(unit_id: str, user: CurrentUser, conn: ConnDep, settings: SettingsDep) -> dict:
    unit = unit_in_scope(conn, user, unit_id)
    db_clock = conn.execute("SELECT now() AS now, current_date AS today").fetchone()
    now, today = db_clock["now"], db_clock["today"]
    sample = conn.execute(_LAST_SAMPLE, (unit_id,)).fetchone()
    state = conn.execute("SELECT last_time FROM unit_ingest_state WHERE unit_id = %s", (unit_id,)).fetchone()
    seen = [t for t in ((sample or {}).get("time"), (state or {}).get("last_time")) if t is not None]
    last_seen = max(seen) if seen else None
    alerts = conn.execute(
        """SELECT alert_id, kind, severity, reason, opened_at, acknowledged_at FROM alerts
            WHERE unit_id = %s AND status = 'open'
            ORDER BY array_position(ARRAY['critical', 'warning', 'info'], severity), opened_at DESC""",
        (unit_id,)).fetchall()
    due = {r["kind"]: r for r in conn.execute(_NEXT_DUE, (unit_id,)).fetchall()}
    done = {r["kind"]: r for r in conn.execute(_LAST_DONE, (unit_id,)).fetchall()}
    clock = {r["kind"]: r for r in conn.execute(
        "SELECT kind, last_done_at, last_done_source, last_legacy_on FROM maintenance_plan_clock WHERE unit_id = %s",
        (unit_id,)).fetchall()}
    planned = set(clock)
    maintenance = []
    for kind in (k for k in PLAN_KINDS if k in planned or k in due or k in done):
        d, f, c = due.get(kind), done.get(kind), clock.get(kind, {})
        maintenance.append({
            "kind": kind, "next_work_order_id": d and d["work_order_id"], "next_due_on": d and d["due_on"],
            "next_status": d and d["status"], "overdue": bool(d and d["due_on"] < today),
            "days_until_due": (d["due_on"] - today).days if d else None,
            "last_work_order_id": f and f["work_order_id"], "last_status": f and f["status"],
            "last_signed_at": f and f["signed_at"], "last_closed_at": f and f["closed_at"],
            "last_done_at": c.get("last_done_at"), "last_done_source": c.get("last_done_source"),
            "last_legacy_on": c.get("last_legacy_on")})
    hazards = conn.execute("SELECT count(*) AS n FROM hazards WHERE unit_id = %s AND status <> 'closed'",
                           (unit_id,)).fetchone()["n"]
    return {"unit_id": unit_id, "status": unit["status"], "as_of": now,
            "online": last_seen is not None and (now - last_seen).total_seconds() <= settings.offline_after_s,
            "last_seen_at": last_seen, "last_sample": sample, "open_alerts": alerts, "maintenance": maintenance,
            "inspection": inspection_state(unit["last_inspection_on"], unit["next_inspection_due"], today),
            "open_hazards": hazards}


def inspection_state(last_on: date | None, due: date | None, today: date) -> dict:
    """Periodic inspection (定期检验) validity: overdue after the due day, due_soon within 30 days."""
    if due is None:
        state, days = "unknown", None
    else:
        days = (due - today).days
        state = "overdue" if days < 0 else "due_soon" if days <= INSPECTION_DUE_SOON_DAYS else "valid"
    return {"last_inspection_on": last_on, "next_inspection_due": due, "state": state, "days_left": days}
