"""Importing an existing fleet's maintenance history: `liftwatch maintenance import FILE.csv`.

A fleet that moves to Liftwatch arrives with years of paper records or a previous system's
history. One CSV row per (unit, plan kind) says when that plan's items were last done, by
whom, and where the original record lives. Rows become `legacy_maintenance` records:

- not e-signed, never in the ledger, never a work order; every page that shows one says it
  was imported;
- append-only (a trigger refuses UPDATE and DELETE), like every record here;
- what due dates and the overdue rule count from, from the moment they are imported (the
  view `maintenance_plan_clock` takes the later of the last signed visit and the last
  imported one), so the overdue list is right on the first day of go-live.

The file is applied all or nothing: the first problem names its line and column and nothing
is written. Re-importing the same file changes nothing; a row that contradicts what an
earlier import stored for the same unit, kind and date is refused (imported records are
never edited: a correction is a new record with its own date).

A date without a time counts from the end of that day in the fleet's time zone
(`LIFTWATCH_DISPLAY_TZ`): a visit on 1 March makes the half-monthly plan due on 16 March,
overdue from 17 March 00:00, the same rule the work orders' due dates follow. An RFC 3339
time counts from that instant.
"""

from __future__ import annotations

import getpass
import hashlib
import io
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

from liftwatch.csvfile import Column, choice, columns_help, ident, read_rows, text
from liftwatch.errors import ImportFileError
from liftwatch.timestamps import parse_rfc3339
from liftwatch.vocab import PLAN_KINDS

COMMAND = "liftwatch maintenance import"


@dataclass(frozen=True)
class VisitTime:
    """What the `last_visit` cell said: a local date, or an exact instant."""

    on: date | None
    at: datetime | None


def _last_visit(v: str) -> VisitTime | None:
    v = v.strip()
    if not v:
        return None
    if len(v) == 10:
        try:
            return VisitTime(date.fromisoformat(v), None)
        except ValueError:
            raise ValueError(f"{v!r} is not a date (YYYY-MM-DD)") from None
    try:
        return VisitTime(None, parse_rfc3339(v))
    except ValueError as exc:
        raise ValueError(f"{v!r} is neither a date (YYYY-MM-DD) nor an RFC 3339 time ({exc})") from None


COLUMNS: tuple[Column, ...] = (
    Column("unit_id", ident, True, "the unit, as in the registry"),
    Column("plan_kind", choice(PLAN_KINDS), True, " | ".join(PLAN_KINDS)),
    Column("last_visit", _last_visit, True,
           "date of the last visit of this kind, YYYY-MM-DD (counts from the end of that day, local time), "
           "or an RFC 3339 time such as 2026-11-20T10:30:00+08:00"),
    Column("maintenance_company_id", ident, True, "the company that did it; must be the unit's maintenance company"),
    Column("technician_name", text(100), True, "who did it, as written in the record"),
    Column("technician_cert_no", text(64), False, "their certificate number (特种设备作业人员证)"),
    Column("archive_ref", text(200), False, "where the paper record is kept (archive, box, folder)"),
    Column("source_system", text(100), False, "the previous system's name"),
    Column("source_record_id", text(200), False, "the record's id in that system"),
    Column("note", text(2000), False, "anything else worth keeping"),
)


def import_help() -> str:
    return (
        "Import the last maintenance visits an existing fleet brings with it (paper archives or a\n"
        "previous system), one row per unit and plan kind. They are stored as imported legacy\n"
        "records: not e-signed, never in the ledger, shown as imported wherever they appear. Due\n"
        "dates and overdue alerts count from them at once.\n\n"
        "The file is applied all or nothing: the first problem is named with its line and column\n"
        "and nothing is written. Re-importing a file changes nothing. Every row needs\n"
        "archive_ref or source_record_id (where the original lives).\n\n\b\nColumns:\n" + columns_help(COLUMNS)
    )


@dataclass(frozen=True)
class LegacyImportResult:
    rows: int
    inserted: int
    unchanged: int
    plans_created: int
    orders_created: int
    orders_redated: int
    sha256: str


_UNITS = """SELECT unit_id, installed_on, maintenance_company_id FROM units WHERE unit_id = ANY(%s)"""
_EXISTING = """SELECT unit_id, kind, visit_on, counts_from, company_id, technician_name, technician_cert_no,
       archive_ref, source_system, source_record_id, note
  FROM legacy_maintenance WHERE unit_id = ANY(%s)"""
_INSERT = """INSERT INTO legacy_maintenance (unit_id, kind, visit_on, counts_from, company_id, technician_name,
       technician_cert_no, archive_ref, source_system, source_record_id, note, import_sha256, imported_by)
VALUES (%(unit_id)s, %(plan_kind)s, %(visit_on)s, %(counts_from)s, %(maintenance_company_id)s, %(technician_name)s,
        %(technician_cert_no)s, %(archive_ref)s, %(source_system)s, %(source_record_id)s, %(note)s, %(sha)s, %(actor)s)"""
_COMPARED = ("counts_from", "company_id", "technician_name", "technician_cert_no", "archive_ref", "source_system",
             "source_record_id", "note")


def _resolve(row: dict[str, Any], tz: ZoneInfo) -> None:
    """visit_on (the local date) and counts_from (the instant the plan's clock restarts)."""
    vt: VisitTime = row["last_visit"]
    if vt.at is not None:
        row["visit_on"] = vt.at.astimezone(tz).date()
        row["counts_from"] = vt.at
    else:
        assert vt.on is not None
        row["visit_on"] = vt.on
        row["counts_from"] = datetime.combine(vt.on + timedelta(days=1), time(0), tz)
    row["note"] = row["note"] or ""


def _check_row(line: int, row: dict[str, Any], unit: dict[str, Any] | None, *, now: datetime, tz: ZoneInfo) -> None:
    if unit is None:
        raise ImportFileError(f"unit_id {row['unit_id']} is not in the registry (import it with "
                              "`liftwatch units import` first)", line=line, column="unit_id")
    if row["maintenance_company_id"] != unit["maintenance_company_id"]:
        raise ImportFileError(
            f"maintenance_company_id {row['maintenance_company_id']} does not maintain unit {row['unit_id']} "
            f"(the registry says {unit['maintenance_company_id'] or 'no company'})", line=line,
            column="maintenance_company_id")
    vt: VisitTime = row["last_visit"]
    today = now.astimezone(tz).date()
    if (vt.at is not None and vt.at > now) or (vt.on is not None and vt.on > today):
        raise ImportFileError(f"last_visit {row['visit_on']} is in the future (today is {today})", line=line,
                              column="last_visit")
    if unit["installed_on"] is not None and row["visit_on"] < unit["installed_on"]:
        raise ImportFileError(f"last_visit {row['visit_on']} is before the unit was installed "
                              f"({unit['installed_on']})", line=line, column="last_visit")
    if not (row["archive_ref"] or row["source_record_id"]):
        raise ImportFileError("archive_ref or source_record_id is required: where the original record lives",
                              line=line, column="archive_ref")


def import_legacy(conn: psycopg.Connection, data: bytes, *, tz: ZoneInfo, now: datetime | None = None,
                  actor: str | None = None) -> LegacyImportResult:
    """Validate the whole file, then store it in one transaction (with plans and re-dated orders)."""
    try:
        stream = io.StringIO(data.decode("utf-8-sig"), newline="")
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"the file is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    sha = hashlib.sha256(data).hexdigest()
    rows = read_rows(stream, COLUMNS, command=COMMAND)
    actor = actor or f"cli:{getpass.getuser()}"
    seen: dict[tuple[str, str], int] = {}
    for line, row in rows:
        key = (row["unit_id"], row["plan_kind"])
        if key in seen:
            raise ImportFileError(f"unit {key[0]} has a {key[1]} row already on line {seen[key]} "
                                  "(one row per unit and plan kind)", line=line, column="plan_kind")
        seen[key] = line
        _resolve(row, tz)
    # the work-order machinery, only when writing (keeps `liftwatch --help` light)
    from maintenance.schedule import redate_pending, schedule

    unit_ids = sorted({r["unit_id"] for _, r in rows})
    inserted = unchanged = 0
    with conn.transaction():
        now = now or conn.execute("SELECT now() AS now").fetchone()["now"]
        units = {u["unit_id"]: u for u in conn.execute(_UNITS, (unit_ids,)).fetchall()}
        existing = {(e["unit_id"], e["kind"], e["visit_on"]): e for e in conn.execute(_EXISTING, (unit_ids,)).fetchall()}
        for line, row in rows:
            _check_row(line, row, units.get(row["unit_id"]), now=now, tz=tz)
            old = existing.get((row["unit_id"], row["plan_kind"], row["visit_on"]))
            if old is not None:
                new = {**row, "company_id": row["maintenance_company_id"]}
                differs = [f for f in _COMPARED if old[f] != new[f]]
                if differs:
                    raise ImportFileError(
                        f"unit {row['unit_id']} already has an imported {row['plan_kind']} record of {row['visit_on']} "
                        f"that differs in {', '.join(differs)}; imported records are never edited", line=line,
                        column=differs[0] if differs[0] in {c.name for c in COLUMNS} else "last_visit")
                unchanged += 1
                continue
            conn.execute(_INSERT, {**row, "sha": sha, "actor": actor})
            inserted += 1
        sched = schedule(conn) if inserted else None  # plans for units that had none, waiting orders re-dated
        redated = sched.orders_redated + redate_pending(conn, unit_ids) if sched else 0
        if inserted:
            conn.execute("INSERT INTO audit_log (actor, action, object, detail) VALUES (%s, 'legacy_imported', %s, %s)",
                         (actor, f"sha256:{sha}", Jsonb({"rows": len(rows), "inserted": inserted,
                                                         "unchanged": unchanged, "units": len(unit_ids)})))
    return LegacyImportResult(len(rows), inserted, unchanged, sched.plans_created if sched else 0,
                              sched.orders_created if sched else 0, redated, sha)
