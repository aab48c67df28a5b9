"""Two speed figures of issue #6, each against a baseline in the same run.

1. The anomaly features from the SQL rollups (`analytics.anomaly.load_aggregates`, one row
   per unit reaches Python) against the same features computed in pandas from the raw rows
   of the same units and window. The two must also agree: the comparison doubles as a check
   that the rollups compute what the raw data says.
2. The steady-state pass (what `analytics loop` runs every minute) at 10,000 and at 20,000
   units: the replayed fleet cloned under new unit ids (registry, plans, orders, rollups, the
   last hours of raw telemetry, 31 days of events), timed at the replay's last instant.
"""

from __future__ import annotations

import statistics
import time
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg.rows import dict_row

from analytics import anomaly, rollups
from analytics.rollups import TRIP_SILENCE
from analytics.run import PassOptions, run_pass
from bench.common import log
from liftwatch.contract import Telemetry

DOOR = ("door_close_fault", "door_open_fault", "door_lock_fault")
SAFETY = ("safety_circuit_break", "overtravel_top", "overtravel_bottom", "brake_fault")
NOT_THE_UNITS = ("alarm_button", "power_failure")  # people and the grid (as anomaly.FEATURES_SQL)

_RAW_TELEMETRY = """
SELECT t.time, t.unit_id, t.seq, t.door_close_ms, abs(t.leveling_mm) AS lev, t.vibration_mg, t.motor_temp_c, t.run_count,
       CASE WHEN jsonb_typeof(t.extra -> 'door_reopens') = 'number'
            THEN LEAST(GREATEST((t.extra ->> 'door_reopens')::numeric, 0), 100)::int END AS reopens
  FROM telemetry t WHERE t.unit_id = ANY(%(units)s) AND t.time >= %(from)s AND t.time < %(to)s"""
_RAW_EVENTS = """
SELECT time, unit_id, code FROM events
 WHERE state = 'raised' AND unit_id = ANY(%(units)s) AND time >= %(from)s AND time < %(to)s"""


def pandas_aggregates(conn: psycopg.Connection, now: datetime, unit_ids: list[str]) -> pd.DataFrame:
    """The window aggregates of anomaly.FEATURES_SQL, from raw rows, in pandas."""
    start = anomaly.window_start(now)
    params = {"units": unit_ids, "from": start, "to": anomaly.window_end(now)}
    # a little before the window too, as the rollups do: trips count from the sample before
    t = pd.DataFrame(conn.execute(_RAW_TELEMETRY, {**params, "from": start - TRIP_SILENCE}).fetchall())
    ev = pd.DataFrame(conn.execute(_RAW_EVENTS, params).fetchall(), columns=["time", "unit_id", "code"])
    kinds = {r["unit_id"]: r["kind"] for r in conn.execute("SELECT unit_id, kind FROM units WHERE unit_id = ANY(%s)",
                                                           (unit_ids,))}
    for col in ("door_close_ms", "lev", "vibration_mg", "motor_temp_c", "run_count", "reopens"):
        t[col] = pd.to_numeric(t[col], errors="coerce").astype(float)
    t = t.sort_values(["unit_id", "time", "seq"])
    before = t.groupby("unit_id")["run_count"].transform(lambda rc: rc.cummax().ffill().shift())
    gap = t.groupby("unit_id")["time"].diff()
    t["trips"] = (t["run_count"] - before).clip(lower=0).where(gap <= TRIP_SILENCE)  # as the rollups
    t = t[t["time"] >= pd.Timestamp(start)]
    t["day"] = t["time"].dt.floor("D")
    daily = t.groupby(["unit_id", "day"]).agg(
        dc=("door_close_ms", "mean"), vib=("vibration_mg", "mean"), lev=("lev", "mean"), temp=("motor_temp_c", "max"),
        temp_min=("motor_temp_c", "min"),
        cycles=("door_close_ms", "count"), reopens=("reopens", "sum"), trips=("trips", "sum"))
    ev["day"] = ev["time"].dt.floor("D")
    ev["unit_fault"] = ~ev["code"].isin(NOT_THE_UNITS)
    ev["door"] = ev["code"].isin(DOOR)
    ev["safety"] = ev["code"].isin(SAFETY)
    evd = ev.groupby(["unit_id", "day"]).agg(f_all=("unit_fault", "sum"), f_door=("door", "sum"), f_safety=("safety", "sum"))
    daily = daily.join(evd, how="outer").reset_index()
    for col in ("trips", "cycles", "reopens", "f_all", "f_door", "f_safety"):
        daily[col] = daily[col].fillna(0)
    daily["d"] = (daily["day"] - pd.Timestamp(start)).dt.total_seconds() / 86400.0
    w, e = anomaly.WINDOW_DAYS, anomaly.EDGE_DAYS
    base, recent = daily["d"] < e, daily["d"] >= w - e

    def slope(g: pd.DataFrame, col: str) -> float:
        ok = g[col].notna()
        x, y = g.loc[ok, "d"].to_numpy(), g.loc[ok, col].to_numpy()
        if len(x) < 2 or np.ptp(x) == 0:
            return np.nan
        return float(np.polyfit(x, y, 1)[0])

    rows = []
    for unit_id, g in daily.groupby("unit_id"):
        if len(g) < anomaly.MIN_DAYS:
            continue
        b, r = base[g.index], recent[g.index]
        rows.append({
            "unit_id": unit_id, "unit_kind": kinds[unit_id], "days": len(g),
            "dc_base": g.loc[b, "dc"].mean(), "dc_recent": g.loc[r, "dc"].mean(), "dc_slope": slope(g, "dc"),
            "vib_base": g.loc[b, "vib"].mean(), "vib_recent": g.loc[r, "vib"].mean(), "vib_slope": slope(g, "vib"),
            "lev_base": g.loc[b, "lev"].mean(), "lev_recent": g.loc[r, "lev"].mean(), "lev_slope": slope(g, "lev"),
            "temp_base": g.loc[b, "temp"].mean(), "temp_recent": g.loc[r, "temp"].mean(),
            "temp_rest_recent": g.loc[r, "temp_min"].mean(),
            "reopens_recent": g.loc[r, "reopens"].sum(), "cycles_recent": g.loc[r, "cycles"].sum(),
            "trips": g["trips"].sum(), "faults_all": g["f_all"].sum(), "faults_door": g["f_door"].sum(),
            "faults_safety": g["f_safety"].sum()})
    return pd.DataFrame(rows)


def features_speed(dsn: str, now: datetime, *, units: int = 200, repeat: int = 3) -> dict[str, Any]:
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        ids = [r["unit_id"] for r in conn.execute(
            "SELECT unit_id FROM units WHERE status = 'in_service' AND unit_id NOT LIKE '%%-C%%' ORDER BY unit_id LIMIT %s",
            (units,))]
        sql_s, pd_s = [], []
        for _ in range(repeat):  # interleaved, so both see the same cache and machine load
            t0 = time.perf_counter()
            via_sql = anomaly.features_from_aggregates(anomaly.load_aggregates(conn, now, unit_ids=ids))
            t1 = time.perf_counter()
            via_pd = anomaly.features_from_aggregates(pandas_aggregates(conn, now, ids))
            t2 = time.perf_counter()
            sql_s.append(t1 - t0)
            pd_s.append(t2 - t1)
        raw_rows = conn.execute("SELECT count(*) AS n FROM telemetry WHERE unit_id = ANY(%s) AND time >= %s AND time < %s",
                                (ids, anomaly.window_start(now), anomaly.window_end(now))).fetchone()["n"]
    a = via_sql.set_index("unit_id").sort_index()
    b = via_pd.set_index("unit_id").sort_index()
    agreement = {}  # largest difference, in units of the feature's smallest meaningful spread
    for col, (_, _, spread) in anomaly.FEATURES.items():
        x, y = a[col].astype(float), b[col].astype(float)
        both = x.notna() & y.notna()
        diff = ((x[both] - y[both]).abs() / spread).max() if both.any() else 0.0
        agreement[col] = {"max_diff_in_spreads": float(diff), "missing_differs": int((x.isna() != y.isna()).sum())}
    sql_med, pd_med = statistics.median(sql_s), statistics.median(pd_s)
    log(f"features for {len(ids)} units over {anomaly.WINDOW_DAYS} days ({raw_rows:,} raw rows): SQL rollups "
        f"{sql_med * 1000:.0f} ms, pandas from raw {pd_med:.1f} s ({pd_med / sql_med:.0f}x)")
    return {"units": len(ids), "window_days": anomaly.WINDOW_DAYS, "raw_rows": raw_rows, "repeat": repeat,
            "sql_rollups_s": sql_s, "pandas_raw_s": pd_s, "ratio": pd_med / sql_med,
            "same_units": sorted(a.index) == sorted(b.index), "agreement": agreement}


# --- 10 k vs 20 k units -------------------------------------------------------------------------

_ROLLUP_COLS = ("unit_id, bucket, samples, trips, door_cycles, door_reopens, leveling_samples, vibration_samples, "
                "door_close_ms_mean, door_close_ms_p95, leveling_abs_mean, leveling_abs_max, vibration_mean, vibration_p95, "
                "motor_temp_max, motor_temp_min, mode_seconds, faults, first_seen, last_seen, computed_at")
_CLONE = [
    """INSERT INTO units (unit_id, registration_code, site_id, kind, maintenance_company_id, user_unit_id, model,
                        installed_on, floors, rated_speed_mps, rated_load_kg, last_inspection_on, next_inspection_due, status)
       SELECT unit_id || %(sfx)s, registration_code || %(sfx)s, site_id, kind, maintenance_company_id, user_unit_id, model,
              installed_on, floors, rated_speed_mps, rated_load_kg, last_inspection_on, next_inspection_due, status
         FROM units WHERE unit_id = ANY(%(base)s)""",
    """INSERT INTO maintenance_plans (unit_id, kind, interval_days, checklist_id, created_at)
       SELECT unit_id || %(sfx)s, kind, interval_days, checklist_id, created_at FROM maintenance_plans
        WHERE unit_id = ANY(%(base)s)""",
    """INSERT INTO work_orders (unit_id, plan_id, kind, checklist_id, checklist_version, company_id, due_on, status,
                              technician_id, checked_in_at, record, record_sha256, signed_at, closed_at, created_at)
       SELECT w.unit_id || %(sfx)s, p2.plan_id, w.kind, w.checklist_id, w.checklist_version, w.company_id, w.due_on,
              w.status, w.technician_id, w.checked_in_at, w.record, w.record_sha256, w.signed_at, w.closed_at, w.created_at
         FROM work_orders w JOIN maintenance_plans p ON p.plan_id = w.plan_id
         JOIN maintenance_plans p2 ON p2.unit_id = w.unit_id || %(sfx)s AND p2.kind = p.kind
        WHERE w.unit_id = ANY(%(base)s)""",
    *[f"""INSERT INTO {table} ({_ROLLUP_COLS})
        SELECT unit_id || %(sfx)s, {_ROLLUP_COLS.split(", ", 1)[1]} FROM {table}
         WHERE unit_id = ANY(%(base)s) AND bucket >= %({since})s"""  # noqa: S608 - constant table names
      for table, since in (("unit_daily", "since_days"), ("unit_hourly", "since_hours"))],
    f"""INSERT INTO telemetry ({", ".join(Telemetry.COLUMNS)})
       SELECT time, unit_id || %(sfx)s, {", ".join(Telemetry.COLUMNS[2:])}
         FROM telemetry WHERE unit_id = ANY(%(base)s) AND time >= %(since_raw)s AND time < %(now)s""",  # noqa: S608
    """INSERT INTO events (time, unit_id, seq, code, state, source_code, detail)
       SELECT time, unit_id || %(sfx)s, seq, code, state, source_code, detail
         FROM events WHERE unit_id = ANY(%(base)s) AND time >= %(since_days)s AND time < %(now)s""",
    """INSERT INTO unit_ingest_state (unit_id, next_seq, last_time)
       SELECT unit_id || %(sfx)s, next_seq, last_time FROM unit_ingest_state WHERE unit_id = ANY(%(base)s)""",
]


def _clone(conn: psycopg.Connection, base: list[str], k: int, now: datetime) -> None:
    params = {"sfx": f"-C{k}", "base": base, "now": now, "since_raw": now - timedelta(hours=8),
              "since_days": now - timedelta(days=anomaly.WINDOW_DAYS + 3), "since_hours": now - timedelta(days=2)}
    with conn.transaction():
        for sql in _CLONE:
            conn.execute(sql, params)


def _units(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) AS n FROM units").fetchone()["n"]


def _sweep_next(conn: psycopg.Connection) -> None:
    """Make the next pass the first of a new hour (the one that sweeps the grace window), same now."""
    conn.execute("UPDATE analytics_state SET value = value - interval '1 hour' WHERE key = %s",
                 (rollups.HOURLY_WATERMARK,))


def pass_scaling(dsn: str, now: datetime, *, sizes: tuple[int, ...] = (10_000, 20_000), repeat: int = 3) -> dict[str, Any]:
    """Clone the fleet up to each size and time the passes of a steady loop at `now` (the replay's last
    instant): the ordinary pass (this hour's rollups) and the first pass of an hour (grace sweep)."""
    out: dict[str, Any] = {"sizes": {}}
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        base = [r["unit_id"] for r in conn.execute("SELECT unit_id FROM units ORDER BY unit_id")]
        k = 0
        for size in sizes:
            t0 = time.perf_counter()
            while _units(conn) + len(base) <= size:
                k += 1
                _clone(conn, base, k, now)
            conn.execute("ANALYZE")
            n = _units(conn)
            log(f"scaling: {n:,} units (cloned in {time.perf_counter() - t0:.0f} s); timing passes")
            first = run_pass(dsn, PassOptions(), now=now)  # opens the clones' alerts: not steady state
            steady, sweep, stages = [], [], {}
            for _ in range(repeat):
                r = run_pass(dsn, PassOptions(), now=now)
                steady.append(r["duration_s"])
                stages["steady"] = r["stage_seconds"]
            for _ in range(2):
                _sweep_next(conn)
                r = run_pass(dsn, PassOptions(), now=now)
                sweep.append(r["duration_s"])
                stages["sweep"] = r["stage_seconds"]
            med, med_sweep = statistics.median(steady), statistics.median(sweep)
            out["sizes"][str(n)] = {"units": n, "first_pass_s": first["duration_s"], "steady_pass_s": steady,
                                    "median_s": med, "sweep_pass_s": sweep, "sweep_median_s": med_sweep,
                                    "hourly_mean_s": (59 * med + med_sweep) / 60, "stage_seconds": stages,
                                    "open_alerts": r["open_alerts"]}
            log(f"scaling: {n:,} units: pass {med:.1f} s, first of the hour {med_sweep:.1f} s "
                f"(first ever {first['duration_s']:.1f} s)")
    done = list(out["sizes"].values())
    if len(done) >= 2:
        a, b = done[0], done[-1]
        out["ratio"] = b["median_s"] / a["median_s"]
        out["sweep_ratio"] = b["sweep_median_s"] / a["sweep_median_s"]
        out["units_ratio"] = b["units"] / a["units"]
    return out
