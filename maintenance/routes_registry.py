"""Registry endpoints: companies, sites, units, people (a unit's status: routes_status.py).

Reading follows the scope rules of `deps.Scope`: admin and supervisor read everything; the
others read the units of their company (maintenance company or user unit), the sites and
companies those units name, and the people they answer for (a company manager: their
company; everyone: themselves). Anything else is 404, never 403. Writing is the admin's,
except that a company manager may create and update the technicians of their own company.

Lists are plain JSON arrays with the total in the `X-Total-Count` header (`limit`/`offset`),
ordered by primary key so that paging is stable.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, Query, Request, Response
from psycopg import sql
from psycopg.errors import CheckViolation, ForeignKeyViolation, UniqueViolation
from pydantic import BaseModel, ConfigDict, Field

from maintenance import audit
from maintenance.deps import ConnDep, CurrentUser, User, require
from maintenance.errors import ApiError, not_found
from maintenance.paging import PageDep, fetch_page

router = APIRouter(prefix="/api/v1", tags=["registry"])
Strict = ConfigDict(extra="forbid")  # unknown fields are refused (422), never silently ignored
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
Ident = Annotated[str, Field(pattern=ID_PATTERN)]
CompanyKind = Literal["maintenance", "user_unit", "manufacturer"]
UnitKind = Literal["traction", "hydraulic", "dumbwaiter", "escalator", "moving_walk"]  # = liftwatch.vocab.UnitKind
UnitStatusValue = Literal["in_service", "out_of_service", "suspended", "decommissioned"]
Role = Literal["admin", "supervisor", "company_manager", "technician", "user_unit"]
# the company kind a person of each role belongs to (admin and supervisor: any or none)
ROLE_COMPANY_KIND = {"company_manager": "maintenance", "technician": "maintenance", "user_unit": "user_unit"}


# --- errors ---------------------------------------------------------------------------------

def _field_of(exc: psycopg.Error, table: str, key: str) -> str | None:
    """The column a violated constraint is about, from PostgreSQL's default constraint names."""
    name = exc.diag.constraint_name or ""
    special = {f"{table}_pkey": key, "units_check": "next_inspection_due", "people_check": "company_id"}
    if name in special:
        return special[name]
    for suffix in ("_fkey", "_key", "_check"):
        if name.startswith(f"{table}_") and name.endswith(suffix):
            return name[len(table) + 1:-len(suffix)]
    return None


_SINGULAR = {"companies": "a company", "sites": "a site", "units": "a unit", "people": "a person"}


@contextmanager
def integrity(table: str, key: str) -> Iterator[None]:
    """Map constraint violations (caught by type) to 409 duplicate / 422 naming the field."""
    try:
        yield
    except UniqueViolation as exc:
        field = _field_of(exc, table, key)
        raise ApiError(409, "duplicate", f"{_SINGULAR.get(table, table)} with this {field or 'value'} already exists",
                       field=field) from None
    except ForeignKeyViolation as exc:
        field = _field_of(exc, table, key)
        raise ApiError(422, "unknown_reference", f"{field or 'a reference'} names nothing that exists",
                       field=field) from None
    except CheckViolation as exc:
        field = _field_of(exc, table, key)
        raise ApiError(422, "invalid_value", f"{field or 'a value'} is not allowed: {exc.diag.message_primary}",
                       field=field) from None


def _update(conn: psycopg.Connection, table: str, key: str, key_value: Any, changes: dict[str, Any]) -> int:
    """UPDATE the given columns (names come from the request model's fields, never free text)."""
    if not changes:
        return 1
    q = sql.SQL("UPDATE {} SET {}, updated_at = now() WHERE {} = %s").format(
        sql.Identifier(table),
        sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in changes),
        sql.Identifier(key))
    with integrity(table, key):
        return conn.execute(q, (*changes.values(), key_value)).rowcount


def _insert(conn: psycopg.Connection, table: str, key: str, values: dict[str, Any]) -> Any:
    q = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING {}").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, values)),
        sql.SQL(", ").join(sql.Placeholder() * len(values)), sql.Identifier(key))
    with integrity(table, key):
        return conn.execute(q, tuple(values.values())).fetchone()[key]


def _check_company_kinds(conn: psycopg.Connection, wanted: dict[str, tuple[str | None, str]]) -> None:
    """field -> (company_id, required kind): 422 when the company exists with another kind
    (a missing one is left to the foreign key, caught by type)."""
    ids = [cid for cid, _ in wanted.values() if cid]
    if not ids:
        return
    kinds = {r["company_id"]: r["kind"] for r in conn.execute(
        "SELECT company_id, kind FROM companies WHERE company_id = ANY(%s)", (ids,)).fetchall()}
    for field, (cid, kind) in wanted.items():
        if cid in kinds and kinds[cid] != kind:
            raise ApiError(422, "wrong_company_kind", f"{field} must name a {kind} company; {cid} is {kinds[cid]}",
                           field=field)


AdminDep = Annotated[User, Depends(require("admin"))]


def _audit(conn: psycopg.Connection, request: Request, user: User, action: str, obj: str,
           fields: dict[str, Any]) -> None:
    audit.record(conn, request, user.username, action, obj, {"fields": fields})

# --- companies ------------------------------------------------------------------------------


class CompanyPublic(BaseModel):
    company_id: str
    name: str
    kind: str
    licence_no: str | None
    phone: str | None
    emergency_phone: str | None
    created_at: datetime
    updated_at: datetime


class CompanyCreate(BaseModel):
    model_config = Strict
    company_id: Ident
    name: str = Field(min_length=1, max_length=200)
    kind: CompanyKind
    licence_no: str | None = Field(None, max_length=100)
    phone: str | None = Field(None, max_length=40)
    emergency_phone: str | None = Field(None, max_length=40)


class CompanyPatch(BaseModel):
    """Partial update; the id and kind are fixed (units and people depend on the kind)."""

    model_config = Strict
    name: str = Field(None, min_length=1, max_length=200)  # omitted = unchanged; null is refused
    licence_no: str | None = Field(None, max_length=100)
    phone: str | None = Field(None, max_length=40)
    emergency_phone: str | None = Field(None, max_length=40)


def _company_scope(user: User) -> tuple[str, tuple]:
    if user.role in ("admin", "supervisor"):
        return "TRUE", ()
    cond, params = user.scope.unit_filter("su")
    return (f"""(c.company_id = %s OR EXISTS (SELECT 1 FROM units su WHERE {cond} AND c.company_id IN
                 (su.maintenance_company_id, su.user_unit_id, su.manufacturer_id)))""",  # noqa: S608
            (user.company_id, *params))


def _get_company(conn: psycopg.Connection, user: User, company_id: str) -> dict:
    cond, params = _company_scope(user)
    row = conn.execute(f"SELECT c.* FROM companies c WHERE c.company_id = %s AND {cond}",  # noqa: S608
                       (company_id, *params)).fetchone()
    if row is None:
        raise not_found(f"company {company_id}")
    return row


@router.get("/companies", response_model=list[CompanyPublic])
def list_companies(user: CurrentUser, conn: ConnDep, response: Response, pg: PageDep,
                   kind: CompanyKind | None = None) -> list[dict]:
    cond, params = _company_scope(user)
    return fetch_page(conn, response, select="c.*",
                      from_where=f"FROM companies c WHERE {cond} AND (%s::text IS NULL OR c.kind = %s)",
                      params=(*params, kind, kind), order_by="c.company_id", pg=pg)


@router.get("/companies/{company_id}", response_model=CompanyPublic)
def get_company(company_id: str, user: CurrentUser, conn: ConnDep) -> dict:
    return _get_company(conn, user, company_id)


@router.post("/companies", response_model=CompanyPublic, status_code=201)
def create_company(body: CompanyCreate, request: Request, user: AdminDep, conn: ConnDep) -> dict:
    with conn.transaction():
        _insert(conn, "companies", "company_id", body.model_dump())
        _audit(conn, request, user, "company_created", f"company:{body.company_id}", body.model_dump())
    return _get_company(conn, user, body.company_id)


@router.patch("/companies/{company_id}", response_model=CompanyPublic)
def update_company(company_id: str, body: CompanyPatch, request: Request, user: AdminDep, conn: ConnDep) -> dict:
    changes = body.model_dump(exclude_unset=True)
    with conn.transaction():
        if not _update(conn, "companies", "company_id", company_id, changes):
            raise not_found(f"company {company_id}")
        _audit(conn, request, user, "company_updated", f"company:{company_id}", changes)
    return _get_company(conn, user, company_id)


# --- sites ----------------------------------------------------------------------------------


class SitePublic(BaseModel):
    site_id: str
    name: str
    address: str
    district: str
    city: str
    lat: float | None
    lon: float | None
    created_at: datetime
    updated_at: datetime


class SiteCreate(BaseModel):
    model_config = Strict
    site_id: Ident
    name: str = Field(min_length=1, max_length=200)
    address: str = Field("", max_length=300)
    district: str = Field("", max_length=100)
    city: str = Field("", max_length=100)
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)


class SitePatch(BaseModel):
    model_config = Strict
    name: str = Field(None, min_length=1, max_length=200)  # omitted = unchanged; null is refused
    address: str = Field(None, max_length=300)
    district: str = Field(None, max_length=100)
    city: str = Field(None, max_length=100)
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)


def _site_scope(user: User) -> tuple[str, tuple]:
    if user.role in ("admin", "supervisor"):
        return "TRUE", ()
    cond, params = user.scope.unit_filter("su")
    return f"EXISTS (SELECT 1 FROM units su WHERE su.site_id = s.site_id AND {cond})", params  # noqa: S608


def site_in_scope(conn: psycopg.Connection, user: User, site_id: str) -> dict:
    cond, params = _site_scope(user)
    row = conn.execute(f"SELECT s.* FROM sites s WHERE s.site_id = %s AND {cond}",  # noqa: S608
                       (site_id, *params)).fetchone()
    if row is None:
        raise not_found(f"site {site_id}")
    return row


@router.get("/sites", response_model=list[SitePublic])
def list_sites(user: CurrentUser, conn: ConnDep, response: Response, pg: PageDep,
               district: str | None = None, city: str | None = None) -> list[dict]:
    cond, params = _site_scope(user)
    return fetch_page(conn, response, select="s.*",
                      from_where=f"""FROM sites s WHERE {cond} AND (%s::text IS NULL OR s.district = %s)
                                      AND (%s::text IS NULL OR s.city = %s)""",
                      params=(*params, district, district, city, city), order_by="s.site_id", pg=pg)


@router.get("/sites/{site_id}", response_model=SitePublic)
def get_site(site_id: str, user: CurrentUser, conn: ConnDep) -> dict:
    return site_in_scope(conn, user, site_id)


@router.post("/sites", response_model=SitePublic, status_code=201)
def create_site(body: SiteCreate, request: Request, user: AdminDep, conn: ConnDep) -> dict:
    with conn.transaction():
        _insert(conn, "sites", "site_id", body.model_dump())
        _audit(conn, request, user, "site_created", f"site:{body.site_id}", body.model_dump())
    return site_in_scope(conn, user, body.site_id)


@router.patch("/sites/{site_id}", response_model=SitePublic)
def update_site(site_id: str, body: SitePatch, request: Request, user: AdminDep, conn: ConnDep) -> dict:
    changes = body.model_dump(exclude_unset=True)
    with conn.transaction():
        if not _update(conn, "sites", "site_id", site_id, changes):
            raise not_found(f"site {site_id}")
        _audit(conn, request, user, "site_updated", f"site:{site_id}", changes)
    return site_in_scope(conn, user, site_id)


# --- units ----------------------------------------------------------------------------------


class UnitPublic(BaseModel):
    unit_id: str
    registration_code: str | None
    site_id: str
    site_name: str
    district: str
    city: str
    lat: float | None
    lon: float | None
    kind: str
    maintenance_company_id: str | None
    user_unit_id: str | None
    manufacturer_id: str | None
    model: str | None
    installed_on: date | None
    floors: int | None
    rated_speed_mps: float | None
    rated_load_kg: int | None
    last_inspection_on: date | None
    next_inspection_due: date | None
    status: str
    created_at: datetime
    updated_at: datetime


class _UnitFields(BaseModel):
    model_config = Strict
    registration_code: str | None = Field(None, min_length=1, max_length=64)
    maintenance_company_id: Ident | None = None
    user_unit_id: Ident | None = None
    manufacturer_id: Ident | None = None
    model: str | None = Field(None, max_length=100)
    installed_on: date | None = None
    floors: int | None = Field(None, ge=1, le=300)
    rated_speed_mps: float | None = Field(None, ge=0.01, le=999)
    rated_load_kg: int | None = Field(None, ge=1, le=100_000)
    last_inspection_on: date | None = None
    next_inspection_due: date | None = None


class UnitCreate(_UnitFields):
    unit_id: Ident
    site_id: Ident
    kind: UnitKind
    status: UnitStatusValue = "in_service"


class UnitPatch(_UnitFields):
    site_id: Ident = None  # omitted = unchanged; null is refused
    kind: UnitKind = None
    status: UnitStatusValue = None


_UNIT_SELECT = """u.*, s.name AS site_name, s.district, s.city, s.lat, s.lon"""
# LEFT JOIN (every unit has a site): the planner then drops the join from count(*) unless a
# filter names a site column, which halves the cost of a 50 k-unit list for admin and supervisor
_UNIT_FROM = "FROM units u LEFT JOIN sites s USING (site_id)"


def unit_in_scope(conn: psycopg.Connection, user: User, unit_id: str) -> dict:
    cond, params = user.scope.unit_filter("u")
    row = conn.execute(f"SELECT {_UNIT_SELECT} {_UNIT_FROM} WHERE u.unit_id = %s AND {cond}",  # noqa: S608
                       (unit_id, *params)).fetchone()
    if row is None:
        raise not_found(f"unit {unit_id}")
    return row


def _unit_company_kinds(conn: psycopg.Connection, values: dict[str, Any]) -> None:
    _check_company_kinds(conn, {f: (values[f], kind) for f, kind in (
        ("maintenance_company_id", "maintenance"), ("user_unit_id", "user_unit"),
        ("manufacturer_id", "manufacturer")) if values.get(f)})


@router.get("/units", response_model=list[UnitPublic])
def list_units(user: CurrentUser, conn: ConnDep, response: Response, pg: PageDep,
               site_id: str | None = None, kind: UnitKind | None = None, status: UnitStatusValue | None = None,
               maintenance_company_id: str | None = None, user_unit_id: str | None = None,
               district: str | None = None,
               inspection_due_before: Annotated[date | None, Query(description="next_inspection_due before this day")]
               = None) -> list[dict]:
    cond, params = user.scope.unit_filter("u")
    where, args = [cond], list(params)
    for col, val in (("u.site_id", site_id), ("u.kind", kind), ("u.status", status),
                     ("u.maintenance_company_id", maintenance_company_id), ("u.user_unit_id", user_unit_id),
                     ("s.district", district)):
        if val is not None:
            where.append(f"{col} = %s")
            args.append(val)
    if inspection_due_before is not None:
        where.append("u.next_inspection_due < %s")
        args.append(inspection_due_before)
    return fetch_page(conn, response, select=_UNIT_SELECT, from_where=f"{_UNIT_FROM} WHERE {' AND '.join(where)}",
                      params=args, order_by="u.unit_id", pg=pg)


@router.get("/units/{unit_id}", response_model=UnitPublic)
def get_unit(unit_id: str, user: CurrentUser, conn: ConnDep) -> dict:
    return unit_in_scope(conn, user, unit_id)


@router.post("/units", response_model=UnitPublic, status_code=201)
def create_unit(body: UnitCreate, request: Request, user: AdminDep, conn: ConnDep) -> dict:
    values = body.model_dump()
    if values["last_inspection_on"] and values["next_inspection_due"] and \
            values["next_inspection_due"] < values["last_inspection_on"]:
        raise ApiError(422, "invalid_value", "next_inspection_due is before last_inspection_on",
                       field="next_inspection_due")
    _unit_company_kinds(conn, values)
    with conn.transaction():
        _insert(conn, "units", "unit_id", values)
        _audit(conn, request, user, "unit_created", f"unit:{body.unit_id}", values)
    return unit_in_scope(conn, user, body.unit_id)


@router.patch("/units/{unit_id}", response_model=UnitPublic)
def update_unit(unit_id: str, body: UnitPatch, request: Request, user: AdminDep, conn: ConnDep) -> dict:
    changes = body.model_dump(exclude_unset=True)
    _unit_company_kinds(conn, changes)
    with conn.transaction():
        if not _update(conn, "units", "unit_id", unit_id, changes):  # the dates' order: the table's CHECK
            raise not_found(f"unit {unit_id}")
        _audit(conn, request, user, "unit_updated", f"unit:{unit_id}", changes)
    return unit_in_scope(conn, user, unit_id)


# --- people ---------------------------------------------------------------------------------


class PersonPublic(BaseModel):
    person_id: int
    name: str
    role: str
    company_id: str | None
    certificate_no: str | None
    phone: str | None
    active: bool
    username: str | None = Field(description="login name, when the person has a login")
    created_at: datetime
    updated_at: datetime


class PersonCreate(BaseModel):
    model_config = Strict
    name: str = Field(min_length=1, max_length=100)
    role: Role
    company_id: Ident | None = Field(None, description="a company manager may only name their own company")
    certificate_no: str | None = Field(None, max_length=64)
    phone: str | None = Field(None, max_length=40)


class PersonPatch(BaseModel):
    """No company_id: signed records name a person; someone who changes employer is a new person."""

    model_config = Strict
    name: str = Field(None, min_length=1, max_length=100)  # omitted = unchanged; null is refused
    role: Role = None
    certificate_no: str | None = Field(None, max_length=64)
    phone: str | None = Field(None, max_length=40)
    active: bool = None


def _person_scope(user: User) -> tuple[str, tuple]:
    if user.role in ("admin", "supervisor"):
        return "TRUE", ()
    if user.role == "company_manager":
        return "(p.company_id = %s OR p.person_id = %s)", (user.company_id, user.person_id)
    return "p.person_id = %s", (user.person_id,)


_PERSON_SELECT = "p.*, us.username"
_PERSON_FROM = "FROM people p LEFT JOIN users us USING (person_id)"


def _get_person(conn: psycopg.Connection, user: User, person_id: int) -> dict:
    cond, params = _person_scope(user)
    row = conn.execute(f"SELECT {_PERSON_SELECT} {_PERSON_FROM} WHERE p.person_id = %s AND {cond}",  # noqa: S608
                       (person_id, *params)).fetchone()
    if row is None:
        raise not_found(f"person {person_id}")
    return row


def _check_role_company(conn: psycopg.Connection, role: str, company_id: str | None) -> None:
    kind = ROLE_COMPANY_KIND.get(role)
    if kind is None:
        return
    if not company_id:
        raise ApiError(422, "company_required", f"a {role} belongs to a {kind} company", field="company_id")
    _check_company_kinds(conn, {"company_id": (company_id, kind)})


ManagerDep = Annotated[User, Depends(require("admin", "company_manager"))]


@router.get("/people", response_model=list[PersonPublic])
def list_people(user: CurrentUser, conn: ConnDep, response: Response, pg: PageDep,
                company_id: str | None = None, role: Role | None = None, active: bool | None = None) -> list[dict]:
    cond, params = _person_scope(user)
    where, args = [cond], list(params)
    for col, val in (("p.company_id", company_id), ("p.role", role), ("p.active", active)):
        if val is not None:
            where.append(f"{col} = %s")
            args.append(val)
    return fetch_page(conn, response, select=_PERSON_SELECT, from_where=f"{_PERSON_FROM} WHERE {' AND '.join(where)}",
                      params=args, order_by="p.person_id", pg=pg)


@router.get("/people/{person_id}", response_model=PersonPublic)
def get_person(person_id: int, user: CurrentUser, conn: ConnDep) -> dict:
    return _get_person(conn, user, person_id)


@router.post("/people", response_model=PersonPublic, status_code=201,
             summary="Add a person (a login is added with `liftwatch users add`)")
def create_person(body: PersonCreate, request: Request, user: ManagerDep, conn: ConnDep) -> dict:
    values = body.model_dump()
    if user.role == "company_manager":
        if body.role != "technician":
            raise ApiError(403, "forbidden", "a company manager adds technicians only", field="role")
        if values["company_id"] not in (None, user.company_id):
            raise ApiError(403, "forbidden", "a company manager adds people to their own company", field="company_id")
        values["company_id"] = user.company_id
    _check_role_company(conn, body.role, values["company_id"])
    with conn.transaction():
        person_id = _insert(conn, "people", "person_id", values)
        _audit(conn, request, user, "person_created", f"person:{person_id}", values)
    return _get_person(conn, user, person_id)


@router.patch("/people/{person_id}", response_model=PersonPublic)
def update_person(person_id: int, body: PersonPatch, request: Request, user: ManagerDep, conn: ConnDep) -> dict:
    changes = body.model_dump(exclude_unset=True)
    with conn.transaction():
        current = _get_person(conn, user, person_id)
        conn.execute("SELECT 1 FROM people WHERE person_id = %s FOR UPDATE", (person_id,))
        if user.role == "company_manager":
            if current["role"] != "technician":
                raise ApiError(403, "forbidden", "a company manager updates technicians only")
            if changes.get("role", "technician") != "technician":
                raise ApiError(403, "forbidden", "a company manager cannot change a role", field="role")
        if "role" in changes:
            _check_role_company(conn, changes["role"], current["company_id"])
        _update(conn, "people", "person_id", person_id, changes)
        _audit(conn, request, user, "person_updated", f"person:{person_id}", changes)
    return _get_person(conn, user, person_id)
