"""Hazards (隐患): reported by staff, by the public (QR code in the car) or from a defect item of
a signed work order; assigned to a technician, rectified, and closed by the user unit.

    open --assign--> assigned --rectify--> rectified --close--> closed
               (re-assign while assigned)

Every step appends a row to hazard_events (who, what, note) in the same transaction as the
status change; a step from the wrong status is 409. Scope follows the hazard's unit, so a
hazard outside the caller's scope is 404.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from maintenance import audit
from maintenance.deps import ConnDep, CurrentUser, User, require
from maintenance.errors import ApiError, not_found
from maintenance.paging import PageDep, fetch_page

router = APIRouter(prefix="/api/v1", tags=["hazards"])
Strict = ConfigDict(extra="forbid")  # status, reported_by, assigned_to ... cannot be sent
HazardStatus = Literal["open", "assigned", "rectified", "closed"]
Note = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]

# Public reports: a person at the lift may send a few; a script may not send thousands.
PUBLIC_PER_IP_BURST, PUBLIC_PER_IP_REFILL_S = 5, 120.0   # 5 at once, then one every 2 min per address
PUBLIC_PER_UNIT_BURST, PUBLIC_PER_UNIT_REFILL_S = 20, 60.0  # a crowd at one broken lift, then one a minute
LIMITER_MAX_KEYS = 10_000  # bounded memory; the least recently used bucket is forgotten first


class HazardCreate(BaseModel):
    model_config = Strict
    unit_id: str = Field(min_length=1, max_length=64)
    description: Annotated[str, StringConstraints(strip_whitespace=True, min_length=5, max_length=2000)]


class PublicHazardCreate(BaseModel):
    model_config = Strict
    description: Annotated[str, StringConstraints(strip_whitespace=True, min_length=5, max_length=1000)]
    contact: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = Field(
        None, description="phone or name, if the reporter wants a call back")


class AssignRequest(BaseModel):
    model_config = Strict
    person_id: int
    note: Note = ""


class NoteRequest(BaseModel):
    model_config = Strict
    note: Note = ""


class HazardEvent(BaseModel):
    at: datetime
    actor: int | None
    actor_name: str | None
    action: str
    note: str


class HazardPublic(BaseModel):
    hazard_id: int
    unit_id: str
    source: str
    status: str
    description: str
    work_order_id: int | None
    item_code: str | None
    reported_by: int | None
    reporter_name: str | None
    contact: str | None
    assigned_to: int | None
    assignee_name: str | None
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None


class HazardDetail(HazardPublic):
    events: list[HazardEvent]


class PublicReceipt(BaseModel):
    hazard_id: int
    unit_id: str
    status: str
    created_at: datetime


_SELECT = """h.*, r.name AS reporter_name, a.name AS assignee_name"""
# LEFT JOIN units (every hazard has one): droppable from count(*) when the scope is TRUE
_FROM = """FROM hazards h LEFT JOIN units u USING (unit_id)
           LEFT JOIN people r ON r.person_id = h.reported_by LEFT JOIN people a ON a.person_id = h.assigned_to"""


def load_hazard(conn: psycopg.Connection, user: User, hazard_id: int, *, lock: bool = False) -> dict[str, Any]:
    cond, params = user.scope.unit_filter("u")
    row = conn.execute(f"SELECT {_SELECT} {_FROM} WHERE h.hazard_id = %s AND {cond}"  # noqa: S608
                       + (" FOR UPDATE OF h" if lock else ""), (hazard_id, *params)).fetchone()
    if row is None:
        raise not_found(f"hazard {hazard_id}")
    return row


def _detail(conn: psycopg.Connection, user: User, hazard_id: int) -> dict[str, Any]:
    hazard = load_hazard(conn, user, hazard_id)
    events = conn.execute(
        """SELECT e.at, e.actor, p.name AS actor_name, e.action, e.note FROM hazard_events e
             LEFT JOIN people p ON p.person_id = e.actor WHERE e.hazard_id = %s ORDER BY e.at""",
        (hazard_id,)).fetchall()
    return {**hazard, "events": events}


def _insert_hazard(conn: psycopg.Connection, *, unit_id: str, source: str, description: str,
                   reported_by: int | None, contact: str | None, note: str) -> dict[str, Any]:
    with conn.transaction():
        row = conn.execute(
            """INSERT INTO hazards (unit_id, source, description, reported_by, contact)
               VALUES (%s, %s, %s, %s, %s) RETURNING hazard_id, unit_id, status, created_at""",
            (unit_id, source, description, reported_by, contact)).fetchone()
        conn.execute("INSERT INTO hazard_events (hazard_id, actor, action, note) VALUES (%s, %s, 'reported', %s)",
                     (row["hazard_id"], reported_by, note))
    return row


def report_public_hazard(conn: psycopg.Connection, unit_id: str, description: str,
                         contact: str | None) -> dict[str, Any]:
    """A passenger's report from the unit's QR page: no login, source 'public'. 404 for an unknown unit.

    `conn` uses dict rows. Rate limiting is the caller's (see PublicLimiter)."""
    if conn.execute("SELECT 1 FROM units WHERE unit_id = %s", (unit_id,)).fetchone() is None:
        raise not_found(f"unit {unit_id}")
    return _insert_hazard(conn, unit_id=unit_id, source="public", description=description,
                          reported_by=None, contact=contact or None, note="reported by a member of the public")


def _step(conn: psycopg.Connection, user: User, hazard_id: int, *, action: str, allowed_from: tuple[str, ...],
          new_status: str, note: str, check: Callable[[dict[str, Any]], None] | None = None,
          assigned_to: int | None = None) -> None:
    """One lifecycle transition: lock, check, update, append the event; all or nothing."""
    with conn.transaction():
        hazard = load_hazard(conn, user, hazard_id, lock=True)
        if hazard["status"] not in allowed_from:
            raise ApiError(409, "wrong_status",
                           f"hazard is {hazard['status']}; {action} needs it {' or '.join(allowed_from)}")
        if check:
            check(hazard)
        conn.execute(
            """UPDATE hazards SET status = %s, assigned_to = COALESCE(%s, assigned_to), updated_at = now(),
                      closed_at = CASE WHEN %s = 'closed' THEN now() END WHERE hazard_id = %s""",
            (new_status, assigned_to, new_status, hazard_id))
        conn.execute("INSERT INTO hazard_events (hazard_id, actor, action, note) VALUES (%s, %s, %s, %s)",
                     (hazard_id, user.person_id, action, note))


@router.post("/hazards", response_model=HazardDetail, status_code=201, summary="Report a hazard (staff)")
def report_hazard(body: HazardCreate, request: Request, user: CurrentUser, conn: ConnDep) -> dict:
    cond, params = user.scope.unit_filter("u")
    if not conn.execute(f"SELECT 1 FROM units u WHERE u.unit_id = %s AND {cond}",  # noqa: S608
                        (body.unit_id, *params)).fetchone():
        raise not_found(f"unit {body.unit_id}")
    with conn.transaction():
        row = _insert_hazard(conn, unit_id=body.unit_id, source="staff", description=body.description,
                             reported_by=user.person_id, contact=None, note="")
        _audit(conn, request, user.username, "hazard_reported", row, {"source": "staff"})
    return _detail(conn, user, row["hazard_id"])


@router.get("/hazards", response_model=list[HazardPublic])
def list_hazards(user: CurrentUser, conn: ConnDep, response: Response, pg: PageDep,
                 unit_id: str | None = None, status: HazardStatus | None = None,
                 source: Literal["defect", "staff", "public"] | None = None,
                 mine: bool = False) -> list[dict]:
    cond, params = user.scope.unit_filter("u")
    where, args = [cond], list(params)
    for col, val in (("h.unit_id", unit_id), ("h.status", status), ("h.source", source)):
        if val is not None:
            where.append(f"{col} = %s")
            args.append(val)
    if mine:
        where.append("h.assigned_to = %s")
        args.append(user.person_id)
    return fetch_page(conn, response, select=_SELECT, from_where=f"{_FROM} WHERE {' AND '.join(where)}",
                      params=args, order_by="h.created_at DESC, h.hazard_id DESC", pg=pg)


@router.get("/hazards/{hazard_id}", response_model=HazardDetail)
def get_hazard(hazard_id: int, user: CurrentUser, conn: ConnDep) -> dict:
    return _detail(conn, user, hazard_id)


@router.post("/hazards/{hazard_id}/assign", response_model=HazardDetail,
             summary="Assign to a technician of the unit's maintenance company (re-assign while assigned)")
def assign_hazard(hazard_id: int, body: AssignRequest, request: Request, conn: ConnDep,
                  user: Annotated[User, Depends(require("admin", "company_manager"))]) -> dict:
    def check(hazard: dict[str, Any]) -> None:
        ok = conn.execute(
            """SELECT 1 FROM people p JOIN units u ON u.maintenance_company_id = p.company_id
                WHERE p.person_id = %s AND p.role = 'technician' AND p.active AND u.unit_id = %s""",
            (body.person_id, hazard["unit_id"])).fetchone()
        if ok is None:
            raise ApiError(422, "not_a_technician_of_the_unit",
                           "person_id must be an active technician of the unit's maintenance company",
                           field="person_id")

    with conn.transaction():
        _step(conn, user, hazard_id, action="assigned", allowed_from=("open", "assigned"), new_status="assigned",
              note=body.note, check=check, assigned_to=body.person_id)
        _audit(conn, request, user.username, "hazard_assigned", {"hazard_id": hazard_id},
               {"assigned_to": body.person_id})
    return _detail(conn, user, hazard_id)


@router.post("/hazards/{hazard_id}/rectify", response_model=HazardDetail, summary="Rectified (the assignee)")
def rectify_hazard(hazard_id: int, body: NoteRequest, request: Request, conn: ConnDep,
                   user: Annotated[User, Depends(require("technician"))]) -> dict:
    def check(hazard: dict[str, Any]) -> None:
        if hazard["assigned_to"] != user.person_id:
            raise ApiError(403, "forbidden", "only the technician this hazard is assigned to rectifies it")

    with conn.transaction():
        _step(conn, user, hazard_id, action="rectified", allowed_from=("assigned",), new_status="rectified",
              note=body.note, check=check)
        _audit(conn, request, user.username, "hazard_rectified", {"hazard_id": hazard_id})
    return _detail(conn, user, hazard_id)


@router.post("/hazards/{hazard_id}/close", response_model=HazardDetail,
             summary="Accept the rectification and close (user unit, company manager or admin)")
def close_hazard(hazard_id: int, body: NoteRequest, request: Request, conn: ConnDep,
                 user: Annotated[User, Depends(require("admin", "company_manager", "user_unit"))]) -> dict:
    with conn.transaction():
        _step(conn, user, hazard_id, action="closed", allowed_from=("rectified",), new_status="closed", note=body.note)
        _audit(conn, request, user.username, "hazard_closed", {"hazard_id": hazard_id})
    return _detail(conn, user, hazard_id)


# --- public reports -------------------------------------------------------------------------


class TokenBuckets:
    """Token buckets by key, at most `max_keys` of them (least recently used forgotten first).

    In-process only: with several API processes each has its own buckets, so the effective
    limit is multiplied by the number of processes. A multi-process deployment needs a shared
    limiter (a table row per key with an UPDATE ... RETURNING, or the reverse proxy's limiter)."""

    def __init__(self, burst: int, refill_s: float, *, max_keys: int = LIMITER_MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst, self.refill_s, self.max_keys, self.clock = burst, refill_s, max_keys, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def available(self, key: str) -> float:
        tokens, at = self._buckets.get(key, (float(self.burst), self.clock()))
        return min(float(self.burst), tokens + (self.clock() - at) / self.refill_s)

    def take(self, key: str) -> None:
        self._buckets[key] = (self.available(key) - 1.0, self.clock())
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)


class PublicLimiter:
    """Per client address and per unit: a report needs a token from both buckets.

    The address is the TCP peer (`liftwatch api` runs uvicorn with proxy headers off). Behind a
    reverse proxy every report would share the proxy's address: enable forwarded headers for
    that proxy only (uvicorn --forwarded-allow-ips), or the per-address limit becomes global."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, max_keys: int = LIMITER_MAX_KEYS) -> None:
        self.per_ip = TokenBuckets(PUBLIC_PER_IP_BURST, PUBLIC_PER_IP_REFILL_S, max_keys=max_keys, clock=clock)
        self.per_unit = TokenBuckets(PUBLIC_PER_UNIT_BURST, PUBLIC_PER_UNIT_REFILL_S, max_keys=max_keys, clock=clock)
        self._lock = threading.Lock()  # sync routes run in a thread pool

    def allow(self, ip: str, unit_id: str) -> bool:
        with self._lock:
            if self.per_ip.available(ip) < 1.0 or self.per_unit.available(unit_id) < 1.0:
                return False
            self.per_ip.take(ip)
            self.per_unit.take(unit_id)
            return True


def public_limiter(request: Request) -> PublicLimiter:
    """The app's limiter, made on first use (tests may replace app.state.public_limiter)."""
    limiter = getattr(request.app.state, "public_limiter", None)
    if limiter is None:
        limiter = request.app.state.public_limiter = PublicLimiter()
    return limiter


@router.post("/public/units/{unit_id}/hazards", response_model=PublicReceipt, status_code=201, tags=["public"],
             summary="Report a problem with this lift (no login; rate-limited)")
def public_report(unit_id: str, body: PublicHazardCreate, request: Request, conn: ConnDep,
                  limiter: Annotated[PublicLimiter, Depends(public_limiter)]) -> dict:
    ip = request.client.host if request.client else "unknown"
    if not limiter.allow(ip, unit_id[:64]):
        raise ApiError(429, "rate_limited", "too many reports; please try again in a few minutes, or call the "
                       "emergency number on the notice in the car", headers={"Retry-After": "120"})
    with conn.transaction():
        row = report_public_hazard(conn, unit_id, body.description, body.contact)
        _audit(conn, request, "anonymous", "hazard_reported", row, {"source": "public"})
    return row


def _audit(conn: psycopg.Connection, request: Request, actor: str, action: str, hazard: dict[str, Any],
           detail: dict[str, Any] | None = None) -> None:
    audit.record(conn, request, actor, action, f"hazard:{hazard['hazard_id']}",
                 {"hazard_id": hazard["hazard_id"], **(detail or {})})
