"""Risk grades: the points, the grade boundaries, the advisory interval cap, and a stored pass."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta

import psycopg
from api_support import units_csv
from psycopg.rows import dict_row

from analytics.risk import grade
from analytics.run import PassOptions, run_pass
from liftwatch.registry import import_units

TODAY = date(2026, 11, 29)


def _row(**kw) -> dict:
    base = {"unit_id": "U", "installed_on": TODAY - timedelta(days=365 * 3), "next_inspection_due": TODAY + timedelta(days=200),
            "faults_30d": 0, "entrapments_90d": 0, "trips_30d": 10_000, "anomaly_flagged": False, "open_alerts": None}
    return {**base, **kw}


def test_a_young_quiet_compliant_unit_is_grade_a_and_the_interval_is_capped() -> None:
    r = grade(_row(), TODAY, max_advised_days=15)
    assert (r.grade, r.points, r.reasons, r.advised_days) == ("A", 0, [], 15)
    assert grade(_row(), TODAY, max_advised_days=30).advised_days == 30


def test_points_add_up_to_the_grade_with_reasons_sorted() -> None:
    r = grade(_row(installed_on=TODAY - timedelta(days=365 * 16), faults_30d=60,
                   open_alerts=["maintenance_overdue:critical"]), TODAY, 15)
    assert r.points == 2 + 2 + 3 and r.grade == "D" and r.advised_days == 10
    assert r.reasons[0] == {"points": 3, "text": "maintenance overdue (critical)"}
    assert grade(_row(faults_30d=25), TODAY, 15).grade == "A"   # 2.5 per 1,000 trips: 1 point
    assert grade(_row(faults_30d=25, installed_on=TODAY - timedelta(days=365 * 11)), TODAY, 15).grade == "B"
    assert grade(_row(entrapments_90d=1, anomaly_flagged=True), TODAY, 15).grade == "C"  # 4 points


def test_an_expired_inspection_alone_makes_grade_d() -> None:
    r = grade(_row(next_inspection_due=TODAY - timedelta(days=1)), TODAY, 15)
    assert r.grade == "D" and "periodic inspection expired" in r.reasons[0]["text"]


def test_a_pass_stores_grades(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as c:
        import_units(c, io.StringIO(units_csv()))
        c.execute("UPDATE units SET installed_on = '2005-01-01', next_inspection_due = '2026-11-01' WHERE unit_id = 'EL-2'")
        run_pass(db_url, PassOptions(), now=datetime(2026, 11, 29, 12, tzinfo=UTC))
        rows = {r["unit_id"]: r for r in c.execute("SELECT unit_id, risk_grade, risk_reasons FROM unit_assessments")}
    assert rows["EL-1"]["risk_grade"] == "A" and rows["EL-2"]["risk_grade"] == "D"
    assert [r["text"] for r in rows["EL-2"]["risk_reasons"]][:2] == ["periodic inspection expired on 2026-11-01",
                                                                      "in service 22 years"]


def test_entrapments_count_for_90_days_from_the_rollups_after_retention_dropped_the_events(db_url: str) -> None:
    now = datetime(2026, 11, 29, 12, tzinfo=UTC)
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as c:
        import_units(c, io.StringIO(units_csv()))
        c.execute("INSERT INTO events (time, unit_id, seq, code, state) VALUES (%s, 'EL-1', 1, 'entrapment', 'raised')",
                  (now - timedelta(days=60),))
        run_pass(db_url, PassOptions(first_window=timedelta(days=70), retention=timedelta(days=31)), now=now)
        assert c.execute("SELECT count(*) AS n FROM events").fetchone()["n"] == 0  # the raw event is gone
        reasons = c.execute("SELECT risk_reasons FROM unit_assessments WHERE unit_id = 'EL-1'").fetchone()["risk_reasons"]
    assert "1 entrapment(s) in 90 days" in [r["text"] for r in reasons]
