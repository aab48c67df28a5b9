"""Registry CSV import/export: one flat row per unit, as city equipment archives are kept.

Import upserts by unit_id (and the site and companies a row names), all in one transaction:
a bad row is reported with its line number and nothing of the file is applied.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TextIO

import psycopg
from psycopg.rows import tuple_row

from liftwatch.csvfile import Column, choice, decimal_in, ident, int_in, iso_date, read_rows, text
from liftwatch.csvfile import columns_help as _columns_help
from liftwatch.errors import ImportFileError
from liftwatch.vocab import UNIT_KINDS

UNIT_STATUSES = ("in_service", "out_of_service", "suspended", "decommissioned")


COLUMNS: tuple[Column, ...] = (
    Column("unit_id", ident, True, "unit id used in MQTT topics (e.g. the 20-digit equipment code)"),
    Column("registration_code", text(), False, "使用登记证编号; empty = not registered"),
    Column("kind", choice(UNIT_KINDS), True, " | ".join(UNIT_KINDS)),
    Column("site_id", ident, True, "site code; the site is created or updated from the next columns"),
    Column("site_name", text(), True, "site (building) name"),
    Column("address", text(), False, "street address"),
    Column("district", text(), False, "district (区)"),
    Column("city", text(), False, "city"),
    Column("lat", decimal_in(-90, 90), False, "latitude, WGS84 degrees"),
    Column("lon", decimal_in(-180, 180), False, "longitude, WGS84 degrees"),
    Column("maintenance_company_id", ident, False, "maintenance unit (维保单位) code"),
    Column("maintenance_company_name", text(), False, "its name (needed the first time the code appears)"),
    Column("user_unit_id", ident, False, "user unit (使用单位) code"),
    Column("user_unit_name", text(), False, "its name (needed the first time the code appears)"),
    Column("model", text(), False, "manufacturer's model"),
    Column("installed_on", iso_date, False, "YYYY-MM-DD"),
    Column("floors", int_in(1, 300), False, "number of landings served"),
    Column("rated_speed_mps", decimal_in(0.01, 999), False, "rated speed, m/s"),
    Column("rated_load_kg", int_in(1, 100000), False, "rated load, kg"),
    Column("last_inspection_on", iso_date, False, "last periodic inspection, YYYY-MM-DD"),
    Column("next_inspection_due", iso_date, False, "inspection certificate valid until, YYYY-MM-DD"),
    Column("status", choice(UNIT_STATUSES, "in_service"), False, "in_service (default) | out_of_service | suspended | decommissioned"),
)
COLUMN_NAMES = tuple(c.name for c in COLUMNS)


def _parse_rows(stream: TextIO) -> list[tuple[int, dict[str, Any]]]:
    rows = read_rows(stream, COLUMNS, command="liftwatch units import")
    seen: dict[str, int] = {}
    for line, row in rows:
        if row["unit_id"] in seen:
            raise ImportFileError(f"unit_id {row['unit_id']} already on line {seen[row['unit_id']]}",
                                  line=line, column="unit_id")
        seen[row["unit_id"]] = line
        if (row["last_inspection_on"] and row["next_inspection_due"]
                and row["next_inspection_due"] < row["last_inspection_on"]):
            raise ImportFileError("next_inspection_due is before last_inspection_on", line=line,
                                  column="next_inspection_due")
    return rows


_UPSERT_COMPANY = """
INSERT INTO companies (company_id, name, kind) VALUES (%(id)s, COALESCE(%(name)s, %(id)s), %(kind)s)
ON CONFLICT (company_id) DO UPDATE
   SET name = COALESCE(%(name)s, companies.name), updated_at = now()
 WHERE %(name)s IS NOT NULL AND companies.name IS DISTINCT FROM %(name)s
RETURNING kind"""

_UPSERT_SITE = """
INSERT INTO sites (site_id, name, address, district, city, lat, lon)
VALUES (%(site_id)s, %(site_name)s, COALESCE(%(address)s, ''), COALESCE(%(district)s, ''),
        COALESCE(%(city)s, ''), %(lat)s, %(lon)s)
ON CONFLICT (site_id) DO UPDATE SET
    name = EXCLUDED.name, address = EXCLUDED.address, district = EXCLUDED.district,
    city = EXCLUDED.city, lat = EXCLUDED.lat, lon = EXCLUDED.lon, updated_at = now()
WHERE (sites.name, sites.address, sites.district, sites.city, sites.lat, sites.lon)
      IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.address, EXCLUDED.district, EXCLUDED.city, EXCLUDED.lat, EXCLUDED.lon)"""

_UNIT_FIELDS = ("unit_id", "registration_code", "site_id", "kind", "maintenance_company_id", "user_unit_id",
                "model", "installed_on", "floors", "rated_speed_mps", "rated_load_kg", "last_inspection_on",
                "next_inspection_due", "status")
# built from the constant field list above, never from input
_UPSERT_UNIT = (
    f"INSERT INTO units ({', '.join(_UNIT_FIELDS)}) VALUES ({', '.join(f'%({f})s' for f in _UNIT_FIELDS)})\n"  # noqa: S608
    "ON CONFLICT (unit_id) DO UPDATE SET "
    + ", ".join(f"{f} = EXCLUDED.{f}" for f in _UNIT_FIELDS[1:])
    + ", updated_at = now()\nWHERE (" + ", ".join(f"units.{f}" for f in _UNIT_FIELDS[1:])
    + ") IS DISTINCT FROM (" + ", ".join(f"EXCLUDED.{f}" for f in _UNIT_FIELDS[1:]) + ")\n"
    "RETURNING (xmax = 0) AS inserted"
)


@dataclass(frozen=True)
class ImportResult:
    rows: int
    inserted: int
    updated: int
    unchanged: int


def import_units(conn: psycopg.Connection, stream: TextIO) -> ImportResult:
    """Upsert every row of a units CSV in one transaction, or nothing at all."""
    rows = _parse_rows(stream)
    inserted = updated = 0
    with conn.transaction():
        with conn.cursor(row_factory=tuple_row) as cur:
            for line, row in rows:
                try:
                    for kind, id_key, name_key in (("maintenance", "maintenance_company_id", "maintenance_company_name"),
                                                   ("user_unit", "user_unit_id", "user_unit_name")):
                        if row[id_key]:
                            cur.execute(_UPSERT_COMPANY, {"id": row[id_key], "name": row[name_key], "kind": kind})
                            got = cur.fetchone()
                            if got is None:
                                got = cur.execute("SELECT kind FROM companies WHERE company_id = %s",
                                                  (row[id_key],)).fetchone()
                            if got[0] != kind:
                                raise ImportFileError(
                                    f"{id_key} {row[id_key]} is registered as a {got[0]} company, not {kind}", line=line)
                    cur.execute(_UPSERT_SITE, row)
                    cur.execute(_UPSERT_UNIT, row)
                    result = cur.fetchone()
                except psycopg.errors.UniqueViolation as exc:
                    raise ImportFileError(f"conflicts with an existing record: {exc.diag.message_detail}", line=line) from None
                except psycopg.errors.IntegrityError as exc:
                    raise ImportFileError(f"rejected by the database: {exc.diag.message_primary}", line=line) from None
                if result is not None:
                    inserted += bool(result[0])
                    updated += not result[0]
    return ImportResult(len(rows), inserted, updated, len(rows) - inserted - updated)


_EXPORT = """
SELECT u.unit_id, u.registration_code, u.kind, s.site_id, s.name, NULLIF(s.address, ''), NULLIF(s.district, ''),
       NULLIF(s.city, ''), s.lat, s.lon, u.maintenance_company_id, mc.name, u.user_unit_id, uu.name, u.model,
       u.installed_on, u.floors, u.rated_speed_mps, u.rated_load_kg, u.last_inspection_on,
       u.next_inspection_due, u.status
  FROM units u JOIN sites s USING (site_id)
  LEFT JOIN companies mc ON mc.company_id = u.maintenance_company_id
  LEFT JOIN companies uu ON uu.company_id = u.user_unit_id
 ORDER BY u.unit_id"""


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def export_units(conn: psycopg.Connection, out: TextIO) -> int:
    """Write every unit as a CSV that `import_units` reads back unchanged; return the row count."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMN_NAMES)
    n = 0
    for row in conn.cursor(row_factory=tuple_row).execute(_EXPORT):
        writer.writerow([_cell(v) for v in row])
        n += 1
    return n


def columns_help() -> str:
    """The CSV columns, for --help and the README."""
    return _columns_help(COLUMNS)


def iter_unit_ids(conn: psycopg.Connection) -> Iterable[str]:
    """Every registered unit id (the ingestor's registry cache)."""
    return (r[0] for r in conn.cursor(row_factory=tuple_row).execute("SELECT unit_id FROM units"))
