"""`liftwatch maintenance import`: an existing fleet's last visits, counted from on day one."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from api_support import units_csv
from psycopg.rows import dict_row

from analytics.run import PassOptions, run_pass
from liftwatch.errors import ImportFileError
from liftwatch.registry import import_units
from maintenance.legacy import COLUMNS, import_legacy
from maintenance.schedule import schedule

TZ = ZoneInfo("Asia/Shanghai")
HEADER = ",".join(c.name for c in COLUMNS)


def _row(unit: str = "EL-1", kind: str = "half_monthly", last: str = "", company: str = "MC1",
         tech: str = "王师傅", archive: str = "档案室 B-12", system: str = "", record: str = "") -> str:
    return ",".join([unit, kind, last, company, tech, "TQ-9", archive, system, record, ""])


def _csv(*rows: str) -> bytes:
    return ("\n".join([HEADER, *rows]) + "\n").encode()


def _local_day(days_ago: int) -> date:
    return datetime.now(TZ).date() - timedelta(days=days_ago)


@pytest.fixture()
def fleet(db_url: str) -> str:
    with psycopg.connect(db_url, row_factory=dict_row) as c:
        import_units(c, io.StringIO(units_csv()))
        c.execute("UPDATE units SET installed_on = '2010-01-01'")
        schedule(c)  # plans and their first orders exist before the import (the usual go-live order)
        c.commit()
    return db_url


def _import(dsn: str, data: bytes, **kw):
    with psycopg.connect(dsn, row_factory=dict_row) as c:
        return import_legacy(c, data, tz=TZ, **kw)


def _sql(dsn: str, q: str, params: tuple = ()) -> list[dict]:
    with psycopg.connect(dsn, row_factory=dict_row) as c:
        return c.execute(q, params).fetchall()


def test_a_unit_maintained_40_days_ago_is_overdue_at_once_by_the_right_number_of_days(fleet: str) -> None:
    visit = _local_day(40)
    r = _import(fleet, _csv(_row(last=visit.isoformat()), _row(unit="ES-1", last=_local_day(3).isoformat())))
    assert (r.rows, r.inserted, r.unchanged) == (2, 2, 0)
    # the waiting half-monthly order moved to the date the imported visit gives, at once
    due = _sql(fleet, "SELECT w.due_on FROM work_orders w JOIN maintenance_plans p USING (plan_id) "
                      "WHERE p.unit_id = 'EL-1' AND p.kind = 'half_monthly' AND w.status = 'open'")
    assert [d["due_on"] for d in due] == [visit + timedelta(days=15)]
    assert r.orders_redated >= 2
    now = datetime.now(UTC)
    run_pass(fleet, PassOptions(first_window=timedelta(days=1)), now=now)
    alerts = {a["unit_id"]: a for a in _sql(fleet, "SELECT unit_id, severity, reason, details AS detail FROM alerts "
                                                  "WHERE kind = 'maintenance_overdue' AND status = 'open'")}
    # counted from the end of the visit's local day: due at the end of day visit + 15
    expected = (now - (datetime.combine(visit + timedelta(days=1), time(0), TZ) + timedelta(days=15))).total_seconds()
    half = next(p for p in alerts["EL-1"]["detail"]["plans"] if p["plan"] == "half_monthly")
    assert half["days_overdue"] == round(expected / 86400, 2)
    assert half["last_visit_source"] == "legacy" and half["last_visit_on"] == visit.isoformat()
    assert "imported record" in alerts["EL-1"]["reason"] and alerts["EL-1"]["severity"] == "critical"
    # the escalator's visit 3 days ago keeps it in time; EL-2 has no history and counts from its plan
    assert "ES-1" not in alerts and "EL-2" not in alerts
    # imported records are never signatures, never in the ledger, never work orders
    assert _sql(fleet, "SELECT count(*) AS n FROM signatures")[0]["n"] == 0
    assert _sql(fleet, "SELECT count(*) AS n FROM ledger")[0]["n"] == 0
    assert _sql(fleet, "SELECT count(*) AS n FROM work_orders WHERE status IN ('signed', 'closed')")[0]["n"] == 0


def test_an_annual_visit_restarts_every_shorter_plan_and_a_time_counts_to_the_second(fleet: str) -> None:
    at = datetime.now(UTC) - timedelta(days=15, seconds=30)
    _import(fleet, _csv(_row(kind="annual", last=at.isoformat().replace("+00:00", "Z"))))
    clock = {r["kind"]: r for r in _sql(fleet, "SELECT kind, last_done_at, last_done_source FROM maintenance_plan_clock "
                                               "WHERE unit_id = 'EL-1'")}
    assert {k: (c["last_done_at"], c["last_done_source"]) for k, c in clock.items()} == {
        k: (at, "legacy") for k in ("half_monthly", "quarterly", "semi_annual", "annual")}
    run_pass(fleet, PassOptions(first_window=timedelta(days=1)), now=at + timedelta(days=15, seconds=1))
    overdue = _sql(fleet, "SELECT details AS detail FROM alerts WHERE unit_id = 'EL-1' AND kind = 'maintenance_overdue' "
                          "AND status = 'open'")
    assert [p["plan"] for p in overdue[0]["detail"]["plans"]] == ["half_monthly"]


def test_reimport_changes_nothing_and_a_contradicting_row_is_refused(fleet: str) -> None:
    data = _csv(_row(last=_local_day(20).isoformat()), _row(kind="quarterly", last=_local_day(50).isoformat()))
    first = _import(fleet, data)
    before = _sql(fleet, "SELECT legacy_id, imported_at FROM legacy_maintenance ORDER BY legacy_id")
    orders = _sql(fleet, "SELECT work_order_id, due_on, updated_at FROM work_orders ORDER BY work_order_id")
    again = _import(fleet, data)
    assert (first.inserted, again.inserted, again.unchanged, again.orders_redated) == (2, 0, 2, 0)
    assert _sql(fleet, "SELECT legacy_id, imported_at FROM legacy_maintenance ORDER BY legacy_id") == before
    assert _sql(fleet, "SELECT work_order_id, due_on, updated_at FROM work_orders ORDER BY work_order_id") == orders
    with pytest.raises(ImportFileError) as e:
        _import(fleet, _csv(_row(last=_local_day(20).isoformat(), tech="Someone Else")))
    assert e.value.line == 2 and e.value.column == "technician_name" and "never edited" in str(e.value)
    # a later visit is a new record, not an edit
    assert _import(fleet, _csv(_row(last=_local_day(5).isoformat()))).inserted == 1
    with psycopg.connect(fleet) as c, pytest.raises(psycopg.errors.IntegrityConstraintViolation):
        c.execute("UPDATE legacy_maintenance SET visit_on = visit_on - 1")


@pytest.mark.parametrize(("rows", "line", "column", "words"), [
    ([_row(unit="NOPE", last="2026-01-01")], 2, "unit_id", "not in the registry"),
    ([_row(kind="weekly", last="2026-01-01")], 2, "plan_kind", "not one of"),
    ([_row(last="2099-01-01")], 2, "last_visit", "in the future"),
    ([_row(last="2009-12-31")], 2, "last_visit", "before the unit was installed"),
    ([_row(last="2026-13-01")], 2, "last_visit", "not a date"),
    ([_row(last="2026-W10-1T10:00:00Z")], 2, "last_visit", "RFC 3339"),
    ([_row(last="2026-01-01"), _row(unit="ES-1", last="2026-01-01"), _row(last="2026-02-01")], 4, "plan_kind",
     "already on line 3"),
    ([_row(last="2026-01-01", company="MC2")], 2, "maintenance_company_id", "does not maintain"),
    ([_row(last="2026-01-01", archive="")], 2, "archive_ref", "where the original record lives"),
    ([_row(last="2026-01-01", tech="")], 2, "technician_name", "required"),
])
def test_bad_files_are_refused_whole_with_line_and_column(fleet: str, rows: list[str], line: int, column: str,
                                                          words: str) -> None:
    good = _row(unit="EL-2", last=_local_day(10).isoformat(), company="MC2")
    with pytest.raises(ImportFileError) as e:
        _import(fleet, _csv(good, *rows))
    assert (e.value.line, e.value.column) == (line + 1, column), str(e.value)
    assert words in str(e.value)
    assert _sql(fleet, "SELECT count(*) AS n FROM legacy_maintenance")[0]["n"] == 0  # the good row neither


def test_header_problems_name_line_1(fleet: str) -> None:
    with pytest.raises(ImportFileError, match="unknown column"):
        _import(fleet, b"unit_id,plan_kind,last_visit,maintenance_company_id,technician_name,colour\n")
    with pytest.raises(ImportFileError, match="lacks required column.*last_visit"):
        _import(fleet, b"unit_id,plan_kind\n")
    with pytest.raises(ImportFileError, match="not UTF-8"):
        _import(fleet, HEADER.encode() + b"\nEL-1,half_monthly,2026-01-01,MC1,\xb9\xa4,,a,,,\n")


def test_cli_imports_and_refuses_with_the_line(fleet: str, tmp_path) -> None:
    env = {**os.environ, "LIFTWATCH_DATABASE_URL": fleet}
    good = tmp_path / "legacy.csv"
    good.write_bytes(_csv(_row(last=_local_day(30).isoformat(), system="OldCMMS", record="WO-778")))
    r = subprocess.run([sys.executable, "-m", "liftwatch", "maintenance", "import", str(good)], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "1 legacy records imported" in r.stdout
    bad = tmp_path / "bad.csv"
    bad.write_bytes(_csv(_row(last="2099-01-01")))
    r = subprocess.run([sys.executable, "-m", "liftwatch", "maintenance", "import", str(bad)], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 1 and "line 2" in r.stderr and "future" in r.stderr and "Traceback" not in r.stderr
    audit = _sql(fleet, "SELECT action, detail FROM audit_log WHERE action = 'legacy_imported'")
    assert [a["detail"]["inserted"] for a in audit] == [1]
    h = subprocess.run([sys.executable, "-m", "liftwatch", "maintenance", "import", "--help"], capture_output=True,
                       text=True, env=env)
    assert all(c.name in h.stdout for c in COLUMNS)
