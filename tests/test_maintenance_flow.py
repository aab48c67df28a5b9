"""Work orders end to end through the real API and database: sign, countersign, verify
independently, and every way a signature must be refused."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial

import psycopg
import pytest
import rfc8785
from api_support import PASSWORD, World, build_world
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from psycopg.rows import dict_row

from liftwatch import esign
from maintenance import ledger, workorders
from maintenance.deps import User
from maintenance.errors import ApiError


@pytest.fixture()
def world(db_url: str) -> Iterator[World]:
    w, client = build_world(db_url)
    with client:
        r = client.post("/api/v1/maintenance/schedule", headers=w.h("admin"))
        assert r.status_code == 200, r.text
        yield w


def _b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def independent_verify(doc: dict) -> None:
    """What a regulator would do with the /record document: plain cryptography + rfc8785."""
    sha = hashlib.sha256(rfc8785.dumps(doc["record"])).hexdigest()
    assert sha == doc["record_sha256"]
    for sig in doc["signatures"]:
        assert sig["payload"]["record_sha256"] == sha
        Ed25519PublicKey.from_public_bytes(_b64d(sig["public_key"])).verify(
            _b64d(sig["signature"]), rfc8785.dumps(sig["payload"]))


def _signed_order(world: World) -> int:
    wo = world.order()
    assert world.client.post(f"/api/v1/work-orders/{wo['work_order_id']}/check-in", headers=world.h("tech1"),
                             json={"lat": 31.2, "lon": 121.4}).status_code == 200
    world.fill(wo["work_order_id"])
    status, body = world.sign(wo["work_order_id"], "tech1")
    assert status == 201, body
    return wo["work_order_id"]


def test_schedule_creates_four_plans_per_traction_unit_and_is_idempotent(world: World) -> None:
    assert world.sql("SELECT count(*) AS n FROM maintenance_plans")[0]["n"] == 12  # EL-1, EL-2 and the escalator
    orders = world.sql("SELECT unit_id, kind, due_on - created_at::date AS days FROM work_orders ORDER BY 1, 3")
    assert [(o["unit_id"], o["days"]) for o in orders if o["unit_id"] == "EL-1"] == [
        ("EL-1", 15), ("EL-1", 90), ("EL-1", 180), ("EL-1", 365)]
    r = world.client.post("/api/v1/maintenance/schedule", headers=world.h("admin")).json()
    assert r["orders_created"] == 0 and r["plans_created"] == 0 and r["units_without_checklist"] == 0
    items = world.sql("SELECT kind, count(*) AS n FROM work_orders JOIN work_order_items USING (work_order_id) "
                      "WHERE unit_id = 'EL-1' GROUP BY kind")
    assert {i["kind"]: i["n"] for i in items} == {"half_monthly": 31, "quarterly": 44, "semi_annual": 59, "annual": 76}


def test_full_flow_sign_countersign_verify(world: World) -> None:
    wo_id = _signed_order(world)
    assert world.client.get(f"/api/v1/work-orders/{wo_id}", headers=world.h("uu1")).json()["status"] == "signed"
    status, body = world.sign(wo_id, "uu1")
    assert status == 201, body
    assert body["status"] == "closed" and body["ledger_seq"] == 2
    doc = world.client.get(f"/api/v1/work-orders/{wo_id}/record", headers=world.h("uu1")).json()
    assert doc["status"] == "closed"
    assert [s["meaning"] for s in doc["signatures"]] == ["performed", "confirmed"]
    assert [s["payload"]["name"] for s in doc["signatures"]] == ["张伟", "刘安全"]
    assert len(doc["record"]["items"]) == 31
    assert doc["record"]["technician"]["certificate_no"] == "TQ-123456"
    independent_verify(doc)
    # the next half-monthly order counts 15 days from this visit
    world.client.post("/api/v1/maintenance/schedule", headers=world.h("admin"))
    nxt = world.order()
    assert nxt["due_on"] == (datetime.now(UTC).date() + timedelta(days=15)).isoformat()
    r = subprocess.run([sys.executable, "-m", "liftwatch", "ledger", "verify"], capture_output=True, text=True,
                       env={"LIFTWATCH_DATABASE_URL": world.dsn, "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0 and "2 entries" in r.stdout, r.stdout + r.stderr


def test_independent_verifier_notices_a_changed_record(world: World) -> None:
    wo_id = _signed_order(world)
    doc = world.client.get(f"/api/v1/work-orders/{wo_id}/record", headers=world.h("tech1")).json()
    doc["record"]["items"][0]["result"] = "adjusted"
    with pytest.raises(AssertionError):
        independent_verify(doc)
    doc["record"]["items"][0]["result"] = "ok"
    doc["signatures"][0]["payload"]["name"] = "Someone Else"
    with pytest.raises(InvalidSignature):
        independent_verify(doc)


def test_cannot_sign_with_an_item_missing_or_a_pass_below_limit(world: World) -> None:
    wo = world.order()
    wo_id = wo["work_order_id"]
    world.client.post(f"/api/v1/work-orders/{wo_id}/check-in", headers=world.h("tech1"), json={})
    r = world.client.put(f"/api/v1/work-orders/{wo_id}/items/A-1-29", headers=world.h("tech1"),
                         json={"result": "ok", "measured_value": 6.5})
    assert r.status_code == 422 and r.json()["error"] == "out_of_limit" and "defect" in r.json()["detail"]
    r = world.client.put(f"/api/v1/work-orders/{wo_id}/items/A-1-29", headers=world.h("tech1"), json={"result": "ok"})
    assert r.status_code == 422 and r.json()["field"] == "measured_value"
    r = world.client.put(f"/api/v1/work-orders/{wo_id}/items/A-1-02", headers=world.h("tech1"),
                         json={"result": "not_applicable"})
    assert r.status_code == 422 and r.json()["field"] == "note"
    r = world.client.get(f"/api/v1/work-orders/{wo_id}/signing-payload", headers=world.h("tech1"))
    assert r.status_code == 409 and r.json()["error"] == "items_missing"
    # a defect below the limit is accepted, and opens a hazard when signed
    world.fill(wo_id, overrides={"A-1-29": {"result": "defect", "measured_value": 6.5, "note": "hook worn"}})
    status, body = world.sign(wo_id, "tech1")
    assert status == 201, body
    hz = world.sql("SELECT source, item_code, description FROM hazards")
    assert len(hz) == 1 and hz[0]["source"] == "defect" and hz[0]["item_code"] == "A-1-29"
    assert "6.5 mm" in hz[0]["description"]


@pytest.mark.parametrize("case", ["wrong_password", "clock_skew", "revoked_key", "foreign_key", "bad_signature",
                                  "other_name", "other_meaning", "extra_field", "not_my_order"])
def test_signature_rejections(world: World, case: str) -> None:
    wo = world.order()
    wo_id = wo["work_order_id"]
    world.client.post(f"/api/v1/work-orders/{wo_id}/check-in", headers=world.h("tech1"), json={})
    world.fill(wo_id)
    who, kwargs = "tech1", {}
    if case == "wrong_password":
        kwargs["password"] = "not my password"
    elif case == "clock_skew":
        kwargs["signed_at"] = esign.timestamp(datetime.now(UTC) - timedelta(minutes=5, seconds=5))
    elif case == "revoked_key":
        key_id, _ = world.enrol("tech1")
        assert world.client.post(f"/api/v1/keys/{key_id}/revoke", headers=world.h("tech1")).status_code == 200
    elif case == "foreign_key":  # tech1 signs with tech1b's key id
        kid, key = world.enrol("tech1b")
        world.keys["tech1"] = (kid, key)
    elif case == "bad_signature":  # a key id of tech1, but signed by a key that is not enrolled
        kid, _ = world.enrol("tech1")
        world.keys["tech1"] = (kid, Ed25519PrivateKey.generate())
    elif case == "other_name":
        kwargs["mutate"] = lambda p: p.update(name="Someone Else")
    elif case == "other_meaning":
        kwargs["mutate"] = lambda p: p.update(meaning="confirmed")
    elif case == "extra_field":
        kwargs["mutate"] = lambda p: p.update(status="closed")
    if case == "not_my_order":  # another technician of the same company signs tech1's visit
        assert world.client.get(f"/api/v1/work-orders/{wo_id}/signing-payload", headers=world.h("tech1b")).status_code == 403
        sha = world.client.get(f"/api/v1/work-orders/{wo_id}/signing-payload", headers=world.h(who)).json()["record_sha256"]
        key_id, key = world.enrol("tech1b")
        payload = esign.signing_payload(record_sha=sha, signer_id=world.person["tech1b"], name="Li Second",
                                        role="technician", meaning="performed", signed_at=esign.timestamp())
        r = world.client.post(f"/api/v1/work-orders/{wo_id}/signatures", headers=world.h("tech1b"), json={
            "payload": payload, "signature": esign.b64url(esign.sign(key, payload)), "key_id": key_id, "password": PASSWORD})
        status, body = r.status_code, r.json()
    else:
        status, body = world.sign(wo_id, who, **kwargs)
    expected = {"wrong_password": (401, "password_mismatch"), "clock_skew": (422, "clock_skew"),
                "revoked_key": (422, "key_revoked"), "foreign_key": (422, "unknown_key"),
                "bad_signature": (422, "bad_signature"), "other_name": (422, "bad_payload"),
                "other_meaning": (422, "bad_payload"), "extra_field": (422, "bad_payload"),
                "not_my_order": (403, "forbidden")}[case]
    assert (status, body["error"]) == expected, body
    assert world.sql("SELECT status FROM work_orders WHERE work_order_id = %s", (wo_id,))[0]["status"] == "in_progress"
    assert world.sql("SELECT count(*) AS n FROM ledger")[0]["n"] == 0


def test_clock_seam_replays_a_past_visit_the_api_cannot_backdate(world: World) -> None:
    """check_in(at=) and sign(now=) let a replay of the past (bench/analytics_eval.py) record a
    visit at its own times through the same code; without the seam the same signature is refused."""
    key_id, key = world.enrol("tech1")
    wo_id = world.order()["work_order_id"]
    visit = datetime.now(UTC).replace(microsecond=0) - timedelta(days=20)
    with psycopg.connect(world.dsn, autocommit=True, row_factory=dict_row) as conn:
        row = conn.execute("SELECT u.user_id, p.person_id, u.username, p.name, p.role, p.company_id FROM users u "
                           "JOIN people p USING (person_id) WHERE u.username = 'tech1'").fetchone()
        tech = User(**row)
        workorders.check_in(conn, tech, wo_id, 31.2, 121.4, at=visit)
        world.fill(wo_id)
        payload = workorders.signing_payload(conn, tech, wo_id)["payload"]
        payload["signed_at"] = esign.timestamp(visit + timedelta(hours=1))
        sig = esign.b64url(esign.sign(key, payload))
        sign = partial(workorders.sign, conn, tech, wo_id, payload=payload, signature_b64=sig, key_id=key_id,
                       password=PASSWORD, skew=timedelta(minutes=5))
        with pytest.raises(ApiError) as refused:
            sign()
        assert refused.value.code == "clock_skew"
        assert sign(now=visit + timedelta(hours=1, seconds=30))["status"] == "signed"
        order = conn.execute("SELECT checked_in_at, signed_at, record FROM work_orders WHERE work_order_id = %s",
                             (wo_id,)).fetchone()
        assert (order["checked_in_at"], order["signed_at"]) == (visit, visit + timedelta(hours=1))
        assert order["record"]["checked_in_at"] == esign.timestamp(visit)
        assert ledger.verify(conn).ok


def test_replayed_and_copied_signatures_are_refused(world: World) -> None:
    first = world.order("EL-1", "half_monthly")
    second = world.order("EL-1", "quarterly")
    for wo in (first, second):
        world.client.post(f"/api/v1/work-orders/{wo['work_order_id']}/check-in", headers=world.h("tech1"), json={})
        world.fill(wo["work_order_id"])
    key_id, key = world.enrol("tech1")
    payload = world.client.get(f"/api/v1/work-orders/{first['work_order_id']}/signing-payload",
                               headers=world.h("tech1")).json()["payload"]
    payload["signed_at"] = esign.timestamp()
    body = {"payload": payload, "signature": esign.b64url(esign.sign(key, payload)), "key_id": key_id, "password": PASSWORD}
    r = world.client.post(f"/api/v1/work-orders/{first['work_order_id']}/signatures", headers=world.h("tech1"), json=body)
    assert r.status_code == 201, r.text
    # the same signature again on the same order, and copied onto another order
    r = world.client.post(f"/api/v1/work-orders/{first['work_order_id']}/signatures", headers=world.h("tech1"), json=body)
    assert r.status_code == 409 and r.json()["error"] == "replayed"
    r = world.client.post(f"/api/v1/work-orders/{second['work_order_id']}/signatures", headers=world.h("tech1"), json=body)
    assert r.status_code == 409 and r.json()["error"] == "replayed"
    # a fresh signature over the first order's payload, sent to the second order
    payload["signed_at"] = esign.timestamp()
    body["signature"] = esign.b64url(esign.sign(key, payload))
    r = world.client.post(f"/api/v1/work-orders/{second['work_order_id']}/signatures", headers=world.h("tech1"), json=body)
    assert r.status_code == 409 and r.json()["error"] == "record_mismatch"


def test_signed_order_is_immutable_and_correction_references_it(world: World) -> None:
    wo_id = _signed_order(world)
    r = world.client.put(f"/api/v1/work-orders/{wo_id}/items/A-1-01", headers=world.h("tech1"), json={"result": "adjusted"})
    assert r.status_code == 409
    for sql in ("UPDATE work_orders SET due_on = due_on + 1 WHERE work_order_id = %s",
                "UPDATE work_order_items SET note = 'x' WHERE work_order_id = %s",
                "DELETE FROM work_orders WHERE work_order_id = %s",
                "UPDATE signatures SET meaning = 'confirmed' WHERE work_order_id = %s",
                "DELETE FROM ledger WHERE seq >= %s"):
        with pytest.raises(Exception, match="immutable|cannot be|not allowed"):
            world.sql(sql, (wo_id,))
    r = world.client.post("/api/v1/work-orders", headers=world.h("mgr1"),
                          json={"unit_id": "EL-1", "kind": "half_monthly", "due_on": "2026-12-01", "corrects_id": wo_id})
    assert r.status_code == 201 and r.json()["corrects_id"] == wo_id


def test_mass_assignment_is_refused(world: World) -> None:
    r = world.client.post("/api/v1/work-orders", headers=world.h("mgr1"),
                          json={"unit_id": "EL-1", "kind": "annual", "due_on": "2027-01-01", "status": "closed"})
    assert r.status_code == 422 and r.json()["field"] == "status"
    wo = world.order()
    r = world.client.post(f"/api/v1/work-orders/{wo['work_order_id']}/check-in", headers=world.h("tech1"),
                          json={"technician_id": world.person["tech1b"]})
    assert r.status_code == 422


def _tamper_and_verify(world: World, sql: str, params: tuple) -> tuple[int, str]:
    with psycopg.connect(world.dsn, autocommit=True) as c:
        c.execute("SET session_replication_role = replica")  # disables the immutability triggers
        assert c.execute(sql, params).rowcount == 1
    r = subprocess.run([sys.executable, "-m", "liftwatch", "ledger", "verify"], capture_output=True, text=True,
                       env={"LIFTWATCH_DATABASE_URL": world.dsn, "PATH": "/usr/bin:/bin"})
    return r.returncode, r.stderr


@pytest.mark.parametrize(("sql", "seq"), [
    ("UPDATE work_orders SET record = jsonb_set(record, '{items,3,note}', '\"edited\"') WHERE work_order_id = %s", 1),
    ("UPDATE ledger SET entry = jsonb_set(entry, '{payload,name}', '\"X\"') WHERE seq = 2 AND %s > 0", 2),
    ("UPDATE ledger SET prev_hash = repeat('a', 64) WHERE seq = 2 AND %s > 0", 2),
    ("UPDATE signatures SET signature = set_byte(signature, 0, (get_byte(signature, 0) + 1) %% 256) "
     "WHERE meaning = 'confirmed' AND work_order_id = %s", 2),
    ("DELETE FROM ledger WHERE seq = 1 AND %s > 0", 2),
])
def test_ledger_verify_names_the_tampered_entry(world: World, sql: str, seq: int) -> None:
    wo_id = _signed_order(world)
    assert world.sign(wo_id, "uu1")[0] == 201
    code, err = _tamper_and_verify(world, sql, (wo_id,))
    assert code == 1 and f"at entry {seq}" in err, err


def test_concurrent_signing_keeps_one_linear_chain(db_url: str) -> None:
    w, client = build_world(db_url)
    with client:
        client.post("/api/v1/maintenance/schedule", headers=w.h("admin"))
        # 20 orders ready to sign: five corrections per kind give enough in-progress orders
        ids = [o["work_order_id"] for o in client.get("/api/v1/work-orders", params={"unit_id": "EL-1"},
                                                      headers=w.h("tech1")).json()]
        while len(ids) < 20:
            r = client.post("/api/v1/work-orders", headers=w.h("mgr1"),
                            json={"unit_id": "EL-1", "kind": "half_monthly", "due_on": "2026-12-31"})
            ids.append(r.json()["work_order_id"])
        for wo_id in ids:
            client.post(f"/api/v1/work-orders/{wo_id}/check-in", headers=w.h("tech1"), json={})
            w.fill(wo_id)
        w.enrol("tech1")
        results: list[int] = []
        threads = [threading.Thread(target=lambda i=i: results.append(w.sign(i, "tech1")[0])) for i in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results.count(201) == 20, results
    chain = w.sql("SELECT seq, prev_hash, entry_hash FROM ledger ORDER BY seq")
    assert [c["seq"] for c in chain] == list(range(1, 21))
    assert all(chain[i]["prev_hash"] == chain[i - 1]["entry_hash"] for i in range(1, 20))
    assert len({c["prev_hash"] for c in chain}) == 20  # no fork: every hash is used as prev exactly once


OTHER_KINDS = [  # unit, kind, checklist, items per plan kind (accumulating), a measured item and a value outside it
    ("ES-1", "escalator", "tsg-t5002-2017-escalator", (33, 38, 50, 63), "D-1-21", 4.5),
    ("HY-1", "hydraulic", "tsg-t5002-2017-hydraulic", (30, 43, 52, 66), "B-1-26", 6.0),
    ("DW-1", "dumbwaiter", "tsg-t5002-2017-dumbwaiter", (20, 28, 38, 52), "C-1-17", 4.0),
]


@pytest.mark.parametrize(("unit", "kind", "checklist", "counts", "code", "outside"), OTHER_KINDS)
def test_every_unit_kind_has_its_checklist_signs_countersigns_and_verifies(
        world: World, unit: str, kind: str, checklist: str, counts: tuple[int, ...], code: str, outside: float) -> None:
    import io

    from liftwatch.registry import COLUMN_NAMES, import_units

    if unit != "ES-1":  # the world has an escalator; add a hydraulic lift or a dumbwaiter of the same companies
        row = dict.fromkeys(COLUMN_NAMES, "")
        row.update(unit_id=unit, kind=kind, site_id="S1", site_name="Site S1", maintenance_company_id="MC1",
                   user_unit_id="UU1", registration_code=f"REG-{unit}")
        with psycopg.connect(world.dsn) as c:
            import_units(c, io.StringIO(",".join(COLUMN_NAMES) + "\n" + ",".join(row[k] for k in COLUMN_NAMES) + "\n"))
        assert world.client.post("/api/v1/maintenance/schedule", headers=world.h("admin")).json()["orders_created"] == 4
    items = world.sql("SELECT w.kind, w.checklist_id, count(*) AS n FROM work_orders w JOIN work_order_items "
                      "USING (work_order_id) WHERE w.unit_id = %s GROUP BY 1, 2", (unit,))
    assert {i["kind"]: (i["checklist_id"], i["n"]) for i in items} == {
        k: (checklist, n) for k, n in zip(("half_monthly", "quarterly", "semi_annual", "annual"), counts, strict=True)}
    wo_id = world.order(unit)["work_order_id"]
    assert world.client.post(f"/api/v1/work-orders/{wo_id}/check-in", headers=world.h("tech1"),
                             json={"lat": 31.2, "lon": 121.4}).status_code == 200
    r = world.client.put(f"/api/v1/work-orders/{wo_id}/items/{code}", headers=world.h("tech1"),
                         json={"result": "ok", "measured_value": outside})
    assert r.status_code == 422 and r.json()["error"] == "out_of_limit", r.text
    world.fill(wo_id)
    assert world.sign(wo_id, "tech1")[0] == 201
    assert world.sign(wo_id, "uu1")[0] == 201
    doc = world.client.get(f"/api/v1/work-orders/{wo_id}/record", headers=world.h("uu1")).json()
    assert doc["status"] == "closed" and doc["record"]["checklist"] == {"id": checklist, "version": 1}
    assert doc["record"]["unit"]["kind"] == kind and len(doc["record"]["items"]) == counts[0]
    independent_verify(doc)
    r = subprocess.run([sys.executable, "-m", "liftwatch", "ledger", "verify"], capture_output=True, text=True,
                       env={"LIFTWATCH_DATABASE_URL": world.dsn, "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0 and "2 entries" in r.stdout, r.stdout + r.stderr


def test_a_longer_visit_moves_the_waiting_shorter_order(world: World) -> None:
    """A quarterly visit covers the half-monthly items: the waiting half-monthly order moves to 15
    days after it, so the KPI and the pages never show it as late (the overdue rule reads the same clock)."""
    world.sql("UPDATE work_orders SET due_on = current_date - 3 WHERE unit_id = 'EL-1' AND kind = 'half_monthly'")
    wo = world.order("EL-1", "quarterly")
    world.client.post(f"/api/v1/work-orders/{wo['work_order_id']}/check-in", headers=world.h("tech1"), json={})
    world.fill(wo["work_order_id"])
    assert world.sign(wo["work_order_id"], "tech1")[0] == 201
    r = world.client.post("/api/v1/maintenance/schedule", headers=world.h("admin")).json()
    assert r["orders_created"] == 1  # the next quarterly order
    half = world.order("EL-1", "half_monthly")
    assert half["due_on"] == (datetime.now(UTC).date() + timedelta(days=15)).isoformat()
