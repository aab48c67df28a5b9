"""Authorization matrix: every role x every endpoint of the API x own / foreign object.

EL-1 (MC1 / UU1) is "own" for mgr1, tech1 and uu1; EL-2 (MC2 / UU2) is "foreign" to them.
admin and super see both. `anon` sends no token. The table below is the specification: a
new endpoint without a row fails `test_every_endpoint_is_in_the_matrix`.

Cells are HTTP statuses, or for lists SEES / HIDES (200, and the target object is / is not
among the items). Mutating calls get a fresh object per cell, so cells do not depend on
each other's order. A 409 cell means "allowed here, but the object is not in the state the
call needs" (e.g. the user unit countersigns only after the technician has signed).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from api_support import PASSWORD, PEOPLE, World, build_world
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from liftwatch import esign

ROLES = ("anon", "admin", "super", "mgr1", "tech1", "uu1")
OWN, FOREIGN, NONE = "own", "foreign", "-"
SEES, HIDES = "sees", "hides"
# served by FastAPI itself (documentation), public by design
EXEMPT = {"GET /openapi.json", "GET /docs", "GET /docs/oauth2-redirect", "GET /redoc"}

# fmt: off
MATRIX: dict[str, dict[str, tuple]] = {
    # endpoint                                                   target    anon  admin  super  mgr1   tech1  uu1
    "GET /healthz":                                              {NONE:    (200,  200,   200,   200,   200,   200)},
    "POST /api/v1/auth/token":                                   {NONE:    (401,  200,   200,   200,   200,   200)},
    "GET /api/v1/me":                                            {NONE:    (401,  200,   200,   200,   200,   200)},
    # work orders
    "GET /api/v1/work-orders":                                   {OWN:     (401,  SEES,  SEES,  SEES,  SEES,  SEES),
                                                                  FOREIGN: (401,  SEES,  SEES,  HIDES, HIDES, HIDES)},
    "POST /api/v1/work-orders":                                  {OWN:     (401,  201,   403,   201,   403,   403),
                                                                  FOREIGN: (401,  201,   403,   404,   403,   403)},
    "GET /api/v1/work-orders/{work_order_id}":                   {OWN:     (401,  200,   200,   200,   200,   200),
                                                                  FOREIGN: (401,  200,   200,   404,   404,   404)},
    "POST /api/v1/work-orders/{work_order_id}/check-in":         {OWN:     (401,  403,   403,   403,   200,   403),
                                                                  FOREIGN: (401,  403,   403,   403,   404,   403)},
    "PUT /api/v1/work-orders/{work_order_id}/items/{code}":      {OWN:     (401,  403,   403,   403,   200,   403),
                                                                  FOREIGN: (401,  403,   403,   404,   404,   404)},
    "GET /api/v1/work-orders/{work_order_id}/signing-payload":   {OWN:     (401,  403,   403,   403,   200,   409),
                                                                  FOREIGN: (401,  403,   403,   404,   404,   404)},
    "POST /api/v1/work-orders/{work_order_id}/signatures":       {OWN:     (401,  403,   403,   403,   201,   409),
                                                                  FOREIGN: (401,  403,   403,   403,   404,   404)},
    "GET /api/v1/work-orders/{work_order_id}/record":            {OWN:     (401,  200,   200,   200,   200,   200),
                                                                  FOREIGN: (401,  200,   200,   404,   404,   404)},
    "POST /api/v1/maintenance/schedule":                         {NONE:    (401,  200,   403,   403,   403,   403)},
    "GET /api/v1/checklists":                                    {NONE:    (401,  200,   200,   200,   200,   200)},
    "GET /api/v1/checklists/{checklist_id}/{version}":           {NONE:    (401,  200,   200,   200,   200,   200)},
    # signing keys: own = the caller's key, foreign = tech2's
    "POST /api/v1/keys":                                         {NONE:    (401,  201,   201,   201,   201,   201)},
    "GET /api/v1/keys":                                          {NONE:    (401,  200,   200,   200,   200,   200)},
    "POST /api/v1/keys/{key_id}/revoke":                         {OWN:     (401,  200,   200,   200,   200,   200),
                                                                  FOREIGN: (401,  200,   404,   404,   404,   404)},
    # registry: own = MC1, S1, EL-1, tech1; foreign = MC2, S2, EL-2, tech2
    "GET /api/v1/companies":                                     {OWN:     (401,  SEES,  SEES,  SEES,  SEES,  SEES),
                                                                  FOREIGN: (401,  SEES,  SEES,  HIDES, HIDES, HIDES)},
    "GET /api/v1/companies/{company_id}":                        {OWN:     (401,  200,   200,   200,   200,   200),
                                                                  FOREIGN: (401,  200,   200,   404,   404,   404)},
    "POST /api/v1/companies":                                    {NONE:    (401,  201,   403,   403,   403,   403)},
    "PATCH /api/v1/companies/{company_id}":                      {OWN:     (401,  200,   403,   403,   403,   403),
                                                                  FOREIGN: (401,  200,   403,   403,   403,   403)},
    "GET /api/v1/sites":                                         {OWN:     (401,  SEES,  SEES,  SEES,  SEES,  SEES),
                                                                  FOREIGN: (401,  SEES,  SEES,  HIDES, HIDES, HIDES)},
    "GET /api/v1/sites/{site_id}":                               {OWN:     (401,  200,   200,   200,   200,   200),
                                                                  FOREIGN: (401,  200,   200,   404,   404,   404)},
    "POST /api/v1/sites":                                        {NONE:    (401,  201,   403,   403,   403,   403)},
    "PATCH /api/v1/sites/{site_id}":                             {OWN:     (401,  200,   403,   403,   403,   403),
                                                                  FOREIGN: (401,  200,   403,   403,   403,   403)},
    "GET /api/v1/units":                                         {OWN:     (401,  SEES,  SEES,  SEES,  SEES,  SEES),
                                                                  FOREIGN: (401,  SEES,  SEES,  HIDES, HIDES, HIDES)},
    "GET /api/v1/units/{unit_id}":                               {OWN:     (401,  200,   200,   200,   200,   200),
                                                                  FOREIGN: (401,  200,   200,   404,   404,   404)},
    "GET /api/v1/units/{unit_id}/status":                        {OWN:     (401,  200,   200,   200,   200,   200),
                                                                  FOREIGN: (401,  200,   200,   404,   404,   404)},
    "POST /api/v1/units":                                        {NONE:    (401,  201,   403,   403,   403,   403)},
    "PATCH /api/v1/units/{unit_id}":                             {OWN:     (401,  200,   403,   403,   403,   403),
                                                                  FOREIGN: (401,  200,   403,   403,   403,   403)},
    "GET /api/v1/people":                                        {OWN:     (401,  SEES,  SEES,  SEES,  SEES,  HIDES),
                                                                  FOREIGN: (401,  SEES,  SEES,  HIDES, HIDES, HIDES)},
    "GET /api/v1/people/{person_id}":                            {OWN:     (401,  200,   200,   200,   200,   404),
                                                                  FOREIGN: (401,  200,   200,   404,   404,   404)},
    "POST /api/v1/people":                                       {OWN:     (401,  201,   403,   201,   403,   403),
                                                                  FOREIGN: (401,  201,   403,   403,   403,   403)},
    "PATCH /api/v1/people/{person_id}":                          {OWN:     (401,  200,   403,   200,   403,   403),
                                                                  FOREIGN: (401,  200,   403,   404,   403,   403)},
    # hazards
    "POST /api/v1/hazards":                                      {OWN:     (401,  201,   201,   201,   201,   201),
                                                                  FOREIGN: (401,  201,   201,   404,   404,   404)},
    "GET /api/v1/hazards":                                       {OWN:     (401,  SEES,  SEES,  SEES,  SEES,  SEES),
                                                                  FOREIGN: (401,  SEES,  SEES,  HIDES, HIDES, HIDES)},
    "GET /api/v1/hazards/{hazard_id}":                           {OWN:     (401,  200,   200,   200,   200,   200),
                                                                  FOREIGN: (401,  200,   200,   404,   404,   404)},
    "POST /api/v1/hazards/{hazard_id}/assign":                   {OWN:     (401,  200,   403,   200,   403,   403),
                                                                  FOREIGN: (401,  200,   403,   404,   403,   403)},
    "POST /api/v1/hazards/{hazard_id}/rectify":                  {OWN:     (401,  403,   403,   403,   200,   403),
                                                                  FOREIGN: (401,  403,   403,   403,   404,   403)},
    "POST /api/v1/hazards/{hazard_id}/close":                    {OWN:     (401,  200,   403,   200,   403,   200),
                                                                  FOREIGN: (401,  200,   403,   404,   403,   404)},
    "POST /api/v1/public/units/{unit_id}/hazards":               {OWN:     (201,  201,   201,   201,   201,   201),
                                                                  FOREIGN: (201,  201,   201,   201,   201,   201)},
    # alerts
    "GET /api/v1/alerts":                                        {OWN:     (401,  SEES,  SEES,  SEES,  SEES,  SEES),
                                                                  FOREIGN: (401,  SEES,  SEES,  HIDES, HIDES, HIDES)},
    "POST /api/v1/alerts/{alert_id}/acknowledge":                {OWN:     (401,  200,   200,   200,   403,   403),
                                                                  FOREIGN: (401,  200,   200,   404,   403,   403)},
    # counts only (no ids): which alerts each caller counts is tested in test_web_api.py
    "GET /api/v1/alerts/summary":                                {NONE:    (401,  200,   200,   200,   200,   200)},
    # audit log
    "GET /api/v1/audit":                                         {NONE:    (401,  200,   403,   403,   403,   403)},
    # what the pages show (routes_insights.py)
    "GET /api/v1/kpis":                                          {NONE:    (401,  200,   200,   200,   200,   200)},
    "GET /api/v1/kpis/{name}":                                   {OWN:     (401,  SEES,  SEES,  SEES,  SEES,  SEES),
                                                                  FOREIGN: (401,  SEES,  SEES,  HIDES, HIDES, HIDES)},
    "GET /api/v1/map":                                           {OWN:     (401,  SEES,  SEES,  SEES,  SEES,  SEES),
                                                                  FOREIGN: (401,  SEES,  SEES,  HIDES, HIDES, HIDES)},
    "GET /api/v1/scorecards":                                    {NONE:    (401,  200,   200,   200,   200,   200)},
    "GET /api/v1/units/{unit_id}/series":                        {OWN:     (401,  200,   200,   200,   200,   200),
                                                                  FOREIGN: (401,  200,   200,   404,   404,   404)},
    "GET /api/v1/units/{unit_id}/events":                        {OWN:     (401,  200,   200,   200,   200,   200),
                                                                  FOREIGN: (401,  200,   200,   404,   404,   404)},
    "GET /api/v1/units/{unit_id}/history":                       {OWN:     (401,  200,   200,   200,   200,   200),
                                                                  FOREIGN: (401,  200,   200,   404,   404,   404)},
    "GET /api/v1/public/units/{unit_id}":                        {OWN:     (200,  200,   200,   200,   200,   200),
                                                                  FOREIGN: (200,  200,   200,   200,   200,   200)},
}
# fmt: on


# --- the world, built once for the module -------------------------------------------------------

def _with_db(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


@dataclass
class Ctx:
    w: World
    obj: dict[str, Any] = field(default_factory=dict)
    n: Iterator[int] = field(default_factory=itertools.count)

    def h(self, who: str) -> dict[str, str]:
        return {} if who == "anon" else self.w.h(who)

    @staticmethod
    def unit(target: str) -> str:
        return "EL-2" if target == FOREIGN else "EL-1"

    @staticmethod
    def tech(target: str) -> str:
        return "tech2" if target == FOREIGN else "tech1"

    def admin(self, method: str, url: str, **kw) -> Any:
        r = self.w.client.request(method, url, headers=self.w.h("admin"), **kw)
        assert r.status_code < 300, r.text
        return r.json()

    def order(self, target: str, *, checked_in: bool = False, filled: bool = False) -> int:
        wo_id = self.admin("POST", "/api/v1/work-orders", json={"unit_id": self.unit(target), "kind": "half_monthly",
                                                                 "due_on": "2027-01-15"})["work_order_id"]
        tech = self.tech(target)
        if checked_in or filled:
            r = self.w.client.post(f"/api/v1/work-orders/{wo_id}/check-in", headers=self.w.h(tech), json={})
            assert r.status_code == 200, r.text
        if filled:
            self.w.fill(wo_id, who=tech)
        return wo_id

    def hazard(self, target: str, status: str = "open") -> int:
        assignee = self.w.person[self.tech(target)] if status != "open" else None
        return self.w.sql("""INSERT INTO hazards (unit_id, source, description, status, assigned_to)
                             VALUES (%s, 'staff', 'lift judders at floor 2', %s, %s) RETURNING hazard_id""",
                          (self.unit(target), status, assignee))[0]["hazard_id"]

    def alert(self, target: str) -> int:
        unit = self.unit(target)
        self.w.sql("UPDATE alerts SET status = 'resolved', resolved_at = now() "
                   "WHERE unit_id = %s AND kind = 'offline' AND status = 'open'", (unit,))
        return self.w.sql("""INSERT INTO alerts (unit_id, kind, severity, reason, source)
                             VALUES (%s, 'offline', 'warning', 'no data for 20 min', 'analytics')
                             RETURNING alert_id""", (unit,))[0]["alert_id"]

    def key(self, who: str) -> int:
        pub = esign.b64url(esign.raw_public_key(Ed25519PrivateKey.generate().public_key()))
        r = self.w.client.post("/api/v1/keys", headers=self.w.h(who), json={"public_key": pub, "password": PASSWORD})
        assert r.status_code == 201, r.text
        return r.json()["key_id"]

    def person(self, target: str) -> int:
        company = "MC2" if target == FOREIGN else "MC1"
        return self.w.sql("INSERT INTO people (name, role, company_id) VALUES ('Temp Tech', 'technician', %s) "
                          "RETURNING person_id", (company,))[0]["person_id"]

    def sign_body(self, who: str, wo_id: int) -> dict[str, Any]:
        """What `who` would send to sign: their own identity, key and password (anon: tech1's)."""
        signer = "tech1" if who == "anon" else who
        _, name, role, _ = next(p for p in PEOPLE if p[0] == signer)
        key_id, key = self.w.enrol(signer)
        r = self.w.client.get(f"/api/v1/work-orders/{wo_id}/signing-payload", headers=self.w.h(signer))
        sha = r.json()["record_sha256"] if r.status_code == 200 else "0" * 64
        meaning = "confirmed" if role == "user_unit" else "performed"
        payload = esign.signing_payload(record_sha=sha, signer_id=self.w.person[signer], name=name, role=role,
                                        meaning=meaning, signed_at=esign.timestamp())
        return {"payload": payload, "signature": esign.b64url(esign.sign(key, payload)), "key_id": key_id,
                "password": PASSWORD}


@pytest.fixture(scope="module")
def ctx(server_dsn: str, template_dsn: str) -> Iterator[Ctx]:
    name = f"t_authz_{uuid.uuid4().hex[:10]}"
    admin_dsn = _with_db(server_dsn, "postgres")
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_dsn.rsplit("/", 1)[1]}"')
    try:
        w, client = build_world(_with_db(server_dsn, name))
        with client:
            c = Ctx(w)
            c.admin("POST", "/api/v1/maintenance/schedule")
            for target in (OWN, FOREIGN):
                unit, tech = c.unit(target), c.tech(target)
                c.obj[f"open:{target}"] = w.order(unit, "half_monthly")["work_order_id"]
                signed = w.order(unit, "quarterly")["work_order_id"]
                w.client.post(f"/api/v1/work-orders/{signed}/check-in", headers=w.h(tech), json={})
                w.fill(signed, who=tech)
                assert w.sign(signed, tech)[0] == 201
                c.obj[f"signed:{target}"] = signed
                # own: filled by tech1, ready to sign; foreign: tech2 has checked in
                c.obj[f"in_progress:{target}"] = c.order(target, checked_in=True, filled=target == OWN)
                c.obj[f"hazard:{target}"] = c.hazard(target)
                c.obj[f"alert:{target}"] = w.sql(
                    """INSERT INTO alerts (unit_id, kind, severity, reason, source)
                       VALUES (%s, 'frequent_faults', 'warning', '12 door faults in 24 h', 'analytics')
                       RETURNING alert_id""", (unit,))[0]["alert_id"]
            yield c
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- one request per endpoint ------------------------------------------------------------------

@dataclass
class Req:
    method: str
    url: str
    json: Any = None
    data: dict | None = None
    params: dict | None = None
    find: tuple[str, Any] | None = None  # lists: (id field, id of the target object)


REQUESTS: dict[str, Callable[[Ctx, str, str], Req]] = {}


def request_for(endpoint: str):
    def register(fn: Callable[[Ctx, str, str], Req]) -> Callable[[Ctx, str, str], Req]:
        REQUESTS[endpoint] = fn
        return fn
    return register


def _simple(endpoint: str, **kw) -> None:
    method, url = endpoint.split(" ", 1)
    REQUESTS[endpoint] = lambda c, who, t: Req(method, url, **kw)


_simple("GET /healthz")
_simple("GET /api/v1/me")
_simple("GET /api/v1/checklists")
_simple("GET /api/v1/keys")
_simple("POST /api/v1/maintenance/schedule")
_simple("GET /api/v1/audit", params={"action": "login_ok"})
_simple("GET /api/v1/kpis")
_simple("GET /api/v1/scorecards")
_simple("GET /api/v1/alerts/summary")
for _path in ("series", "events", "history"):
    REQUESTS[f"GET /api/v1/units/{{unit_id}}/{_path}"] = (
        lambda c, who, t, _path=_path: Req("GET", f"/api/v1/units/{c.unit(t)}/{_path}"))
REQUESTS["GET /api/v1/public/units/{unit_id}"] = lambda c, who, t: Req("GET", f"/api/v1/public/units/{c.unit(t)}")
# nothing in this world has sent telemetry, so every in-service unit is on the "not online" list
REQUESTS["GET /api/v1/kpis/{name}"] = lambda c, who, t: Req("GET", "/api/v1/kpis/online", find=("unit_id", c.unit(t)))
REQUESTS["GET /api/v1/map"] = lambda c, who, t: Req("GET", "/api/v1/map", find=("unit_id", c.unit(t)))
REQUESTS["GET /api/v1/checklists/{checklist_id}/{version}"] = lambda c, who, t: Req(
    "GET", "/api/v1/checklists/tsg-t5002-2017-traction/1")


@request_for("POST /api/v1/auth/token")
def _(c: Ctx, who: str, t: str) -> Req:
    return Req("POST", "/api/v1/auth/token", data={"username": "nobody" if who == "anon" else who, "password": PASSWORD})


@request_for("GET /api/v1/work-orders")
def _(c: Ctx, who: str, t: str) -> Req:
    return Req("GET", "/api/v1/work-orders", params={"unit_id": c.unit(t)}, find=("work_order_id", c.obj[f"open:{t}"]))


@request_for("POST /api/v1/work-orders")
def _(c: Ctx, who: str, t: str) -> Req:
    return Req("POST", "/api/v1/work-orders", json={"unit_id": c.unit(t), "kind": "annual", "due_on": "2027-06-01"})


@request_for("GET /api/v1/work-orders/{work_order_id}")
def _(c: Ctx, who: str, t: str) -> Req:
    return Req("GET", f"/api/v1/work-orders/{c.obj[f'open:{t}']}")


@request_for("POST /api/v1/work-orders/{work_order_id}/check-in")
def _(c: Ctx, who: str, t: str) -> Req:
    return Req("POST", f"/api/v1/work-orders/{c.order(t)}/check-in", json={"lat": 31.2, "lon": 121.4})


@request_for("PUT /api/v1/work-orders/{work_order_id}/items/{code}")
def _(c: Ctx, who: str, t: str) -> Req:
    return Req("PUT", f"/api/v1/work-orders/{c.obj[f'in_progress:{t}']}/items/A-1-01", json={"result": "ok"})


@request_for("GET /api/v1/work-orders/{work_order_id}/signing-payload")
def _(c: Ctx, who: str, t: str) -> Req:
    return Req("GET", f"/api/v1/work-orders/{c.obj[f'in_progress:{t}']}/signing-payload")


@request_for("POST /api/v1/work-orders/{work_order_id}/signatures")
def _(c: Ctx, who: str, t: str) -> Req:
    wo_id = c.order(OWN, filled=True) if t == OWN else c.obj[f"in_progress:{t}"]
    return Req("POST", f"/api/v1/work-orders/{wo_id}/signatures", json=c.sign_body(who, wo_id))


@request_for("GET /api/v1/work-orders/{work_order_id}/record")
def _(c: Ctx, who: str, t: str) -> Req:
    return Req("GET", f"/api/v1/work-orders/{c.obj[f'signed:{t}']}/record")


@request_for("POST /api/v1/keys")
def _(c: Ctx, who: str, t: str) -> Req:
    pub = esign.b64url(esign.raw_public_key(Ed25519PrivateKey.generate().public_key()))
    return Req("POST", "/api/v1/keys", json={"public_key": pub, "password": PASSWORD})


@request_for("POST /api/v1/keys/{key_id}/revoke")
def _(c: Ctx, who: str, t: str) -> Req:
    owner = "tech2" if t == FOREIGN else ("tech1" if who == "anon" else who)
    return Req("POST", f"/api/v1/keys/{c.key(owner)}/revoke")


_REGISTRY = {"companies": ("company_id", "MC1", "MC2"), "sites": ("site_id", "S1", "S2"),
             "units": ("unit_id", "EL-1", "EL-2")}


def _registry_target(kind: str, t: str) -> str:
    return _REGISTRY[kind][2 if t == FOREIGN else 1]


for _kind in _REGISTRY:
    REQUESTS[f"GET /api/v1/{_kind}"] = lambda c, who, t, k=_kind: Req(
        "GET", f"/api/v1/{k}", params={"limit": 1000}, find=(_REGISTRY[k][0], _registry_target(k, t)))
    REQUESTS[f"GET /api/v1/{_kind}/{{{_REGISTRY[_kind][0]}}}"] = lambda c, who, t, k=_kind: Req(
        "GET", f"/api/v1/{k}/{_registry_target(k, t)}")
    REQUESTS[f"PATCH /api/v1/{_kind}/{{{_REGISTRY[_kind][0]}}}"] = lambda c, who, t, k=_kind: Req(
        "PATCH", f"/api/v1/{k}/{_registry_target(k, t)}",
        json={"model": f"M{next(c.n)}"} if k == "units" else {"address" if k == "sites" else "phone": f"{next(c.n)}"})


@request_for("GET /api/v1/units/{unit_id}/status")
def _(c: Ctx, who: str, t: str) -> Req:
    return Req("GET", f"/api/v1/units/{c.unit(t)}/status")


@request_for("POST /api/v1/companies")
def _(c: Ctx, who: str, t: str) -> Req:
    return Req("POST", "/api/v1/companies", json={"company_id": f"MX{next(c.n)}", "name": "New Co", "kind": "maintenance"})


@request_for("POST /api/v1/sites")
def _(c: Ctx, who: str, t: str) -> Req:
    return Req("POST", "/api/v1/sites", json={"site_id": f"SX{next(c.n)}", "name": "New Site"})


@request_for("POST /api/v1/units")
def _(c: Ctx, who: str, t: str) -> Req:
    return Req("POST", "/api/v1/units", json={"unit_id": f"EX-{next(c.n)}", "site_id": "S1", "kind": "traction",
                                              "maintenance_company_id": "MC1", "user_unit_id": "UU1"})


@request_for("GET /api/v1/people")
def _(c: Ctx, who: str, t: str) -> Req:
    return Req("GET", "/api/v1/people", params={"limit": 1000}, find=("person_id", c.w.person[c.tech(t)]))


@request_for("GET /api/v1/people/{person_id}")
def _(c: Ctx, who: str, t: str) -> Req:
    return Req("GET", f"/api/v1/people/{c.w.person[c.tech(t)]}")


@request_for("POST /api/v1/people")
def _(c: Ctx, who: str, t: str) -> Req:
    return Req("POST", "/api/v1/people", json={"name": "New Tech", "role": "technician",
                                               "company_id": "MC2" if t == FOREIGN else "MC1"})


@request_for("PATCH /api/v1/people/{person_id}")
def _(c: Ctx, who: str, t: str) -> Req:
    return Req("PATCH", f"/api/v1/people/{c.person(t)}", json={"phone": "13900000000"})


@request_for("POST /api/v1/hazards")
def _(c: Ctx, who: str, t: str) -> Req:
    return Req("POST", "/api/v1/hazards", json={"unit_id": c.unit(t), "description": "strange noise in the shaft"})


@request_for("GET /api/v1/hazards")
def _(c: Ctx, who: str, t: str) -> Req:
    return Req("GET", "/api/v1/hazards", params={"limit": 1000}, find=("hazard_id", c.obj[f"hazard:{t}"]))


@request_for("GET /api/v1/hazards/{hazard_id}")
def _(c: Ctx, who: str, t: str) -> Req:
    return Req("GET", f"/api/v1/hazards/{c.obj[f'hazard:{t}']}")


@request_for("POST /api/v1/hazards/{hazard_id}/assign")
def _(c: Ctx, who: str, t: str) -> Req:
    return Req("POST", f"/api/v1/hazards/{c.hazard(t)}/assign", json={"person_id": c.w.person[c.tech(t)]})


@request_for("POST /api/v1/hazards/{hazard_id}/rectify")
def _(c: Ctx, who: str, t: str) -> Req:
    return Req("POST", f"/api/v1/hazards/{c.hazard(t, 'assigned')}/rectify", json={"note": "fixed"})


@request_for("POST /api/v1/hazards/{hazard_id}/close")
def _(c: Ctx, who: str, t: str) -> Req:
    return Req("POST", f"/api/v1/hazards/{c.hazard(t, 'rectified')}/close", json={"note": "accepted"})


@request_for("POST /api/v1/public/units/{unit_id}/hazards")
def _(c: Ctx, who: str, t: str) -> Req:
    c.w.client.app.state.public_limiter = None  # a fresh limiter per cell: this matrix is not about the rate
    return Req("POST", f"/api/v1/public/units/{c.unit(t)}/hazards", json={"description": "the lift smells of burning"})


@request_for("GET /api/v1/alerts")
def _(c: Ctx, who: str, t: str) -> Req:
    return Req("GET", "/api/v1/alerts", params={"limit": 1000}, find=("alert_id", c.obj[f"alert:{t}"]))


@request_for("POST /api/v1/alerts/{alert_id}/acknowledge")
def _(c: Ctx, who: str, t: str) -> Req:
    return Req("POST", f"/api/v1/alerts/{c.alert(t)}/acknowledge")


# --- the tests ---------------------------------------------------------------------------------

def _endpoints(routes) -> Iterator[str]:
    for route in routes:
        if hasattr(route, "effective_route_contexts"):  # FastAPI >= 0.16x keeps included routers as branches
            yield from _endpoints(route.effective_route_contexts())
        elif getattr(route, "methods", None):
            yield from (f"{m} {route.path}" for m in route.methods - {"HEAD", "OPTIONS"})


def test_every_endpoint_is_in_the_matrix(ctx: Ctx) -> None:
    app = ctx.w.client.app
    # the web pages (maintenance/web) have their own matrix in test_web_api.py; this one is the API's
    found = {e for e in _endpoints(app.routes) if e.split(" ", 1)[1].startswith(("/api/", "/healthz"))
             or e in EXEMPT}
    documented = {f"{m.upper()} {p}" for p, ops in app.openapi()["paths"].items() for m in ops}
    assert documented <= found, f"route walk missed: {sorted(documented - found)}"
    assert sorted(found - EXEMPT - set(MATRIX)) == [], "endpoints without a row in MATRIX"
    assert sorted(set(MATRIX) - found) == [], "MATRIX rows for endpoints that no longer exist"
    assert set(REQUESTS) == set(MATRIX)
    for endpoint, row in MATRIX.items():
        assert all(len(cells) == len(ROLES) for cells in row.values()), endpoint


def _outcome(c: Ctx, endpoint: str, who: str, target: str) -> tuple[Any, str]:
    req = REQUESTS[endpoint](c, who, target)
    r = c.w.client.request(req.method, req.url, headers=c.h(who), json=req.json, data=req.data, params=req.params)
    if req.find is None or r.status_code != 200:
        return r.status_code, r.text[:200]
    key, value = req.find
    return (SEES if any(item[key] == value for item in r.json()) else HIDES), ""


@pytest.mark.parametrize("endpoint", sorted(MATRIX))
def test_matrix(ctx: Ctx, endpoint: str) -> None:
    wrong = []
    for target, cells in MATRIX[endpoint].items():
        for who, expected in zip(ROLES, cells, strict=True):
            got, body = _outcome(ctx, endpoint, who, target)
            if got != expected:
                wrong.append(f"{who:>5} {target:>7}: expected {expected}, got {got} {body}")
    assert not wrong, f"{endpoint}\n" + "\n".join(wrong)


# --- mass assignment: server-owned fields cannot be sent ---------------------------------------

@pytest.mark.parametrize(("who", "method", "url", "body", "field"), [
    ("mgr1", "POST", "/api/v1/work-orders", {"unit_id": "EL-1", "kind": "annual", "due_on": "2027-01-01",
                                             "signed_by": 1}, "signed_by"),
    ("mgr1", "POST", "/api/v1/work-orders", {"unit_id": "EL-1", "kind": "annual", "due_on": "2027-01-01",
                                             "company_id": "MC2"}, "company_id"),
    ("tech1", "POST", "/api/v1/work-orders/{open}/check-in", {"technician_id": 1}, "technician_id"),
    ("tech1", "PUT", "/api/v1/work-orders/{in_progress}/items/A-1-01", {"result": "ok", "updated_by": 1}, "updated_by"),
    ("tech1", "POST", "/api/v1/work-orders/{in_progress}/signatures",
     {"payload": {}, "signature": "x", "key_id": 1, "password": "p", "record_sha256": "0" * 64}, "record_sha256"),
    ("tech1", "POST", "/api/v1/keys", {"public_key": "x", "password": "p", "person_id": 1}, "person_id"),
    ("uu1", "POST", "/api/v1/hazards", {"unit_id": "EL-1", "description": "loud bang", "status": "closed"}, "status"),
    ("uu1", "POST", "/api/v1/hazards", {"unit_id": "EL-1", "description": "loud bang", "person_id": 1}, "person_id"),
    ("uu1", "POST", "/api/v1/hazards", {"unit_id": "EL-1", "description": "loud bang", "company_id": "MC2"}, "company_id"),
    ("mgr1", "POST", "/api/v1/hazards/{hazard}/assign", {"person_id": 1, "status": "closed"}, "status"),
    ("tech1", "POST", "/api/v1/hazards/{hazard}/rectify", {"assigned_to": 1}, "assigned_to"),
    ("anon", "POST", "/api/v1/public/units/EL-1/hazards", {"description": "loud bang", "status": "closed"}, "status"),
    ("anon", "POST", "/api/v1/public/units/EL-1/hazards", {"description": "loud bang", "reported_by": 1}, "reported_by"),
    ("mgr1", "POST", "/api/v1/people", {"name": "X", "role": "technician", "person_id": 1}, "person_id"),
    ("mgr1", "PATCH", "/api/v1/people/{tech1}", {"company_id": "MC2"}, "company_id"),
    ("mgr1", "PATCH", "/api/v1/people/{tech1}", {"person_id": 1}, "person_id"),
    ("admin", "PATCH", "/api/v1/units/EL-1", {"company_id": "MC2"}, "company_id"),
    ("admin", "PATCH", "/api/v1/units/EL-1", {"created_at": "2020-01-01T00:00:00Z"}, "created_at"),
    ("admin", "PATCH", "/api/v1/companies/MC1", {"company_id": "MC9"}, "company_id"),
    ("admin", "PATCH", "/api/v1/sites/S1", {"site_id": "S9"}, "site_id"),
])
def test_mass_assignment_is_refused(ctx: Ctx, who: str, method: str, url: str, body: dict, field: str) -> None:
    url = url.format(open=ctx.obj["open:own"], in_progress=ctx.obj["in_progress:own"], hazard=ctx.obj["hazard:own"],
                     tech1=ctx.w.person["tech1"])
    r = ctx.w.client.request(method, url, headers=ctx.h(who), json=body)
    assert (r.status_code, r.json().get("field")) == (422, field), r.text


def test_filters_and_bodies_that_are_not_in_the_model_change_nothing(ctx: Ctx) -> None:
    c, mgr = ctx.w.client, ctx.h("mgr1")
    # an unknown query parameter is not a way around the scope
    r = c.get("/api/v1/units", headers=mgr, params={"company_id": "MC2", "maintenance_company_id_in": "MC2"})
    assert {u["maintenance_company_id"] for u in r.json()} == {"MC1"}
    r = c.get("/api/v1/hazards", headers=ctx.h("uu1"), params={"unit_id": "EL-2"})
    assert r.status_code == 200 and r.json() == [] and r.headers["X-Total-Count"] == "0"
    # acknowledge takes no body: who acknowledged is always the caller
    r = c.post(f"/api/v1/alerts/{ctx.alert(OWN)}/acknowledge", headers=mgr,
               json={"acknowledged_by": "Mallory", "acknowledged_at": "2020-01-01T00:00:00Z"})
    assert r.status_code == 200 and r.json()["acknowledged_by"] == "Ma Manager (mgr1)"
    assert not r.json()["acknowledged_at"].startswith("2020")
    r = c.post(f"/api/v1/alerts/{r.json()['alert_id']}/acknowledge", headers=ctx.h("super"))
    assert (r.status_code, r.json()["error"]) == (409, "already_acknowledged") and "Ma Manager" in r.json()["detail"]
