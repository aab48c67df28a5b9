"""Tamper suite: 1,000 random single changes, deletions and reorderings of signed records,
signatures, keys and ledger rows; `ledger verify` must flag every one, and nothing when
the data is untouched. Each change is made with the immutability triggers disabled (as an
attacker with database access would) inside a transaction that is rolled back afterwards."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from api_support import build_world
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from maintenance.ledger import verify

CASES = 1000


@pytest.fixture(scope="module")
def signed_world(server_dsn: str, template_dsn: str) -> Iterator[str]:
    """Six orders signed and countersigned, and two signed only: 14 ledger entries."""
    import uuid

    name = f"tamper_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_dsn, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}" TEMPLATE liftwatch_template')
    dsn = server_dsn.rsplit("/", 1)[0] + f"/{name}"
    w, client = build_world(dsn)
    with client:
        client.post("/api/v1/maintenance/schedule", headers=w.h("admin"))
        ids = [o["work_order_id"] for o in client.get("/api/v1/work-orders", params={"unit_id": "EL-1"},
                                                      headers=w.h("tech1")).json()]
        while len(ids) < 8:
            ids.append(client.post("/api/v1/work-orders", headers=w.h("mgr1"), json={
                "unit_id": "EL-1", "kind": "half_monthly", "due_on": "2026-12-31"}).json()["work_order_id"])
        for i, wo in enumerate(ids):
            client.post(f"/api/v1/work-orders/{wo}/check-in", headers=w.h("tech1"), json={"lat": 31.2, "lon": 121.4})
            w.fill(wo, overrides={"A-1-01": {"result": "adjusted", "note": f"order {i}"}})
            assert w.sign(wo, "tech1")[0] == 201
            if i < 6:
                assert w.sign(wo, "uu1")[0] == 201
    yield dsn
    with psycopg.connect(server_dsn, autocommit=True) as c:
        c.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _leaf_paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    if isinstance(doc, dict):
        return [p for k, v in doc.items() for p in _leaf_paths(v, (*prefix, k))]
    if isinstance(doc, list):
        return [p for i, v in enumerate(doc) for p in _leaf_paths(v, (*prefix, i))]
    return [prefix]


def _mutate_value(v: Any, rnd: random.Random) -> Any:
    if isinstance(v, bool):
        return not v
    if isinstance(v, int | float):
        return v + rnd.choice([1, -1, 0.5])
    if isinstance(v, str):
        if v:
            i = rnd.randrange(len(v))
            return v[:i] + chr((ord(v[i]) + 1) % 0x7F or 0x41) + v[i + 1:]
        return "x"
    return "x"  # null


def _set(doc: Any, path: tuple, value: Any) -> None:
    for p in path[:-1]:
        doc = doc[p]
    doc[path[-1]] = value


def _get(doc: Any, path: tuple) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def _flip_byte(b: bytes, rnd: random.Random) -> bytes:
    i = rnd.randrange(len(b))
    return b[:i] + bytes([(b[i] + rnd.randrange(1, 256)) % 256]) + b[i + 1:]


def _flip_hex(h: str, rnd: random.Random) -> str:
    i = rnd.randrange(len(h))
    return h[:i] + rnd.choice([c for c in "0123456789abcdef" if c != h[i]]) + h[i + 1:]


def _tamper(cur: psycopg.Cursor, rnd: random.Random) -> str:
    """Apply one random change; return a description for the failure message."""
    kind = rnd.choice(["record", "entry", "hash", "signature", "sig_payload", "key", "delete_ledger",
                       "delete_signature", "reorder", "record_sha"])
    if kind in ("record", "record_sha"):
        wo = cur.execute("SELECT work_order_id, record, record_sha256 FROM work_orders WHERE record IS NOT NULL "
                         "ORDER BY random() LIMIT 1").fetchone()
        if kind == "record_sha":
            cur.execute("UPDATE work_orders SET record_sha256 = %s WHERE work_order_id = %s",
                        (_flip_hex(wo["record_sha256"], rnd), wo["work_order_id"]))
            return f"record_sha256 of order {wo['work_order_id']}"
        rec = wo["record"]
        path = rnd.choice(_leaf_paths(rec))
        _set(rec, path, _mutate_value(_get(rec, path), rnd))
        cur.execute("UPDATE work_orders SET record = %s WHERE work_order_id = %s", (Jsonb(rec), wo["work_order_id"]))
        return f"record {wo['work_order_id']} at {path}"
    if kind == "entry":
        row = cur.execute("SELECT seq, entry FROM ledger ORDER BY random() LIMIT 1").fetchone()
        entry = row["entry"]
        path = rnd.choice(_leaf_paths(entry))
        _set(entry, path, _mutate_value(_get(entry, path), rnd))
        cur.execute("UPDATE ledger SET entry = %s WHERE seq = %s", (Jsonb(entry), row["seq"]))
        return f"ledger entry {row['seq']} at {path}"
    if kind == "hash":
        col = rnd.choice(["prev_hash", "entry_hash"])
        row = cur.execute(f"SELECT seq, {col} AS h FROM ledger ORDER BY random() LIMIT 1").fetchone()  # noqa: S608
        cur.execute(f"UPDATE ledger SET {col} = %s WHERE seq = %s", (_flip_hex(row["h"], rnd), row["seq"]))  # noqa: S608
        return f"ledger {col} of {row['seq']}"
    if kind == "signature":
        row = cur.execute("SELECT signature_id, signature FROM signatures ORDER BY random() LIMIT 1").fetchone()
        cur.execute("UPDATE signatures SET signature = %s WHERE signature_id = %s",
                    (_flip_byte(bytes(row["signature"]), rnd), row["signature_id"]))
        return f"signature bytes {row['signature_id']}"
    if kind == "sig_payload":
        row = cur.execute("SELECT signature_id, payload FROM signatures ORDER BY random() LIMIT 1").fetchone()
        p = row["payload"]
        key = rnd.choice(list(p))
        p[key] = _mutate_value(p[key], rnd)
        cur.execute("UPDATE signatures SET payload = %s WHERE signature_id = %s", (Jsonb(p), row["signature_id"]))
        return f"signature payload {row['signature_id']}.{key}"
    if kind == "key":
        row = cur.execute("SELECT key_id, public_key FROM signing_keys ORDER BY random() LIMIT 1").fetchone()
        cur.execute("UPDATE signing_keys SET public_key = %s WHERE key_id = %s",
                    (_flip_byte(bytes(row["public_key"]), rnd), row["key_id"]))
        return f"public key {row['key_id']}"
    if kind == "delete_ledger":
        seq = cur.execute("SELECT seq FROM ledger ORDER BY random() LIMIT 1").fetchone()["seq"]
        cur.execute("DELETE FROM ledger WHERE seq = %s", (seq,))
        return f"deleted ledger {seq}"
    if kind == "delete_signature":
        sid = cur.execute("SELECT signature_id FROM signatures ORDER BY random() LIMIT 1").fetchone()["signature_id"]
        cur.execute("DELETE FROM signatures WHERE signature_id = %s", (sid,))
        return f"deleted signature {sid}"
    a, b = rnd.sample([r["seq"] for r in cur.execute("SELECT seq FROM ledger").fetchall()], 2)
    cur.execute("UPDATE ledger SET seq = 999999 WHERE seq = %s", (a,))
    cur.execute("UPDATE ledger SET seq = %s WHERE seq = %s", (a, b))
    cur.execute("UPDATE ledger SET seq = %s WHERE seq = 999999", (b,))
    return f"swapped ledger {a} and {b}"


def test_untouched_ledger_verifies(signed_world: str) -> None:
    with psycopg.connect(signed_world) as conn:
        report = verify(conn)
    assert report.ok and report.entries == 14, report.problems


def test_every_random_tampering_is_flagged(signed_world: str) -> None:
    rnd = random.Random(20261129)
    missed = []
    with psycopg.connect(signed_world, row_factory=dict_row) as conn:
        conn.execute("SET session_replication_role = replica")  # what an attacker with DB access would do
        conn.commit()
        for _ in range(CASES):
            with conn.cursor() as cur:
                what = _tamper(cur, rnd)
            report = verify(conn)
            if report.ok:
                missed.append(what)
            conn.rollback()
    assert not missed, f"{len(missed)} of {CASES} tamperings not flagged, e.g. {missed[:5]}"


@pytest.mark.parametrize("table", ["ledger", "signatures", "audit_log", "work_orders", "work_order_items"])
def test_records_refuse_truncate(signed_world: str, table: str) -> None:
    """Row triggers do not see TRUNCATE; each record table has a statement trigger that does."""
    with psycopg.connect(signed_world) as conn:
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="TRUNCATE"):
            conn.execute(f"TRUNCATE {table} CASCADE")  # noqa: S608 (a fixed list of names)
        conn.rollback()
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0  # noqa: S608
