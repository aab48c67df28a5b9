"""Alerts API: list (scoped through the alert's unit) and acknowledge.

The analytics job and the ingestor own the alert lifecycle (open, update, resolve); people
only acknowledge, which records who and when and changes nothing else.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from maintenance import audit
from maintenance.deps import ConnDep, CurrentUser, User, require
from maintenance.errors import ApiError, not_found
from maintenance.paging import PageDep, fetch_page

router = APIRouter(prefix="/api/v1", tags=["alerts"])
AlertKind = Literal["maintenance_overdue", "maintenance_due_soon", "countersign_missing", "unverified_visit",
                    "inspection_overdue", "inspection_due_soon", "anomaly_prone", "frequent_faults", "offline",
                    "entrapment"]
Severity = Literal["info", "warning", "critical"]


class AlertPublic(BaseModel):
    alert_id: int
    unit_id: str
    kind: str
    severity: str
    status: str
    reason: str
    details: dict[str, Any]
    source: str
    opened_at: datetime
    event_time: datetime | None
    last_seen_at: datetime
    resolved_at: datetime | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None


class AlertCount(BaseModel):
    kind: AlertKind
    severity: Severity
    count: int


# LEFT JOIN: admin and supervisor (scope TRUE) also see an alert whose unit has left the
# registry, and their count(*) does not touch units at all; any other scope names a column of
# u, which turns the join back into an inner one
_FROM = "FROM alerts a LEFT JOIN units u ON u.unit_id = a.unit_id"
_ORDER = {
    "newest": "a.opened_at DESC, a.alert_id DESC",
    "priority": "a.status = 'open' DESC, a.kind = 'maintenance_overdue' DESC, "
                "array_position(ARRAY['critical', 'warning', 'info'], a.severity), a.opened_at DESC, a.alert_id DESC",
}


@router.get("/alerts", response_model=list[AlertPublic])
def list_alerts(user: CurrentUser, conn: ConnDep, response: Response, pg: PageDep,
                status: Literal["open", "resolved", "all"] = "open", kind: AlertKind | None = None,
                severity: Severity | None = None, unit_id: str | None = None,
                acknowledged: bool | None = None,
                order: Annotated[Literal["newest", "priority"], Query(
                    description="newest first, or priority: overdue maintenance first, then by severity")] = "newest",
                ) -> list[dict]:
    cond, params = user.scope.unit_filter("u")
    where, args = [cond], list(params)
    for col, val in (("a.status", None if status == "all" else status), ("a.kind", kind),
                     ("a.severity", severity), ("a.unit_id", unit_id)):
        if val is not None:
            where.append(f"{col} = %s")
            args.append(val)
    if acknowledged is not None:
        where.append("a.acknowledged_at IS NOT NULL" if acknowledged else "a.acknowledged_at IS NULL")
    return fetch_page(conn, response, select="a.*", from_where=f"{_FROM} WHERE {' AND '.join(where)}",
                      params=args, order_by=_ORDER[order], pg=pg)


def open_alert_counts(conn, user: User) -> list[dict]:
    """Open alerts in the user's scope, counted per (kind, severity): the dashboard's matrix at
    page load and on each refresh, and GET /alerts/summary."""
    cond, params = user.scope.unit_filter("u")
    return conn.execute(f"""SELECT a.kind, a.severity, count(*) AS count {_FROM}
                             WHERE a.status = 'open' AND {cond} GROUP BY 1, 2 ORDER BY 1, 2""",  # noqa: S608
                        params).fetchall()


@router.get("/alerts/summary", response_model=list[AlertCount],
            summary="Open alerts in your scope, counted per kind and severity (kinds without one are left out)")
def alert_summary(user: CurrentUser, conn: ConnDep) -> list[dict]:
    return open_alert_counts(conn, user)


@router.post("/alerts/{alert_id}/acknowledge", response_model=AlertPublic,
             summary="Acknowledge (records your name and the time; 409 when already acknowledged)")
def acknowledge(alert_id: int, request: Request, conn: ConnDep,
                user: Annotated[User, Depends(require("admin", "supervisor", "company_manager"))]) -> dict:
    cond, params = user.scope.unit_filter("u")
    if conn.execute(f"SELECT 1 {_FROM} WHERE a.alert_id = %s AND {cond}", (alert_id, *params)).fetchone() is None:  # noqa: S608
        raise not_found(f"alert {alert_id}")
    with conn.transaction():
        row = conn.execute(
            """UPDATE alerts SET acknowledged_by = %s, acknowledged_at = now()
                WHERE alert_id = %s AND acknowledged_at IS NULL RETURNING *""",
            (f"{user.name} ({user.username})", alert_id)).fetchone()
        if row is not None:
            audit.record(conn, request, user.username, "alert_acknowledged", f"alert:{alert_id}",
                         {"alert_id": alert_id, "unit_id": row["unit_id"], "kind": row["kind"]})
    if row is not None:
        return row
    seen = conn.execute("SELECT acknowledged_by, acknowledged_at FROM alerts WHERE alert_id = %s", (alert_id,)).fetchone()
    raise ApiError(409, "already_acknowledged",
                   f"acknowledged by {seen['acknowledged_by']} at {seen['acknowledged_at'].isoformat()}")
