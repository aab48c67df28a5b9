"""Property-based API testing with Schemathesis, once per role: every operation of the OpenAPI
schema gets generated requests (valid and invalid data), and every answer must be a non-5xx
that matches the response schema the operation documents.

In-process: Schemathesis calls the World's app over ASGI; api_support's World provides the
data and the tokens. Generated ids rarely name anything real, so hooks mix in the ids of real
objects (and a few hostile values: NUL in text, integers past bigint) for path parameters and
for id fields of bodies and queries; requests then reach the code behind the 404.

One world serves all roles, in an order where no role's fuzzing can lock a later role out
(a company manager may deactivate technicians, so technicians go first; the admin, who may
deactivate anyone, goes last).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import schemathesis
from api_support import World, build_world
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from liftwatch.settings import Settings
from maintenance.app import create_app

ROLES = ("anonymous", "user_unit", "technician", "supervisor", "company_manager", "admin")
USERNAME = {"admin": "admin", "supervisor": "super", "company_manager": "mgr1", "technician": "tech1",
            "user_unit": "uu1", "anonymous": None}
# 15 generated cases per operation and role keeps the whole file near a minute on 2 cores; for a
# deeper run: LIFTWATCH_FUZZ_EXAMPLES=100 LIFTWATCH_FUZZ_COVERAGE=1 (adds the coverage phase:
# boundary values and missing/extra parameters, ~5x the requests).
MAX_EXAMPLES = int(os.environ.get("LIFTWATCH_FUZZ_EXAMPLES", "15"))
PHASES = ["examples", "coverage", "fuzzing"] if os.environ.get("LIFTWATCH_FUZZ_COVERAGE") else ["examples", "fuzzing"]
CHECKS = [not_a_server_error, response_schema_conformance]
HOSTILE_TEXT = ["EL-1\x00", "", " ", "%", "a" * 300]
HOSTILE_INT = [0, -1, 2**31, 2**63, -(2**63) - 1, 10**30]

#: parameter or body field -> real values, filled in once the world exists
KNOWN: dict[str, list[Any]] = {}


def _with_db(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


def _populate(w: World) -> None:
    """Objects in every state (open, in progress, signed; a hazard, an alert, keys), and KNOWN."""
    assert w.client.post("/api/v1/maintenance/schedule", headers=w.h("admin")).status_code == 200
    signed = w.order("EL-1", "quarterly")["work_order_id"]
    w.client.post(f"/api/v1/work-orders/{signed}/check-in", headers=w.h("tech1"), json={})
    w.fill(signed)
    assert w.sign(signed, "tech1")[0] == 201
    in_progress = w.order("EL-1", "half_monthly")["work_order_id"]
    w.client.post(f"/api/v1/work-orders/{in_progress}/check-in", headers=w.h("tech1"), json={})
    w.client.post("/api/v1/hazards", headers=w.h("uu1"), json={"unit_id": "EL-1", "description": "door judders"})
    w.enrol("uu1")
    w.sql("""INSERT INTO alerts (unit_id, kind, severity, reason, source)
             VALUES ('EL-1', 'offline', 'warning', 'no data for 20 min', 'analytics')""")

    def ids(sql: str) -> list[Any]:
        return [next(iter(r.values())) for r in w.sql(sql)]

    units = ids("SELECT unit_id FROM units ORDER BY 1")
    companies = ids("SELECT company_id FROM companies ORDER BY 1")
    people = ids("SELECT person_id FROM people ORDER BY 1")
    KNOWN.clear()
    KNOWN.update({
        "unit_id": units, "site_id": ids("SELECT site_id FROM sites ORDER BY 1"), "company_id": companies,
        "maintenance_company_id": companies, "user_unit_id": companies, "manufacturer_id": companies,
        "person_id": people, "assigned_to": people,
        "work_order_id": ids("SELECT work_order_id FROM work_orders ORDER BY 1 LIMIT 20"),
        "corrects_id": [signed],
        "hazard_id": ids("SELECT hazard_id FROM hazards"), "alert_id": ids("SELECT alert_id FROM alerts"),
        "key_id": ids("SELECT key_id FROM signing_keys"), "code": ["A-1-01", "A-1-02", "C-1-01"],
        "checklist_id": ["tsg-t5002-2017-traction", "tsg-t5002-2017-escalator"], "version": [1],
    })


@pytest.fixture(scope="module")
def world(server_dsn: str, template_dsn: str) -> Iterator[World]:
    name = f"t_st_{uuid.uuid4().hex[:10]}"
    admin_dsn = _with_db(server_dsn, "postgres")
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_dsn.rsplit("/", 1)[1]}"')
    try:
        w, client = build_world(_with_db(server_dsn, name))
        with client:
            _populate(w)
            for who in USERNAME.values():
                if who:
                    w.h(who)  # tokens before any fuzzing: the login fuzzing may throttle the test client
            CURRENT.target = client.app
            yield w
            CURRENT.target = None
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module", params=ROLES)
def role(request: pytest.FixtureRequest) -> str:
    """Module-scoped and parametrized, so pytest runs all operations of one role, then the next."""
    return request.param


class _CurrentApp:
    """The ASGI app Schemathesis calls: the World's app, whose lifespan (and connection pool) the
    World's TestClient runs; the lifespan Schemathesis starts here is a no-op."""

    target: Any = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await self.target(scope, receive, send)


CURRENT = _CurrentApp()
# the schema does not depend on the database: build it once, from an app that never starts
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi())
schema.app = CURRENT
schema.config.generation.update(max_examples=MAX_EXAMPLES)
schema.config.phases.update(phases=PHASES)


def _mixed(values: Any, *, path: bool = False) -> st.SearchStrategy[Any]:
    """Each known field: the generated value, a real one, or a hostile one of the same kind.
    (Not an empty path segment: /sites/ is the list, redirected to by Starlette.)"""
    if not isinstance(values, dict):
        return st.just(values)
    out = {}
    for name, value in values.items():
        known = KNOWN.get(name)
        if not known:
            out[name] = st.just(value)
            continue
        hostile = HOSTILE_INT if isinstance(known[0], int) else [t for t in HOSTILE_TEXT if t or not path]
        out[name] = st.one_of(st.just(value), st.sampled_from(known), st.sampled_from(hostile))
    return st.fixed_dictionaries(out)


@schema.hook
def flatmap_path_parameters(context: schemathesis.HookContext, path_parameters: Any) -> Any:
    return _mixed(path_parameters, path=True)


@schema.hook
def flatmap_query(context: schemathesis.HookContext, query: Any) -> Any:
    return _mixed(query)


@schema.hook
def flatmap_body(context: schemathesis.HookContext, body: Any) -> Any:
    return _mixed(body)


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_api(case: schemathesis.Case, world: World, role: str) -> None:
    username = USERNAME[role]
    case.call_and_validate(headers=world.h(username) if username else {}, checks=CHECKS)
