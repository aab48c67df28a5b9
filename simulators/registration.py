"""Put the simulated fleet into the registry (if missing), and learn where each unit's seq is.

Inserts with ON CONFLICT DO NOTHING: a unit someone already registered (or edited) is left
alone, so running the simulator twice is harmless. Bulk statements (executemany runs in
pipeline mode), because 10,000 units one round trip at a time would take a minute.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from simulators.fleet import CITY, Fleet

_COMPANY = "INSERT INTO companies (company_id, name, kind) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"
_SITE = ("INSERT INTO sites (site_id, name, address, district, city, lat, lon) VALUES (%s, %s, %s, %s, %s, %s, %s) "
         "ON CONFLICT DO NOTHING")
_UNIT = ("INSERT INTO units (unit_id, registration_code, site_id, kind, maintenance_company_id, user_unit_id, model, "
         "installed_on, floors, rated_speed_mps, rated_load_kg, last_inspection_on, next_inspection_due) "
         "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING")
# where the ingestor (or an earlier backfill) has got to: a device never reuses a seq
_NEXT_SEQ = ("SELECT unit_id, GREATEST(next_seq, COALESCE((SELECT max(a) + 1 FROM unnest(ahead) a), 0)) "
             "FROM unit_ingest_state WHERE unit_id = ANY(%s)")


@dataclass(frozen=True)
class Registered:
    companies: int
    sites: int
    units: int  # newly inserted


def register(conn: psycopg.Connection, fleet: Fleet) -> Registered:
    """Insert what is missing, in one transaction."""
    with conn.transaction(), conn.cursor() as cur:
        before = _counts(cur)
        cur.executemany(_COMPANY, [(c.company_id, c.name, c.kind) for c in fleet.companies])
        cur.executemany(_SITE, [(s.site_id, s.name, s.address, s.district, CITY, s.lat, s.lon) for s in fleet.sites])
        cur.executemany(_UNIT, [
            (u.unit_id, u.registration_code, u.site.site_id, u.kind, u.site.maintenance_company_id,
             u.site.user_unit_id, u.model, u.installed_on, u.floors, u.rated_speed_mps, u.rated_load_kg,
             u.last_inspection_on, u.next_inspection_due)
            for u in fleet.units])
        after = _counts(cur)
    return Registered(*(a - b for a, b in zip(after, before, strict=True)))


def _counts(cur: psycopg.Cursor) -> tuple[int, int, int]:
    row = cur.execute("SELECT (SELECT count(*) FROM companies), (SELECT count(*) FROM sites), "
                      "(SELECT count(*) FROM units)").fetchone()
    assert row is not None
    return row[0], row[1], row[2]


_LAST_COUNTERS = """
SELECT u.unit_id, t.run_count, t.run_hours FROM unnest(%s::text[]) AS u(unit_id)
CROSS JOIN LATERAL (SELECT run_count, run_hours FROM telemetry
                     WHERE unit_id = u.unit_id AND run_count IS NOT NULL ORDER BY time DESC LIMIT 1) t"""


def last_counters(conn: psycopg.Connection, unit_ids: list[str]) -> dict[str, tuple[int, float]]:
    """Per unit, the lifetime trip counter and running hours of its last stored sample: a new run
    continues them instead of starting over (which would count thousands of trips in a minute)."""
    return {u: (int(c), float(h or 0.0)) for u, c, h in conn.execute(_LAST_COUNTERS, (unit_ids,)).fetchall()}


def next_seqs(conn: psycopg.Connection, unit_ids: list[str]) -> dict[str, int]:
    """Per unit, the first seq not yet used according to the ingestor's bookkeeping."""
    return dict(conn.execute(_NEXT_SEQ, (unit_ids,)).fetchall())
