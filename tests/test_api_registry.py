"""Registry API through the real app and database: CRUD, filters, paging, validation errors that
name the field, 404/409, and a unit's status page built from real telemetry, alerts and orders."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from api_support import World, build_world
from fastapi.testclient import TestClient

from liftwatch.settings import Settings
from maintenance.app import create_app


@pytest.fixture()
def world(db_url: str) -> Iterator[World]:
    w, client = build_world(db_url)
    with client:
        yield w


def _unit(unit_id: str, **kw) -> dict:
    return {"unit_id": unit_id, "site_id": "S1", "kind": "traction", "maintenance_company_id": "MC1",
            "user_unit_id": "UU1", **kw}


def _ids(r, key: str) -> list:
    assert r.status_code == 200, r.text
    return [row[key] for row in r.json()]


def _err(r, status: int, field: str | None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert body.get("field") == field, body
    return body


# --- companies and sites --------------------------------------------------------------------

def test_company_crud_duplicate_and_validation(world: World) -> None:
    c, admin = world.client, world.h("admin")
    r = c.post("/api/v1/companies", headers=admin, json={"company_id": "MC3", "name": "Third Lifts", "kind": "maintenance",
                                                         "emergency_phone": "96333"})
    assert r.status_code == 201, r.text
    assert r.json()["emergency_phone"] == "96333" and r.json()["licence_no"] is None
    assert c.get("/api/v1/companies/MC3", headers=admin).json()["name"] == "Third Lifts"
    r = c.patch("/api/v1/companies/MC3", headers=admin, json={"phone": "021-1234", "licence_no": "TS3310"})
    assert r.status_code == 200 and r.json()["phone"] == "021-1234" and r.json()["name"] == "Third Lifts"
    assert r.json()["updated_at"] > r.json()["created_at"]
    assert c.patch("/api/v1/companies/MC3", headers=admin, json={"phone": None}).json()["phone"] is None

    dup = _err(c.post("/api/v1/companies", headers=admin, json={"company_id": "MC3", "name": "Again", "kind": "maintenance"}),
               409, "company_id")
    assert dup["error"] == "duplicate" and dup["detail"] == "a company with this company_id already exists"
    _err(c.post("/api/v1/companies", headers=admin, json={"company_id": "-MC4", "name": "x", "kind": "maintenance"}),
         422, "company_id")
    _err(c.post("/api/v1/companies", headers=admin, json={"company_id": "MC4", "name": "x", "kind": "bank"}),
         422, "kind")
    _err(c.post("/api/v1/companies", headers=admin, json={"company_id": "MC4", "name": "", "kind": "maintenance"}),
         422, "name")
    _err(c.patch("/api/v1/companies/MC3", headers=admin, json={"name": None}), 422, "name")
    _err(c.patch("/api/v1/companies/MC3", headers=admin, json={"kind": "user_unit"}), 422, "kind")
    _err(c.patch("/api/v1/companies/NOPE", headers=admin, json={"phone": "1"}), 404, None)
    _err(c.get("/api/v1/companies/NOPE", headers=admin), 404, None)

    r = c.get("/api/v1/companies", headers=admin, params={"kind": "maintenance"})
    assert _ids(r, "company_id") == ["MC1", "MC2", "MC3"] and r.headers["X-Total-Count"] == "3"
    # a user unit sees its own company and the one maintaining its lifts, nothing else
    assert _ids(c.get("/api/v1/companies", headers=world.h("uu1")), "company_id") == ["MC1", "UU1"]
    assert _ids(c.get("/api/v1/companies", headers=world.h("tech1")), "company_id") == ["MC1", "UU1"]


def test_site_crud_ranges_and_district_filter(world: World) -> None:
    c, admin = world.client, world.h("admin")
    site = {"site_id": "S3", "name": "Tower 3", "district": "徐汇区", "city": "上海", "lat": 31.19, "lon": 121.43}
    r = c.post("/api/v1/sites", headers=admin, json=site)
    assert r.status_code == 201 and r.json()["district"] == "徐汇区" and r.json()["address"] == ""
    _err(c.post("/api/v1/sites", headers=admin, json=site), 409, "site_id")
    _err(c.post("/api/v1/sites", headers=admin, json={**site, "site_id": "S4", "lat": 90.5}), 422, "lat")
    _err(c.post("/api/v1/sites", headers=admin, json={**site, "site_id": "S4", "lon": -180.5}), 422, "lon")
    _err(c.post("/api/v1/sites", headers=admin, json={**site, "site_id": "S 4"}), 422, "site_id")
    _err(c.patch("/api/v1/sites/S3", headers=admin, json={"lat": -91}), 422, "lat")
    r = c.patch("/api/v1/sites/S1", headers=admin, json={"district": "徐汇区", "address": "1 Road"})
    assert r.status_code == 200 and r.json()["address"] == "1 Road" and r.json()["name"] == "Site S1"
    assert _ids(c.get("/api/v1/sites", headers=admin, params={"district": "徐汇区"}), "site_id") == ["S1", "S3"]
    # S3 has no unit: only admin and supervisor see it; uu1 sees the site of its lifts
    assert _ids(c.get("/api/v1/sites", headers=world.h("uu1")), "site_id") == ["S1"]
    _err(c.get("/api/v1/sites/S3", headers=world.h("mgr1")), 404, None)
    assert c.get("/api/v1/sites/S3", headers=world.h("super")).status_code == 200


# --- units ----------------------------------------------------------------------------------

def test_unit_list_filters_and_pagination(world: World) -> None:
    c, admin = world.client, world.h("admin")
    c.post("/api/v1/sites", headers=admin, json={"site_id": "S3", "name": "Tower 3", "district": "浦东新区"})
    for i in range(7):
        r = c.post("/api/v1/units", headers=admin, json=_unit(
            f"EL-1{i}", site_id="S3" if i % 2 else "S1", kind="hydraulic" if i == 3 else "traction",
            status="suspended" if i == 4 else "in_service", next_inspection_due=f"2027-0{i + 1}-15"))
        assert r.status_code == 201, r.text
    everything = ["EL-1", "EL-10", "EL-11", "EL-12", "EL-13", "EL-14", "EL-15", "EL-16", "EL-2", "ES-1"]
    r = c.get("/api/v1/units", headers=admin)
    assert _ids(r, "unit_id") == everything and r.headers["X-Total-Count"] == "10"
    pages = [c.get("/api/v1/units", headers=admin, params={"limit": 4, "offset": o}) for o in (0, 4, 8, 12)]
    assert [u for p in pages for u in _ids(p, "unit_id")] == everything
    assert [p.headers["X-Total-Count"] for p in pages] == ["10"] * 4 and pages[3].json() == []

    def q(**params) -> list[str]:
        return _ids(c.get("/api/v1/units", headers=admin, params=params), "unit_id")

    assert q(site_id="S3") == ["EL-11", "EL-13", "EL-15"]
    assert q(district="浦东新区") == ["EL-11", "EL-13", "EL-15"]
    assert q(kind="hydraulic") == ["EL-13"]
    assert q(kind="escalator") == ["ES-1"]
    assert q(status="suspended") == ["EL-14"]
    assert q(maintenance_company_id="MC2") == ["EL-2"]
    assert q(user_unit_id="UU2") == ["EL-2"]
    assert q(inspection_due_before="2027-03-01") == ["EL-1", "EL-10", "EL-11", "EL-2", "ES-1"]
    assert q(site_id="S3", kind="traction", limit=1, offset=1) == ["EL-15"]
    # scope applies underneath every filter
    assert _ids(c.get("/api/v1/units", headers=world.h("tech1"), params={"maintenance_company_id": "MC2"}),
                "unit_id") == []
    r = c.get("/api/v1/units", headers=world.h("uu2"))
    assert _ids(r, "unit_id") == ["EL-2"] and r.headers["X-Total-Count"] == "1"
    for params, field in (({"limit": 0}, "limit"), ({"limit": 1001}, "limit"), ({"offset": -1}, "offset"),
                          ({"kind": "lift"}, "kind"), ({"status": "broken"}, "status"),
                          ({"inspection_due_before": "2027-02-30"}, "inspection_due_before")):
        _err(c.get("/api/v1/units", headers=admin, params=params), 422, field)


def test_unit_create_update_and_validation_name_the_field(world: World) -> None:
    c, admin = world.client, world.h("admin")
    r = c.post("/api/v1/units", headers=admin, json=_unit(
        "31101234567890123456", registration_code="梯11沪A1234", floors=18, rated_speed_mps=1.75, rated_load_kg=1000,
        installed_on="2015-06-01", last_inspection_on="2026-05-01", next_inspection_due="2027-04-30", model="GeN2"))
    assert r.status_code == 201, r.text
    u = r.json()
    assert (u["site_name"], u["floors"], u["rated_speed_mps"], u["status"]) == ("Site S1", 18, 1.75, "in_service")
    cases = [
        (_unit("-bad"), 422, "unit_id"),
        (_unit("x" * 65), 422, "unit_id"),
        (_unit("EL-9", kind="lift"), 422, "kind"),
        (_unit("EL-9", status="broken"), 422, "status"),
        (_unit("EL-9", installed_on="2026-02-30"), 422, "installed_on"),
        (_unit("EL-9", floors=0), 422, "floors"),
        (_unit("EL-9", rated_speed_mps=-1), 422, "rated_speed_mps"),
        (_unit("EL-9", last_inspection_on="2026-05-01", next_inspection_due="2026-04-01"), 422, "next_inspection_due"),
        (_unit("EL-9", site_id="NOPE"), 422, "site_id"),
        (_unit("EL-9", maintenance_company_id="NOPE"), 422, "maintenance_company_id"),
        (_unit("EL-9", maintenance_company_id="UU1"), 422, "maintenance_company_id"),
        (_unit("EL-9", user_unit_id="MC2"), 422, "user_unit_id"),
        (_unit("EL-9", manufacturer_id="MC2"), 422, "manufacturer_id"),
        (_unit("EL-1"), 409, "unit_id"),
        (_unit("EL-9", registration_code="REG-EL-2"), 409, "registration_code"),
        ({k: v for k, v in _unit("EL-9").items() if k != "site_id"}, 422, "site_id"),
    ]
    for body, status, field in cases:
        _err(c.post("/api/v1/units", headers=admin, json=body), status, field)
    assert world.sql("SELECT count(*) AS n FROM units")[0]["n"] == 4

    r = c.patch("/api/v1/units/EL-1", headers=admin, json={"status": "out_of_service", "floors": 20, "model": None})
    assert r.status_code == 200 and (r.json()["status"], r.json()["floors"], r.json()["model"]) == ("out_of_service", 20, None)
    assert r.json()["registration_code"] == "REG-EL-1"  # untouched
    r = c.patch("/api/v1/units/EL-1", headers=admin, json={"maintenance_company_id": "MC2", "site_id": "S2"})
    assert r.status_code == 200 and r.json()["site_name"] == "Site S2"
    assert c.get("/api/v1/units/EL-1", headers=world.h("tech1")).status_code == 404  # moved out of MC1's scope
    assert c.get("/api/v1/units/EL-1", headers=world.h("tech2")).status_code == 200
    for body, status, field in [({"next_inspection_due": "2025-01-01"}, 422, "next_inspection_due"),
                                ({"site_id": "NOPE"}, 422, "site_id"), ({"site_id": None}, 422, "site_id"),
                                ({"status": None}, 422, "status"), ({"user_unit_id": "MC1"}, 422, "user_unit_id"),
                                ({"registration_code": "REG-EL-2"}, 409, "registration_code"),
                                ({"unit_id": "EL-99"}, 422, "unit_id")]:
        _err(c.patch("/api/v1/units/EL-1", headers=admin, json=body), status, field)
    _err(c.patch("/api/v1/units/NOPE", headers=admin, json={"floors": 3}), 404, None)
    assert c.patch("/api/v1/units/EL-1", headers=admin, json={}).json()["floors"] == 20


# --- people ---------------------------------------------------------------------------------

def test_people_admin_and_company_manager(world: World) -> None:
    c, admin, mgr = world.client, world.h("admin"), world.h("mgr1")
    r = c.post("/api/v1/people", headers=mgr, json={"name": "Zhou New", "role": "technician",
                                                    "certificate_no": "TQ-777", "phone": "139"})
    assert r.status_code == 201, r.text
    new = r.json()
    assert (new["company_id"], new["role"], new["active"], new["username"]) == ("MC1", "technician", True, None)
    _err(c.post("/api/v1/people", headers=mgr, json={"name": "Boss", "role": "admin"}), 403, "role")
    _err(c.post("/api/v1/people", headers=mgr, json={"name": "Boss", "role": "company_manager"}), 403, "role")
    _err(c.post("/api/v1/people", headers=mgr, json={"name": "Away", "role": "technician", "company_id": "MC2"}),
         403, "company_id")
    _err(c.post("/api/v1/people", headers=mgr, json={"name": "", "role": "technician"}), 422, "name")
    _err(c.post("/api/v1/people", headers=mgr, json={"name": "X", "role": "wizard"}), 422, "role")

    r = c.patch(f"/api/v1/people/{new['person_id']}", headers=mgr, json={"phone": "138", "active": False})
    assert r.status_code == 200 and (r.json()["phone"], r.json()["active"]) == ("138", False)
    _err(c.patch(f"/api/v1/people/{new['person_id']}", headers=mgr, json={"role": "company_manager"}), 403, "role")
    _err(c.patch(f"/api/v1/people/{world.person['mgr1']}", headers=mgr, json={"phone": "1"}), 403, None)
    _err(c.patch(f"/api/v1/people/{world.person['tech2']}", headers=mgr, json={"phone": "1"}), 404, None)
    _err(c.patch(f"/api/v1/people/{new['person_id']}", headers=mgr, json={"company_id": "MC2"}), 422, "company_id")
    _err(c.patch(f"/api/v1/people/{new['person_id']}", headers=mgr, json={"active": None}), 422, "active")

    # admin: any role, but the company must fit the role
    r = c.post("/api/v1/people", headers=admin, json={"name": "Wu Safety", "role": "user_unit", "company_id": "UU2"})
    assert r.status_code == 201 and r.json()["company_id"] == "UU2"
    assert c.post("/api/v1/people", headers=admin, json={"name": "Reg", "role": "supervisor"}).status_code == 201
    _err(c.post("/api/v1/people", headers=admin, json={"name": "T", "role": "technician"}), 422, "company_id")
    _err(c.post("/api/v1/people", headers=admin, json={"name": "T", "role": "technician", "company_id": "UU1"}),
         422, "company_id")
    _err(c.post("/api/v1/people", headers=admin, json={"name": "T", "role": "technician", "company_id": "NOPE"}),
         422, "company_id")
    _err(c.patch(f"/api/v1/people/{new['person_id']}", headers=admin, json={"role": "user_unit"}), 422, "company_id")
    r = c.patch(f"/api/v1/people/{new['person_id']}", headers=admin, json={"role": "company_manager"})
    assert r.status_code == 200 and r.json()["role"] == "company_manager"

    # who sees whom
    mc1 = sorted([world.person[u] for u in ("mgr1", "tech1", "tech1b")] + [new["person_id"]])
    assert _ids(c.get("/api/v1/people", headers=mgr), "person_id") == mc1
    assert _ids(c.get("/api/v1/people", headers=world.h("tech1")), "person_id") == [world.person["tech1"]]
    assert c.get(f"/api/v1/people/{world.person['tech1']}", headers=world.h("tech1")).json()["username"] == "tech1"
    _err(c.get(f"/api/v1/people/{world.person['tech1b']}", headers=world.h("tech1")), 404, None)
    r = c.get("/api/v1/people", headers=world.h("super"), params={"role": "technician", "company_id": "MC1"})
    assert _ids(r, "person_id") == sorted([world.person["tech1"], world.person["tech1b"]])
    assert r.headers["X-Total-Count"] == "2"
    assert _ids(c.get("/api/v1/people", headers=admin, params={"active": False}), "person_id") == [new["person_id"]]
    assert len(_ids(c.get("/api/v1/people", headers=admin, params={"limit": 3, "offset": 9}), "person_id")) == 2


# --- unit status ----------------------------------------------------------------------------

def _telemetry(world: World, unit: str, seq: int, at: datetime, **fields) -> None:
    cols = ["time", "unit_id", "seq", *fields]
    world.sql(f"INSERT INTO telemetry ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",  # noqa: S608
              (at, unit, seq, *fields.values()))


def test_unit_status_brings_telemetry_alerts_maintenance_inspection_and_hazards(world: World) -> None:
    c, admin = world.client, world.h("admin")
    assert c.post("/api/v1/maintenance/schedule", headers=admin).status_code == 200
    now = datetime.now(UTC)
    _telemetry(world, "EL-1", 1, now - timedelta(hours=1), floor=3, mode="normal")
    _telemetry(world, "EL-1", 2, now - timedelta(minutes=2), floor=7, mode="inspection", motor_temp_c=41.5)
    _telemetry(world, "EL-2", 1, now - timedelta(minutes=20), floor=1)
    world.sql("""INSERT INTO alerts (unit_id, kind, severity, reason, source)
                 VALUES ('EL-1', 'frequent_faults', 'warning', '9 door faults in 24 h', 'analytics'),
                        ('EL-1', 'entrapment', 'critical', 'passenger trapped', 'ingest')""")
    world.sql("""INSERT INTO alerts (unit_id, kind, severity, reason, source, status, resolved_at)
                 VALUES ('EL-1', 'offline', 'warning', 'gone', 'analytics', 'resolved', now())""")
    # one visit done and countersigned; the quarterly order is overdue
    wo = world.order("EL-1", "half_monthly")
    assert c.post(f"/api/v1/work-orders/{wo['work_order_id']}/check-in", headers=world.h("tech1"), json={}).status_code == 200
    world.fill(wo["work_order_id"])
    assert world.sign(wo["work_order_id"], "tech1")[0] == 201
    assert world.sign(wo["work_order_id"], "uu1")[0] == 201
    c.post("/api/v1/maintenance/schedule", headers=admin)
    world.sql("UPDATE work_orders SET due_on = current_date - 3 WHERE unit_id = 'EL-1' AND kind = 'quarterly'")
    for text in ("handrail loose", "light out in car"):
        assert c.post("/api/v1/hazards", headers=world.h("uu1"), json={"unit_id": "EL-1", "description": text}).status_code == 201
    today = date.fromisoformat(world.sql("SELECT current_date::text AS d")[0]["d"])
    world.sql("UPDATE units SET next_inspection_due = %s WHERE unit_id = 'EL-1'", (today + timedelta(days=30),))

    r = c.get("/api/v1/units/EL-1/status", headers=world.h("uu1"))
    assert r.status_code == 200, r.text
    st = r.json()
    assert st["online"] is True and st["last_sample"]["seq"] == 2 and st["last_sample"]["floor"] == 7
    assert st["last_sample"]["mode"] == "inspection" and st["last_sample"]["motor_temp_c"] == 41.5
    assert [(a["kind"], a["severity"]) for a in st["open_alerts"]] == [("entrapment", "critical"),
                                                                       ("frequent_faults", "warning")]
    m = {k["kind"]: k for k in st["maintenance"]}
    assert list(m) == ["half_monthly", "quarterly", "semi_annual", "annual"]
    assert m["half_monthly"]["last_work_order_id"] == wo["work_order_id"] and m["half_monthly"]["last_status"] == "closed"
    assert m["half_monthly"]["last_closed_at"] is not None and m["half_monthly"]["next_work_order_id"] != wo["work_order_id"]
    assert m["half_monthly"]["days_until_due"] == 15 and m["half_monthly"]["overdue"] is False
    assert m["quarterly"]["overdue"] is True and m["quarterly"]["days_until_due"] == -3
    assert m["quarterly"]["last_work_order_id"] is None and m["annual"]["next_status"] == "open"
    assert st["inspection"] == {"last_inspection_on": "2026-03-01", "next_inspection_due": (today + timedelta(days=30)).isoformat(),
                                "state": "due_soon", "days_left": 30}
    assert st["open_hazards"] == 2

    world.sql("UPDATE units SET next_inspection_due = %s, last_inspection_on = NULL WHERE unit_id = 'EL-2'",
              (today - timedelta(days=1),))
    st2 = c.get("/api/v1/units/EL-2/status", headers=world.h("super")).json()
    assert st2["online"] is False and st2["last_sample"]["seq"] == 1 and st2["open_alerts"] == []
    assert st2["inspection"]["state"] == "overdue" and st2["open_hazards"] == 0
    assert all(k["last_work_order_id"] is None for k in st2["maintenance"])
    # an escalator: its own checklist (Annex D), so its four plans; no telemetry; inspection still reported
    es = c.get("/api/v1/units/ES-1/status", headers=world.h("tech1")).json()
    assert (es["online"], es["last_seen_at"], es["last_sample"]) == (False, None, None)
    assert [(m["kind"], m["last_done_source"], m["next_status"]) for m in es["maintenance"]] == [
        (k, None, "open") for k in ("half_monthly", "quarterly", "semi_annual", "annual")]
    assert es["inspection"]["state"] == "valid"
    # the ingestor's bookkeeping counts as a sign of life too (events advance it as well)
    world.sql("INSERT INTO unit_ingest_state (unit_id, next_seq, last_time) VALUES ('ES-1', 5, now())")
    assert c.get("/api/v1/units/ES-1/status", headers=world.h("tech1")).json()["online"] is True
    _err(c.get("/api/v1/units/EL-2/status", headers=world.h("tech1")), 404, None)
    _err(c.get("/api/v1/units/NOPE/status", headers=admin), 404, None)


def test_online_follows_the_offline_setting_everywhere(db_url: str) -> None:
    """Unit status, the KPI tile, the map and the public page use LIFTWATCH_OFFLINE_AFTER_MIN, the
    cutoff of the analytics offline alert (they once had a fixed 15 minutes of their own)."""
    world, _ = build_world(db_url)
    seen = datetime.now(UTC) - timedelta(minutes=5)
    _telemetry(world, "EL-1", 1, seen, floor=3, mode="normal")
    world.sql("INSERT INTO unit_ingest_state (unit_id, next_seq, last_time) VALUES ('EL-1', 2, %s)", (seen,))
    for minutes, online in ((15, True), (3, False)):
        world.client = TestClient(create_app(Settings(database_url=db_url, offline_after_min=minutes)))
        with world.client as c:
            h = world.h("super")
            assert c.get("/api/v1/units/EL-1/status", headers=h).json()["online"] is online
            assert c.get("/api/v1/kpis", headers=h).json()["online"]["value"] == int(online)
            assert {p["unit_id"]: p["online"] for p in c.get("/api/v1/map", headers=h).json()}["EL-1"] is online
            assert c.get("/api/v1/public/units/EL-1").json()["live"] == ("normal" if online else "offline")
