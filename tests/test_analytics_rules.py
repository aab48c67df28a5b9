"""Each alert rule on hand-made data at its boundary, through a real pass on the real database."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from api_support import units_csv
from psycopg.rows import dict_row

from analytics.run import PassOptions, run_pass
from liftwatch.registry import import_units

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SEC = timedelta(seconds=1)


@pytest.fixture()
def db(db_url: str) -> psycopg.Connection:
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as c:
        import_units(c, io.StringIO(units_csv()))
        c.execute("UPDATE units SET next_inspection_due = NULL")
        yield c


def _pass(db_url: str, now: datetime = NOW) -> dict:
    return run_pass(db_url, PassOptions(first_window=timedelta(days=3)), now=now)


def _open(db: psycopg.Connection, kind: str | None = None) -> list[dict]:
    sql = "SELECT unit_id, kind, severity, reason, details FROM alerts WHERE status = 'open'"
    rows = db.execute(sql + (" AND kind = %s" if kind else "") + " ORDER BY unit_id, kind", (kind,) if kind else ()).fetchall()
    return rows


def _plan(db: psycopg.Connection, unit: str, kind: str, days: int, created: datetime) -> None:
    db.execute("INSERT INTO maintenance_plans (unit_id, kind, interval_days, checklist_id, created_at) "
               "VALUES (%s, %s, %s, 'tsg-t5002-2017-traction', %s)", (unit, kind, days, created))


def _signed_order(db: psycopg.Connection, unit: str, kind: str, checked_in: datetime, signed: datetime,
                  status: str = "signed", due_on=None) -> int:
    return db.execute(
        """INSERT INTO work_orders (unit_id, kind, checklist_id, checklist_version, company_id, due_on, status,
                                    checked_in_at, record, record_sha256, signed_at, closed_at)
           VALUES (%s, %s, 'tsg-t5002-2017-traction', 1, 'MC1', %s, %s, %s, '{}', repeat('a', 64), %s, %s)
           RETURNING work_order_id""",
        (unit, kind, due_on or signed.date(), status, checked_in, signed, signed if status == "closed" else None),
    ).fetchone()["work_order_id"]


def _telemetry(db: psycopg.Connection, unit: str, times: list[datetime], mode: str = "normal", **fields) -> None:
    cols = ["time", "unit_id", "seq", "mode", *fields]
    with db.cursor() as cur:
        cur.executemany(
            f"INSERT INTO telemetry ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",  # noqa: S608
            [(t, unit, int(t.timestamp() * 1000), mode, *fields.values()) for t in times])


@pytest.mark.parametrize(("age", "expected"), [(timedelta(days=15), None), (timedelta(days=15) + SEC, "overdue")])
def test_half_monthly_overdue_boundary(db, db_url, age, expected) -> None:
    _plan(db, "EL-1", "half_monthly", 15, NOW - timedelta(days=100))
    _signed_order(db, "EL-1", "half_monthly", NOW - age - timedelta(hours=1), NOW - age, "closed")
    _pass(db_url)
    overdue = _open(db, "maintenance_overdue")
    if expected is None:
        assert overdue == []
        assert _open(db, "maintenance_due_soon")[0]["details"]["plans"][0]["days_left"] == 0
    else:
        assert len(overdue) == 1 and overdue[0]["severity"] == "warning"
        assert "half-monthly maintenance is 0.0 days overdue" in overdue[0]["reason"]


def test_overdue_severity_grows_a_pass_twice_changes_nothing_and_a_visit_resolves_it(db, db_url) -> None:
    _plan(db, "EL-1", "half_monthly", 15, NOW - timedelta(days=100))
    _signed_order(db, "EL-1", "half_monthly", NOW - timedelta(days=25, hours=1), NOW - timedelta(days=25), "closed")
    _pass(db_url)
    _pass(db_url)
    rows = db.execute("SELECT severity, status FROM alerts WHERE kind = 'maintenance_overdue'").fetchall()
    assert rows == [{"severity": "critical", "status": "open"}]  # 10 days overdue, one alert after two passes
    _signed_order(db, "EL-1", "annual", NOW - timedelta(hours=2), NOW - timedelta(hours=1))  # annual covers it
    _pass(db_url)
    assert db.execute("SELECT status, resolved_at IS NOT NULL AS r FROM alerts WHERE kind = 'maintenance_overdue'"
                      ).fetchall() == [{"status": "resolved", "r": True}]


def test_unit_without_any_visit_counts_from_its_plan(db, db_url) -> None:
    _plan(db, "EL-2", "quarterly", 90, NOW - timedelta(days=91))
    _pass(db_url)
    assert [a["unit_id"] for a in _open(db, "maintenance_overdue")] == ["EL-2"]


@pytest.mark.parametrize(("age", "alert"), [(timedelta(hours=72), False), (timedelta(hours=72) + SEC, True)])
def test_countersign_missing_boundary(db, db_url, age, alert) -> None:
    wo = _signed_order(db, "EL-1", "half_monthly", NOW - age - timedelta(hours=1), NOW - age)
    _pass(db_url)
    got = _open(db, "countersign_missing")
    assert bool(got) is alert
    if alert:
        assert got[0]["details"]["orders"][0]["work_order_id"] == wo


def test_unverified_visit_cases(db, db_url) -> None:
    start, end = NOW - timedelta(hours=5), NOW - timedelta(hours=4)
    _signed_order(db, "EL-1", "half_monthly", start, end, "closed")   # genuine: inspection mode seen
    _telemetry(db, "EL-1", [start + timedelta(minutes=m) for m in range(0, 60, 5)], mode="inspection")
    _signed_order(db, "EL-2", "half_monthly", start, end, "closed")   # telemetry only in normal mode
    _telemetry(db, "EL-2", [start + timedelta(minutes=m) for m in range(0, 60, 5)], mode="normal")
    _signed_order(db, "ES-1", "half_monthly", start, end, "closed")   # silent unit: unverifiable
    # inspection mode just outside the window plus tolerance does not count
    _telemetry(db, "ES-1", [end + timedelta(minutes=10) + SEC], mode="inspection")
    _pass(db_url)
    alerts = {a["unit_id"]: a for a in _open(db, "unverified_visit")}
    assert set(alerts) == {"EL-2", "ES-1"}
    assert alerts["EL-2"]["details"]["visits"][0]["verdict"] == "no_inspection_mode"
    assert alerts["EL-2"]["details"]["visits"][0]["modes_seen"] == ["normal"]
    assert "shows no inspection mode" in alerts["EL-2"]["reason"] and alerts["EL-2"]["severity"] == "critical"
    assert alerts["ES-1"]["details"]["visits"][0]["verdict"] == "unverifiable"
    # inside the tolerance it counts
    _telemetry(db, "ES-1", [end + timedelta(minutes=10)], mode="inspection")
    _pass(db_url)
    assert {a["unit_id"] for a in _open(db, "unverified_visit")} == {"EL-2"}


def test_a_settled_visit_keeps_its_verdict_without_scanning_the_raw_rows_again(db, db_url) -> None:
    """Measured while fresh, a visit signed more than 72 h ago is judged from visit_checks: its
    alert keeps its reason when the raw rows are gone, and the pass no longer rescans them."""
    start, end = NOW - timedelta(days=5, hours=1), NOW - timedelta(days=5)
    _signed_order(db, "EL-2", "half_monthly", start, end, "closed")
    _telemetry(db, "EL-2", [start + timedelta(minutes=m) for m in range(0, 60, 5)], mode="normal")
    first = _pass(db_url)  # no check yet: measured now
    before = _open(db, "unverified_visit")
    assert first["visits_checked"] == 1 and before[0]["details"]["visits"][0]["modes_seen"] == ["normal"]
    db.execute("DELETE FROM telemetry")  # retention, say
    second = _pass(db_url, NOW + timedelta(minutes=1))
    assert second["visits_checked"] == 0  # settled: read, not measured
    after = _open(db, "unverified_visit")
    assert [(a["reason"], a["details"]) for a in after] == [(b["reason"], b["details"]) for b in before]
    assert "shows no inspection mode" in after[0]["reason"]


@pytest.mark.parametrize(("days", "kind"), [(-1, "inspection_overdue"), (0, "inspection_due_soon"),
                                            (30, "inspection_due_soon"), (31, None)])
def test_inspection_boundaries(db, db_url, days, kind) -> None:
    db.execute("UPDATE units SET next_inspection_due = %s WHERE unit_id = 'EL-1'", (NOW.date() + timedelta(days=days),))
    _pass(db_url)
    got = [a["kind"] for a in _open(db) if a["kind"].startswith("inspection")]
    assert got == ([kind] if kind else [])


@pytest.mark.parametrize(("silent", "alert"), [(timedelta(minutes=15), False), (timedelta(minutes=15) + SEC, True)])
def test_offline_boundary_and_return(db, db_url, silent, alert) -> None:
    db.execute("INSERT INTO unit_ingest_state (unit_id, next_seq, last_time) VALUES ('EL-1', 10, %s)", (NOW - silent,))
    _pass(db_url)
    assert bool(_open(db, "offline")) is alert
    db.execute("UPDATE unit_ingest_state SET last_time = %s", (NOW,))
    _pass(db_url)
    assert _open(db, "offline") == []


def test_entrapment_resolved_with_duration_and_breach(db, db_url) -> None:
    t0 = NOW - timedelta(hours=1)
    db.execute("INSERT INTO alerts (unit_id, kind, severity, reason, source, event_time) "
               "VALUES ('EL-1', 'entrapment', 'critical', 'trapped', 'ingest', %s)", (t0,))
    db.execute("INSERT INTO alerts (unit_id, kind, severity, reason, source, event_time) "
               "VALUES ('EL-2', 'entrapment', 'critical', 'trapped', 'ingest', %s)", (t0,))
    db.execute("INSERT INTO events (time, unit_id, seq, code, state) VALUES (%s, 'EL-1', 2, 'entrapment', 'cleared'),"
               " (%s, 'EL-2', 2, 'entrapment', 'cleared')", (t0 + timedelta(minutes=31), t0 + timedelta(minutes=12)))
    _pass(db_url)
    rows = {r["unit_id"]: r for r in db.execute("SELECT unit_id, status, details FROM alerts WHERE kind = 'entrapment'")}
    assert rows["EL-1"]["status"] == "resolved" and rows["EL-1"]["details"]["duration_s"] == 31 * 60
    assert rows["EL-1"]["details"]["rescue_time_breach"] is True
    assert rows["EL-2"]["details"]["duration_s"] == 12 * 60 and rows["EL-2"]["details"]["rescue_time_breach"] is False


def test_frequent_faults_threshold(db, db_url) -> None:
    for unit, n in (("EL-1", 10), ("EL-2", 9)):
        for i in range(n):
            db.execute("INSERT INTO events (time, unit_id, seq, code, state) VALUES (%s, %s, %s, 'door_close_fault', 'raised')",
                       (NOW - timedelta(days=1, minutes=i), unit, i))
    _pass(db_url)
    got = _open(db, "frequent_faults")
    assert [a["unit_id"] for a in got] == ["EL-1"] and "raised 10 times in 30 days" in got[0]["reason"]


def test_rollups_hourly_daily_and_late_data(db, db_url) -> None:
    hour = NOW.replace(minute=0) - timedelta(hours=2)
    times = [hour + timedelta(minutes=10 * i) for i in range(6)]
    cols = {"door_close_ms": 3000.0, "vibration_mg": 10.0, "run_count": None, "motor_temp_c": None}
    _telemetry(db, "EL-1", times, **cols)
    db.execute("UPDATE telemetry SET motor_temp_c = 30 + extract(minute FROM time)::int / 10")  # 30..35 degC
    db.execute("UPDATE telemetry SET run_count = 100 + extract(minute FROM time)::int / 10, "
               "door_close_ms = 3000 + extract(minute FROM time)::int * 10")
    db.execute("INSERT INTO events (time, unit_id, seq, code, state) VALUES (%s, 'EL-1', 1, 'door_close_fault', 'raised')",
               (hour + timedelta(minutes=3),))
    # door reopens come in the free-form `extra`: numbers count (clamped at 0), anything else is ignored
    for minute, extra in ((0, '{"door_reopens": 2}'), (10, '{"door_reopens": "lots"}'), (20, '{"door_reopens": -5}'),
                          (30, '{"door_reopens": 1}'), (40, '{"door_reopens": [1]}')):
        db.execute("UPDATE telemetry SET extra = %s::jsonb WHERE time = %s", (extra, hour + timedelta(minutes=minute)))
    _pass(db_url)
    h = db.execute("SELECT * FROM unit_hourly WHERE unit_id = 'EL-1' AND bucket = %s", (hour,)).fetchone()
    assert (h["samples"], h["trips"], h["door_cycles"], h["door_reopens"]) == (6, 5, 6, 3)
    assert h["door_close_ms_mean"] == pytest.approx(3250.0)
    assert h["mode_seconds"] == {"normal": 1500}  # five 10-minute gaps, each sample standing for at most 5 min
    assert h["faults"] == {"door_close_fault": 1}
    assert (h["motor_temp_min"], h["motor_temp_max"]) == (30.0, 35.0)
    d = db.execute("SELECT samples, door_reopens, door_close_ms_mean, motor_temp_min FROM unit_daily "
                   "WHERE unit_id = 'EL-1'").fetchone()
    assert d == {"samples": 6, "door_reopens": 3, "door_close_ms_mean": pytest.approx(3250.0), "motor_temp_min": 30.0}
    # a late sample inside the grace window: the other passes of the hour refresh only this hour and
    # the one before; the first pass of the next hour sweeps the grace window. Nothing is duplicated.
    _telemetry(db, "EL-1", [hour + timedelta(minutes=55)], door_close_ms=3900.0)

    def samples() -> int:
        return db.execute("SELECT samples FROM unit_hourly WHERE unit_id = 'EL-1' AND bucket = %s", (hour,)).fetchone()["samples"]

    _pass(db_url, NOW + timedelta(minutes=30))
    assert samples() == 6
    _pass(db_url, NOW + timedelta(minutes=65))
    assert samples() == 7
    assert db.execute("SELECT count(*) AS n FROM unit_hourly").fetchone()["n"] == 1
    runs = db.execute("SELECT status, counts, code_version, window_from FROM analytics_runs ORDER BY run_id").fetchall()
    assert [r["status"] for r in runs] == ["ok", "ok", "ok"] and runs[0]["counts"]["hourly_rows"] == 1
    assert [r["window_from"].hour for r in runs[1:]] == [12, 6]  # this hour; then the grace sweep
    assert set(runs[0]["counts"]["stage_seconds"]) == {"rollups", "maintenance", "countersign", "unverified", "inspection",
                                                       "offline", "entrapment", "frequent_faults", "anomaly", "risk"}


def test_trips_count_across_hour_boundaries_missing_counters_and_resets(db, db_url) -> None:
    """Trips are how far run_count gets past every earlier sample's, the previous hour's included,
    but not across a silence longer than the offline threshold (15 minutes)."""
    t9 = NOW.replace(hour=9, minute=0)
    counts = {50: 10, 60: 12, 70: None, 80: 13, 95: 3, 105: 5, 115: 14,  # minutes after 09:00 -> run_count
              275: 90}  # after two silent hours: the trips (and faults) of the silence were never reported
    _telemetry(db, "EL-1", [t9 + timedelta(minutes=m) for m in counts])
    for m, rc in counts.items():
        db.execute("UPDATE telemetry SET run_count = %s WHERE time = %s", (rc, t9 + timedelta(minutes=m)))
    _pass(db_url, NOW.replace(hour=14))
    trips = {r["bucket"].hour: r["trips"] for r in db.execute("SELECT bucket, trips FROM unit_hourly ORDER BY bucket")}
    # 10:00 counts the trips since 09:50 (12 - 10, then 13 - 12); the reset at 10:35 counts nothing
    # until the counter passes the highest value seen before it (14 - 13); 13:35 follows a silence
    assert trips == {9: 0, 10: 4, 13: 0}
    assert db.execute("SELECT trips FROM unit_daily").fetchone()["trips"] == 4
    # once the watermark is at 16:00, the next hour's first pass recomputes from 10:00 (6 h grace)
    # and still finds 09:50 to count from: no trip is lost at the window's edge
    _pass(db_url, NOW.replace(hour=16, minute=10))
    run = _pass(db_url, NOW.replace(hour=17, minute=5))
    assert run["duration_s"] >= 0 and db.execute(
        "SELECT window_from FROM analytics_runs ORDER BY run_id DESC LIMIT 1").fetchone()["window_from"] == t9.replace(hour=10)
    assert {r["bucket"].hour: r["trips"] for r in db.execute("SELECT bucket, trips FROM unit_hourly")}[10] == 4


def test_daily_means_weigh_hours_by_the_samples_that_carry_the_reading(db, db_url) -> None:
    """Vibration comes with runs and levelling with arrivals, not with heartbeats: a day's mean is
    the mean of the readings, however the hours' heartbeats differ."""
    quiet, busy = NOW.replace(hour=3, minute=0), NOW.replace(hour=8, minute=0)
    _telemetry(db, "EL-1", [quiet + timedelta(minutes=10 * i) for i in range(6)])  # heartbeats...
    db.execute("UPDATE telemetry SET vibration_mg = 20, leveling_mm = -4 WHERE time = %s", (quiet,))  # ...and one trip
    _telemetry(db, "EL-1", [busy, busy + timedelta(minutes=1)], vibration_mg=10.0, leveling_mm=1.0)
    _pass(db_url)
    d = db.execute("SELECT vibration_mean, leveling_abs_mean, leveling_samples, vibration_samples FROM unit_daily").fetchone()
    assert d["vibration_mean"] == pytest.approx(40 / 3, rel=1e-6)  # (20 + 10 + 10) / 3, not (20*6 + 10*2) / 8
    assert d["leveling_abs_mean"] == pytest.approx(2.0, rel=1e-6)  # (4 + 1 + 1) / 3
    assert (d["leveling_samples"], d["vibration_samples"]) == (3, 3)


def test_retention_counts_from_the_pass_clock_and_keeps_the_rollups(db, db_url) -> None:
    """Raw chunks wholly older than (pass now - retention) go, younger ones stay, rollups keep both.

    NOW lies days before the wall clock: measured from the database clock, as drop_chunks
    with an interval would, the 30-day-old chunk would wrongly go too."""
    old, young = NOW - timedelta(days=40, hours=2), NOW - timedelta(days=30, hours=2)
    older = NOW - timedelta(days=50, hours=2)  # events have 7-day chunks: this one's chunk is wholly past
    _telemetry(db, "EL-1", [old, young], door_close_ms=3000.0)
    db.execute("INSERT INTO events (time, unit_id, seq, code, state) VALUES (%s, 'EL-1', 1, 'door_close_fault', 'raised')",
               (older,))
    run_pass(db_url, PassOptions(first_window=timedelta(days=52), retention=timedelta(days=31)), now=NOW)
    assert [r["time"] for r in db.execute("SELECT time FROM telemetry ORDER BY time")] == [young]
    assert db.execute("SELECT count(*) AS n FROM events").fetchone()["n"] == 0
    days = db.execute("SELECT bucket, samples, faults FROM unit_daily WHERE unit_id = 'EL-1' ORDER BY bucket").fetchall()
    assert [(d["bucket"], d["samples"], d["faults"]) for d in days] == [
        (older.replace(hour=0, minute=0), 0, {"door_close_fault": 1}),
        (old.replace(hour=0, minute=0), 1, {}), (young.replace(hour=0, minute=0), 1, {})]


def test_retention_shorter_than_the_rules_look_back_is_refused(db_url) -> None:
    """Unverified visits and frequent faults read 30 days of raw rows: less retention would make
    every older visit 'unverifiable'. The pass refuses, and so do the settings."""
    with pytest.raises(ValueError, match="keep at least 31 days"):
        run_pass(db_url, PassOptions(retention=timedelta(days=20)), now=NOW)
    from pydantic import ValidationError

    from liftwatch.settings import Settings

    with pytest.raises(ValidationError, match="greater than or equal to 31"):
        Settings(retention_days=20)
    assert Settings(retention_days=31).retention_days == 31


def test_company_scorecard_view(db, db_url) -> None:
    start = datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0) - timedelta(days=3)
    _signed_order(db, "EL-1", "half_monthly", start, start + timedelta(hours=1), "closed", due_on=start.date())
    _signed_order(db, "EL-1", "quarterly", start, start + timedelta(hours=2), due_on=start.date() - timedelta(days=1))
    _telemetry(db, "EL-1", [start + timedelta(minutes=30)], mode="inspection")  # confirms both windows
    db.execute("INSERT INTO events (time, unit_id, seq, code, state) VALUES (%s, 'EL-1', 1, 'door_close_fault', 'raised')",
               (start + timedelta(hours=5),))
    _signed_order(db, "EL-2", "half_monthly", start, start + timedelta(hours=1), "closed", due_on=start.date())
    _telemetry(db, "EL-2", [start + timedelta(minutes=30)], mode="normal")  # no inspection mode: unverified
    _pass(db_url, datetime.now(UTC))  # the pass records what the telemetry says of each visit

    def card() -> list[dict]:
        return db.execute("SELECT * FROM company_monthly_scorecards WHERE company_id = 'MC1'").fetchall()

    rows = card()
    assert sum(r["orders_due"] for r in rows) == 3 and sum(r["on_time"] for r in rows) == 2
    assert sum(r["unverified_visits"] for r in rows) == 1 and sum(r["awaiting_countersign"] for r in rows) == 1
    assert sum(r["faults_72h_after_visits"] for r in rows) == 2  # the fault follows both of EL-1's visits
    assert [float(r["countersign_avg_h"]) for r in rows if r["countersign_avg_h"] is not None] == [0.0]
    # once retention has dropped the raw rows, the month keeps its figures
    db.execute("SELECT drop_chunks('telemetry', older_than => now() + interval '1 day')")
    db.execute("SELECT drop_chunks('events', older_than => now() + interval '7 days')")
    assert db.execute("SELECT count(*) AS n FROM telemetry").fetchone()["n"] == 0
    assert card() == rows


def test_health_command_reflects_the_last_successful_pass(db, db_url) -> None:
    import os
    import subprocess
    import sys

    def health() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "liftwatch", "analytics", "health", "--max-age", "60"],
                              env={**os.environ, "LIFTWATCH_DATABASE_URL": db_url}, capture_output=True, text=True)

    assert health().returncode == 1
    run_pass(db_url, PassOptions())
    r = health()
    assert r.returncode == 0 and "ok: last successful pass" in r.stdout
