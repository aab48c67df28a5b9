"""JSON behind the supervisor's pages: KPIs and their lists, the map, company scorecards, a
unit's telemetry series, events and signed history; and the public facts of one unit (no login).

Same rules as the rest of the API: the caller's scope decides what exists (404 otherwise).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from maintenance import insights
from maintenance.deps import ConnDep, CurrentUser, SettingsDep
from maintenance.errors import not_found
from maintenance.routes_registry import unit_in_scope

router = APIRouter(prefix="/api/v1", tags=["insights"])
KpiName = Literal["registration", "inspection", "maintenance", "hazards", "online"]


class Kpi(BaseModel):
    value: int
    of: int | None
    rate: float | None
    window_days: int | None = None


class Kpis(BaseModel):
    registration: Kpi
    inspection: Kpi
    maintenance: Kpi
    hazards: Kpi
    online: Kpi


class PublicUnit(BaseModel):
    unit_id: str
    registration_code: str | None
    kind: str
    status: str
    site_name: str
    address: str
    district: str
    city: str
    company_name: str | None
    emergency_phone: str | None
    last_maintenance_at: datetime | None
    next_maintenance_due: date | None
    maintenance_overdue: bool
    last_inspection_on: date | None
    next_inspection_due: date | None
    inspection_state: Literal["valid", "overdue", "unknown"]
    online: bool
    last_seen_at: datetime | None
    live: Literal["entrapment", "out_of_service", "offline", "maintenance", "special", "normal"]


@router.get("/kpis", response_model=Kpis, summary="Registration, inspection and maintenance on-time rates, "
            "open hazards and units online, over the units in your scope")
def get_kpis(user: CurrentUser, conn: ConnDep, settings: SettingsDep) -> dict:
    return insights.kpis(conn, user.scope, offline_after_s=settings.offline_after_s)


@router.get("/kpis/{name}", summary="The rows behind one KPI (what keeps it from 100 %; open hazards)")
def get_kpi_list(name: KpiName, user: CurrentUser, conn: ConnDep, settings: SettingsDep,
                 limit: int = Query(500, ge=1, le=5000)) -> list[dict[str, Any]]:
    return insights.kpi_list(conn, user.scope, name, offline_after_s=settings.offline_after_s, limit=limit)


@router.get("/map", summary="Units with a position, risk grade and state (ok, warning, critical, offline, "
            "out_of_service)")
def get_map(user: CurrentUser, conn: ConnDep, settings: SettingsDep) -> list[dict[str, Any]]:
    return insights.map_points(conn, user.scope, offline_after_s=settings.offline_after_s)


@router.get("/scorecards", summary="Maintenance-company scorecards per month (company_monthly_scorecards)")
def get_scorecards(user: CurrentUser, conn: ConnDep,
                   company_id: Annotated[str | None, Query(max_length=64)] = None,
                   since: Annotated[date | None, Query(description="first month (default: the last 12)")] = None,
                   ) -> list[dict[str, Any]]:
    return insights.scorecards(conn, user.scope, company_id=company_id, since=since)


@router.get("/units/{unit_id}/series", summary="Rollups of one unit (door close time, vibration, leveling, "
            "trips, time per mode, faults), oldest first")
def get_series(unit_id: str, user: CurrentUser, conn: ConnDep, bucket: Literal["day", "hour"] = "day",
               days: int = Query(30, ge=1, le=400)) -> list[dict[str, Any]]:
    unit_in_scope(conn, user, unit_id)
    return insights.series(conn, unit_id, bucket=bucket, since_days=days)


@router.get("/units/{unit_id}/events", summary="The unit's latest fault and event transitions")
def get_events(unit_id: str, user: CurrentUser, conn: ConnDep,
               limit: int = Query(50, ge=1, le=1000)) -> list[dict[str, Any]]:
    unit_in_scope(conn, user, unit_id)
    return insights.events(conn, unit_id, limit=limit)


@router.get("/units/{unit_id}/history", summary="Signed maintenance of the unit with each signature's "
            "printed name, role, meaning and time")
def get_history(unit_id: str, user: CurrentUser, conn: ConnDep,
                limit: int = Query(30, ge=1, le=500)) -> list[dict[str, Any]]:
    unit_in_scope(conn, user, unit_id)
    return insights.maintenance_history(conn, unit_id, limit=limit)


@router.get("/public/units/{unit_id}", response_model=PublicUnit, tags=["public"],
            summary="What the notice in the car shows: maintenance and inspection dates, company, live status "
                    "(no login)")
def get_public_unit(unit_id: str, conn: ConnDep, settings: SettingsDep) -> dict:
    row = insights.public_unit(conn, unit_id, offline_after_s=settings.offline_after_s)
    if row is None:
        raise not_found(f"unit {unit_id}")
    return row
