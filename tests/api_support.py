"""A small world for API tests: two maintenance companies, two user units, their people and
units, built through the real code paths (registry import, users add, schedule)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from liftwatch import esign
from liftwatch.registry import COLUMN_NAMES, import_units
from liftwatch.settings import Settings
from maintenance.app import create_app
from maintenance.auth import add_user

PASSWORD = "correct horse battery"
UNITS_CSV = [
    # unit, kind, site, maintenance company, user unit
    ("EL-1", "traction", "S1", "MC1", "UU1"),
    ("EL-2", "traction", "S2", "MC2", "UU2"),
    ("ES-1", "escalator", "S1", "MC1", "UU1"),
]
PEOPLE = [
    # username, name, role, company
    ("admin", "Ada Admin", "admin", None),
    ("super", "Sun Supervisor", "supervisor", None),
    ("mgr1", "Ma Manager", "company_manager", "MC1"),
    ("tech1", "张伟", "technician", "MC1"),
    ("tech1b", "Li Second", "technician", "MC1"),
    ("tech2", "Wang Other", "technician", "MC2"),
    ("uu1", "刘安全", "user_unit", "UU1"),
    ("uu2", "Zhao Other", "user_unit", "UU2"),
]


def units_csv() -> str:
    lines = [",".join(COLUMN_NAMES)]
    for unit, kind, site, mc, uu in UNITS_CSV:
        row = dict.fromkeys(COLUMN_NAMES, "")
        row.update(unit_id=unit, kind=kind, site_id=site, site_name=f"Site {site}", city="上海", lat="31.2",
                   lon="121.4", maintenance_company_id=mc, maintenance_company_name=f"Maint {mc}",
                   user_unit_id=uu, user_unit_name=f"User {uu}", registration_code=f"REG-{unit}",
                   last_inspection_on="2026-03-01", next_inspection_due="2027-02-28")
        lines.append(",".join(row[c] for c in COLUMN_NAMES))
    return "\n".join(lines) + "\n"


@dataclass
class World:
    client: TestClient
    dsn: str
    person: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    keys: dict[str, tuple[int, Ed25519PrivateKey]] = field(default_factory=dict)

    def h(self, who: str) -> dict[str, str]:
        if who not in self.tokens:
            r = self.client.post("/api/v1/auth/token", data={"username": who, "password": PASSWORD})
            assert r.status_code == 200, r.text
            self.tokens[who] = r.json()["access_token"]
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def enrol(self, who: str) -> tuple[int, Ed25519PrivateKey]:
        if who not in self.keys:
            key = Ed25519PrivateKey.generate()
            pub = esign.b64url(esign.raw_public_key(key.public_key()))
            r = self.client.post("/api/v1/keys", headers=self.h(who), json={"public_key": pub, "password": PASSWORD})
            assert r.status_code == 201, r.text
            self.keys[who] = (r.json()["key_id"], key)
        return self.keys[who]

    def order(self, unit: str = "EL-1", kind: str = "half_monthly", who: str = "admin") -> dict:
        r = self.client.get("/api/v1/work-orders", params={"unit_id": unit, "kind": kind, "status": "open"},
                            headers=self.h(who))
        assert r.status_code == 200 and r.json(), r.text
        return r.json()[0]

    def fill(self, wo_id: int, who: str = "tech1", overrides: dict[str, dict] | None = None) -> None:
        detail = self.client.get(f"/api/v1/work-orders/{wo_id}", headers=self.h(who)).json()
        for item in detail["items"]:
            body = {"result": "ok"}
            m = item["measurement"]
            if m:
                lo, hi = m["min"], m["max"]
                body["measured_value"] = (lo + 1.5) if lo is not None else (hi - 1 if hi is not None else 2.0)
            body.update((overrides or {}).get(item["code"], {}))
            r = self.client.put(f"/api/v1/work-orders/{wo_id}/items/{item['code']}", headers=self.h(who), json=body)
            assert r.status_code == 200, (item["code"], r.text)

    def sign(self, wo_id: int, who: str, *, signed_at: str | None = None, password: str = PASSWORD,
             mutate=None) -> tuple[int, dict]:
        key_id, key = self.enrol(who)
        r = self.client.get(f"/api/v1/work-orders/{wo_id}/signing-payload", headers=self.h(who))
        assert r.status_code == 200, r.text
        payload = r.json()["payload"]
        payload["signed_at"] = signed_at or esign.timestamp(datetime.now(UTC))
        if mutate:
            mutate(payload)
        body = {"payload": payload, "signature": esign.b64url(esign.sign(key, payload)), "key_id": key_id,
                "password": password}
        r = self.client.post(f"/api/v1/work-orders/{wo_id}/signatures", headers=self.h(who), json=body)
        return r.status_code, r.json()

    def sql(self, query: str, params: tuple = ()) -> list[dict]:
        with psycopg.connect(self.dsn, autocommit=True, row_factory=dict_row) as c:
            cur = c.execute(query, params)
            return cur.fetchall() if cur.description else []


def build_world(db_url: str, **settings_overrides) -> tuple[World, TestClient]:
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        import_units(conn, io.StringIO(units_csv()))
        people = {}
        for username, name, role, company in PEOPLE:
            _, person_id = add_user(conn, username=username, name=name, role=role, company_id=company,
                                    password=PASSWORD, certificate_no="TQ-123456" if role == "technician" else None)
            people[username] = person_id
    settings = Settings(database_url=db_url, **settings_overrides)
    client = TestClient(create_app(settings))
    return World(client=client, dsn=db_url, person=people), client
