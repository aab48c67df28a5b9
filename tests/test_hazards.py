"""Hazards (隐患) through the real API and database: the lifecycle with its history, transitions
refused from the wrong status, and the public report (no login, validated, rate-limited)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_support import World, build_world

from maintenance.routes_hazards import (
    PUBLIC_PER_IP_BURST,
    PUBLIC_PER_UNIT_BURST,
    PublicLimiter,
    TokenBuckets,
)


@pytest.fixture()
def world(db_url: str) -> Iterator[World]:
    w, client = build_world(db_url)
    with client:
        yield w


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _report(world: World, who: str = "uu1", unit: str = "EL-1", text: str = "car stops 5 cm below floor 3") -> dict:
    r = world.client.post("/api/v1/hazards", headers=world.h(who), json={"unit_id": unit, "description": text})
    assert r.status_code == 201, r.text
    return r.json()


def _act(world: World, hazard_id: int, step: str, who: str, **body):
    return world.client.post(f"/api/v1/hazards/{hazard_id}/{step}", headers=world.h(who), json=body)


def test_lifecycle_with_history(world: World) -> None:
    hz = _report(world)
    assert (hz["status"], hz["source"], hz["reported_by"], hz["reporter_name"]) == ("open", "staff", world.person["uu1"], "刘安全")
    assert [e["action"] for e in hz["events"]] == ["reported"]
    hid = hz["hazard_id"]

    r = _act(world, hid, "assign", "mgr1", person_id=world.person["tech1"], note="today please")
    assert r.status_code == 200 and r.json()["status"] == "assigned" and r.json()["assignee_name"] == "张伟"
    r = _act(world, hid, "assign", "mgr1", person_id=world.person["tech1b"], note="tech1 is off sick")
    assert r.status_code == 200 and r.json()["assigned_to"] == world.person["tech1b"]
    assert _act(world, hid, "rectify", "tech1", note="done").status_code == 403  # no longer the assignee
    r = _act(world, hid, "rectify", "tech1b", note="  levelling adjusted, brake checked  ")
    assert r.status_code == 200 and r.json()["status"] == "rectified" and r.json()["closed_at"] is None
    r = _act(world, hid, "close", "uu1", note="checked on site")
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "closed" and done["closed_at"] is not None
    assert [(e["action"], e["actor_name"], e["note"]) for e in done["events"]] == [
        ("reported", "刘安全", ""),
        ("assigned", "Ma Manager", "today please"),
        ("assigned", "Ma Manager", "tech1 is off sick"),
        ("rectified", "Li Second", "levelling adjusted, brake checked"),
        ("closed", "刘安全", "checked on site"),
    ]
    assert done["events"] == world.client.get(f"/api/v1/hazards/{hid}", headers=world.h("tech1")).json()["events"]
    rows = world.sql("SELECT status, assigned_to, closed_at IS NOT NULL AS closed, updated_at > created_at AS touched "
                     "FROM hazards WHERE hazard_id = %s", (hid,))
    assert rows == [{"status": "closed", "assigned_to": world.person["tech1b"], "closed": True, "touched": True}]

    # lists: filters and scope
    other = _report(world, "tech2", "EL-2", "handrail speed differs from step speed")["hazard_id"]
    admin = world.h("admin")

    def ids(who: str = "admin", **params) -> list[int]:
        r = world.client.get("/api/v1/hazards", headers=world.h(who), params=params)
        assert r.status_code == 200, r.text
        assert int(r.headers["X-Total-Count"]) >= len(r.json())
        return [h["hazard_id"] for h in r.json()]

    assert ids() == [other, hid]  # newest first
    assert ids(status="closed") == [hid] and ids(status="open") == [other]
    assert ids(unit_id="EL-2") == [other] and ids(source="staff", limit=1, offset=1) == [hid]
    assert ids("uu1") == [hid] and ids("tech2") == [other] and ids("super") == [other, hid]
    assert ids("tech1b", mine=True) == [hid] and ids("tech1", mine=True) == []
    assert world.client.get(f"/api/v1/hazards/{other}", headers=world.h("uu1")).status_code == 404
    assert world.client.get("/api/v1/hazards", headers=admin, params={"status": "fixed"}).json()["field"] == "status"


def test_wrong_transitions_are_409_and_assignee_must_fit(world: World) -> None:
    hid = _report(world)["hazard_id"]
    t1 = world.person["tech1"]
    for step, who, body in (("rectify", "tech1", {}), ("close", "uu1", {}), ("close", "mgr1", {})):
        r = _act(world, hid, step, who, **body)
        assert (r.status_code, r.json()["error"]) == (409, "wrong_status"), (step, r.text)
    for person, why in ((world.person["tech2"], "technician of another company"), (world.person["uu1"], "not a technician"),
                        (world.person["mgr1"], "a manager"), (999_999, "nobody")):
        r = _act(world, hid, "assign", "mgr1", person_id=person)
        assert (r.status_code, r.json().get("field")) == (422, "person_id"), why
    world.sql("UPDATE people SET active = false WHERE person_id = %s", (world.person["tech1b"],))
    assert _act(world, hid, "assign", "admin", person_id=world.person["tech1b"]).status_code == 422
    assert _act(world, hid, "assign", "admin", person_id=t1).status_code == 200
    assert _act(world, hid, "close", "uu1").status_code == 409
    assert _act(world, hid, "rectify", "tech1").status_code == 200
    for step, who, body in (("rectify", "tech1", {}), ("assign", "mgr1", {"person_id": t1})):
        assert _act(world, hid, step, who, **body).status_code == 409, step
    assert _act(world, hid, "close", "admin").status_code == 200
    for step, who, body in (("close", "uu1", {}), ("rectify", "tech1", {}), ("assign", "mgr1", {"person_id": t1})):
        assert _act(world, hid, step, who, **body).status_code == 409, step
    events = world.sql("SELECT action FROM hazard_events WHERE hazard_id = %s ORDER BY at", (hid,))
    assert [e["action"] for e in events] == ["reported", "assigned", "rectified", "closed"]  # refusals left no trace
    # the body is strict: nobody sets status or the assignee by sending them
    r = _act(world, hid, "close", "admin", note="x", status="open")
    assert (r.status_code, r.json()["field"]) == (422, "status")
    r = world.client.post("/api/v1/hazards", headers=world.h("uu1"),
                          json={"unit_id": "EL-1", "description": "a real problem", "assigned_to": t1})
    assert (r.status_code, r.json()["field"]) == (422, "assigned_to")
    r = world.client.post("/api/v1/hazards", headers=world.h("uu1"), json={"unit_id": "EL-1", "description": "    ab   "})
    assert (r.status_code, r.json()["field"]) == (422, "description")
    assert world.client.post("/api/v1/hazards", headers=world.h("uu1"),
                             json={"unit_id": "EL-2", "description": "not my lift"}).status_code == 404


def test_public_report_needs_no_login_and_is_validated(world: World) -> None:
    c = world.client
    r = c.post("/api/v1/public/units/EL-1/hazards", json={"description": "电梯门关不上 door will not close",
                                                         "contact": " 13800001111 "})
    assert r.status_code == 201, r.text
    receipt = r.json()
    assert set(receipt) == {"hazard_id", "unit_id", "status", "created_at"} and receipt["status"] == "open"
    row = world.sql("SELECT source, reported_by, contact, description FROM hazards WHERE hazard_id = %s",
                    (receipt["hazard_id"],))[0]
    assert row == {"source": "public", "reported_by": None, "contact": "13800001111",
                   "description": "电梯门关不上 door will not close"}
    detail = c.get(f"/api/v1/hazards/{receipt['hazard_id']}", headers=world.h("uu1")).json()
    assert [(e["action"], e["actor"]) for e in detail["events"]] == [("reported", None)]
    assert c.post("/api/v1/public/units/EL-1/hazards", json={"description": "no contact given"}).status_code == 201

    for body, field in (({"description": "abcd"}, "description"), ({"description": "  ab      "}, "description"),
                        ({"description": "x" * 1001}, "description"), ({}, "description"),
                        ({"description": "door noise", "contact": "1" * 101}, "contact"),
                        ({"description": "door noise", "status": "closed"}, "status"),
                        ({"description": "door noise", "source": "staff"}, "source")):
        r = c.post("/api/v1/public/units/EL-1/hazards", json=body)
        assert (r.status_code, r.json().get("field")) == (422, field), body
    r = c.post("/api/v1/public/units/NOPE/hazards", json={"description": "door noise"})
    assert r.status_code == 404
    assert world.sql("SELECT count(*) AS n FROM hazards")[0]["n"] == 2


def test_public_report_rate_limit_per_address_and_per_unit(world: World) -> None:
    c = world.client
    clock = FakeClock()
    c.app.state.public_limiter = PublicLimiter(clock=clock)
    codes = [c.post("/api/v1/public/units/EL-1/hazards", json={"description": f"report number {i}"}).status_code
             for i in range(PUBLIC_PER_IP_BURST + 2)]
    assert codes == [201] * PUBLIC_PER_IP_BURST + [429, 429]
    r = c.post("/api/v1/public/units/EL-2/hazards", json={"description": "another lift, same phone"})
    assert r.status_code == 429 and r.json()["error"] == "rate_limited" and r.headers["Retry-After"]
    assert world.sql("SELECT count(*) AS n FROM hazards")[0]["n"] == PUBLIC_PER_IP_BURST
    clock.t += 125  # one token back for this address
    assert c.post("/api/v1/public/units/EL-1/hazards", json={"description": "still broken"}).status_code == 201
    assert c.post("/api/v1/public/units/EL-1/hazards", json={"description": "still broken"}).status_code == 429

    # per unit: a crowd of different addresses at one lift; other lifts unaffected
    limiter = c.app.state.public_limiter = PublicLimiter(clock=clock)
    for i in range(PUBLIC_PER_UNIT_BURST):
        assert limiter.allow(f"10.0.0.{i}", "EL-2")
    r = c.post("/api/v1/public/units/EL-2/hazards", json={"description": "the 21st report of it"})
    assert r.status_code == 429
    assert c.post("/api/v1/public/units/EL-1/hazards", json={"description": "a different lift"}).status_code == 201


def test_limiter_memory_is_bounded() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(2, 10.0, max_keys=100, clock=clock)
    for i in range(1000):
        buckets.take(f"198.51.100.{i}")
    assert len(buckets) == 100
    limiter = PublicLimiter(clock=clock, max_keys=50)
    assert all(limiter.allow(f"203.0.113.{i}", f"U{i}") for i in range(500))
    assert len(limiter.per_ip) == 50 and len(limiter.per_unit) == 50
    # a refused request takes no token from either bucket
    tight = PublicLimiter(clock=clock)
    for _ in range(PUBLIC_PER_IP_BURST):
        assert tight.allow("192.0.2.1", "EL-9")
    assert not tight.allow("192.0.2.1", "EL-9")
    assert tight.per_unit.available("EL-9") == PUBLIC_PER_UNIT_BURST - PUBLIC_PER_IP_BURST
