"""Incremental rollups: unit_hourly from the raw hypertables, unit_daily from unit_hourly.

Each pass refreshes the current hour; the first pass of every hour
recomputes from (watermark - grace), so data arriving late within the grace window is
aggregated again within the hour it arrives; the upsert
(`ON CONFLICT DO UPDATE`) makes a pass idempotent. Retention drops whole raw chunks older
than the setting with TimescaleDB's `drop_chunks` (the rollups keep the history).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

HOURLY_WATERMARK = "rollup_hourly"
MAX_SAMPLE_GAP = "5 minutes"  # a sample counts for the time until the next one, at most this long
TRIP_SILENCE = timedelta(minutes=15)  # longest silence trips are counted across (the default offline
# threshold: a unit silent longer is offline, and its faults are lost too), and how far back a window looks

# the same upsert ends both rollup statements (hourly from raw rows, daily from hours)
_UPSERT_TAIL = """
ON CONFLICT (unit_id, bucket) DO UPDATE SET
    samples = EXCLUDED.samples, trips = EXCLUDED.trips, door_cycles = EXCLUDED.door_cycles,
    door_reopens = EXCLUDED.door_reopens, leveling_samples = EXCLUDED.leveling_samples,
    vibration_samples = EXCLUDED.vibration_samples,
    door_close_ms_mean = EXCLUDED.door_close_ms_mean, door_close_ms_p95 = EXCLUDED.door_close_ms_p95,
    leveling_abs_mean = EXCLUDED.leveling_abs_mean, leveling_abs_max = EXCLUDED.leveling_abs_max,
    vibration_mean = EXCLUDED.vibration_mean, vibration_p95 = EXCLUDED.vibration_p95,
    motor_temp_max = EXCLUDED.motor_temp_max, motor_temp_min = EXCLUDED.motor_temp_min,
    mode_seconds = EXCLUDED.mode_seconds, faults = EXCLUDED.faults,
    first_seen = EXCLUDED.first_seen, last_seen = EXCLUDED.last_seen, computed_at = now()
"""

_HOURLY = """
WITH raw AS (
    SELECT unit_id, time, mode, door_close_ms, abs(leveling_mm) AS lev, vibration_mg, motor_temp_c,
           -- trips: how far run_count got past every earlier sample's (a running max: samples without
           -- it and counter resets count nothing), including the sample before the window; not across
           -- a silence longer than TRIP_SILENCE: the faults of an outage are lost too, and trips
           -- without their faults would understate every rate per trip
           CASE WHEN time - lag(time) OVER w <= %(lookback)s
                THEN GREATEST(run_count - max(run_count) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
           END AS trips,
           -- free-form device field: a number counts (clamped to 0..100), anything else is ignored
           CASE WHEN jsonb_typeof(extra -> 'door_reopens') = 'number'
                THEN LEAST(GREATEST((extra ->> 'door_reopens')::numeric, 0), 100)::int END AS reopens,
           LEAST(COALESCE(lead(time) OVER w, time), time + %(gap)s::interval) - time AS dur
      FROM telemetry
     WHERE time >= %(from)s - %(lookback)s AND time < %(to)s
    WINDOW w AS (PARTITION BY unit_id ORDER BY time, seq)
), s AS (
    SELECT * FROM raw WHERE time >= %(from)s
), agg AS (
    SELECT unit_id, time_bucket('1 hour', time) AS bucket, count(*) AS samples,
           COALESCE(sum(trips), 0) AS trips,
           count(door_close_ms) AS door_cycles, COALESCE(sum(reopens), 0) AS reopens,
           avg(door_close_ms) AS dc_mean,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY door_close_ms) AS dc_p95,
           avg(lev) AS lev_mean, max(lev) AS lev_max, count(lev) AS lev_n,
           avg(vibration_mg) AS vib_mean, count(vibration_mg) AS vib_n,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY vibration_mg) AS vib_p95,
           max(motor_temp_c) AS temp_max, min(motor_temp_c) AS temp_min, min(time) AS first_seen, max(time) AS last_seen
      FROM s GROUP BY 1, 2
), modes AS (
    SELECT unit_id, bucket, jsonb_object_agg(mode, secs) AS mode_seconds
      FROM (SELECT unit_id, time_bucket('1 hour', time) AS bucket, COALESCE(mode, 'unknown') AS mode,
                   round(extract(epoch FROM sum(dur)))::int AS secs
              FROM s GROUP BY 1, 2, 3) m
     GROUP BY 1, 2
), faults AS (
    SELECT unit_id, bucket, jsonb_object_agg(code, n) AS faults
      FROM (SELECT unit_id, time_bucket('1 hour', time) AS bucket, code, count(*) AS n
              FROM events WHERE state = 'raised' AND time >= %(from)s AND time < %(to)s
             GROUP BY 1, 2, 3) f
     GROUP BY 1, 2
)
INSERT INTO unit_hourly AS h (unit_id, bucket, samples, trips, door_cycles, door_reopens, leveling_samples,
                              vibration_samples, door_close_ms_mean, door_close_ms_p95,
                              leveling_abs_mean, leveling_abs_max, vibration_mean, vibration_p95, motor_temp_max,
                              motor_temp_min, mode_seconds, faults, first_seen, last_seen, computed_at)
SELECT COALESCE(a.unit_id, f.unit_id), COALESCE(a.bucket, f.bucket), COALESCE(a.samples, 0), COALESCE(a.trips, 0),
       COALESCE(a.door_cycles, 0), COALESCE(a.reopens, 0), COALESCE(a.lev_n, 0), COALESCE(a.vib_n, 0), a.dc_mean, a.dc_p95, a.lev_mean, a.lev_max, a.vib_mean, a.vib_p95, a.temp_max,
       a.temp_min, COALESCE(m.mode_seconds, '{}'), COALESCE(f.faults, '{}'), a.first_seen, a.last_seen, now()
  FROM agg a
  LEFT JOIN modes m USING (unit_id, bucket)
  FULL JOIN faults f ON f.unit_id = a.unit_id AND f.bucket = a.bucket
""" + _UPSERT_TAIL  # noqa: S608 - constant text only

_DAILY = """
WITH hours AS (
    SELECT * FROM unit_hourly WHERE bucket >= %(from)s AND bucket < %(to)s
), agg AS (
    SELECT unit_id, time_bucket('1 day', bucket) AS day, sum(samples)::int AS samples, sum(trips)::int AS trips,
           sum(door_cycles)::int AS door_cycles, sum(door_reopens)::int AS door_reopens,
           sum(door_close_ms_mean * door_cycles) / NULLIF(sum(door_cycles) FILTER (WHERE door_close_ms_mean IS NOT NULL), 0) AS dc_mean,
           max(door_close_ms_p95) AS dc_p95,
           sum(leveling_samples)::int AS lev_n, sum(vibration_samples)::int AS vib_n,
           sum(leveling_abs_mean * leveling_samples) FILTER (WHERE leveling_abs_mean IS NOT NULL)
             / NULLIF(sum(leveling_samples) FILTER (WHERE leveling_abs_mean IS NOT NULL), 0) AS lev_mean,
           max(leveling_abs_max) AS lev_max,
           sum(vibration_mean * vibration_samples) FILTER (WHERE vibration_mean IS NOT NULL)
             / NULLIF(sum(vibration_samples) FILTER (WHERE vibration_mean IS NOT NULL), 0) AS vib_mean,
           max(vibration_p95) AS vib_p95, max(motor_temp_max) AS temp_max, min(motor_temp_min) AS temp_min,
           min(first_seen) AS first_seen, max(last_seen) AS last_seen
      FROM hours GROUP BY 1, 2
), modes AS (
    SELECT unit_id, day, jsonb_object_agg(k, v) AS mode_seconds
      FROM (SELECT unit_id, time_bucket('1 day', bucket) AS day, e.key AS k, sum(e.value::int) AS v
              FROM hours, jsonb_each_text(mode_seconds) e GROUP BY 1, 2, 3) x GROUP BY 1, 2
), faults AS (
    SELECT unit_id, day, jsonb_object_agg(k, v) AS faults
      FROM (SELECT unit_id, time_bucket('1 day', bucket) AS day, e.key AS k, sum(e.value::int) AS v
              FROM hours, jsonb_each_text(faults) e GROUP BY 1, 2, 3) x GROUP BY 1, 2
)
INSERT INTO unit_daily (unit_id, bucket, samples, trips, door_cycles, door_reopens, leveling_samples, vibration_samples,
                        door_close_ms_mean, door_close_ms_p95,
                        leveling_abs_mean, leveling_abs_max, vibration_mean, vibration_p95, motor_temp_max,
                        motor_temp_min, mode_seconds, faults, first_seen, last_seen, computed_at)
SELECT a.unit_id, a.day, a.samples, a.trips, a.door_cycles, a.door_reopens, a.lev_n, a.vib_n, a.dc_mean, a.dc_p95, a.lev_mean, a.lev_max, a.vib_mean,
       a.vib_p95, a.temp_max, a.temp_min, COALESCE(m.mode_seconds, '{}'), COALESCE(f.faults, '{}'), a.first_seen,
       a.last_seen, now()
  FROM agg a LEFT JOIN modes m USING (unit_id, day) LEFT JOIN faults f USING (unit_id, day)
""" + _UPSERT_TAIL  # noqa: S608 - constant text only


@dataclass
class RollupResult:
    window_from: datetime
    window_to: datetime
    hourly_rows: int
    daily_rows: int
    chunks_dropped: int = 0


def _floor(t: datetime, step: timedelta) -> datetime:
    epoch = datetime(2000, 1, 1, tzinfo=t.tzinfo)
    return t - (t - epoch) % step


def update_rollups(conn: psycopg.Connection, *, now: datetime, grace: timedelta,
                   first_window: timedelta) -> RollupResult:
    """Recompute the hours that may have changed, and the days those hours touch (dict rows).

    The first pass of an hour (the watermark, the hour of the last pass, moves) recomputes from
    (watermark - grace): late data is aggregated within the hour it arrives. The other passes
    of the hour (the loop runs every minute) recompute only the current hour: the grace sweep over
    every unit's last seven hours on every pass is what made a pass slow at 20,000 units."""
    with conn.transaction():
        row = conn.execute("SELECT value FROM analytics_state WHERE key = %s FOR UPDATE", (HOURLY_WATERMARK,)).fetchone()
        wm = row["value"] if row else None
        hour = _floor(now, timedelta(hours=1))
        if wm is None:
            start = _floor(now - first_window, timedelta(hours=1))
        elif hour > wm:
            start = _floor(wm - grace, timedelta(hours=1))
        else:
            start = min(hour, _floor(wm, timedelta(hours=1)))
        end = hour + timedelta(hours=1)
        # trips look back TRIP_SILENCE for the run_count before `start`; across a longer silence
        # they are not counted at all, whatever the pass timing (see _HOURLY).
        hourly = conn.execute(_HOURLY, {"from": start, "to": end, "gap": MAX_SAMPLE_GAP,
                                        "lookback": TRIP_SILENCE}).rowcount
        day_start = _floor(start, timedelta(days=1))
        daily = conn.execute(_DAILY, {"from": day_start, "to": end}).rowcount
        conn.execute(
            """INSERT INTO analytics_state (key, value) VALUES (%s, %s)
               ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()""",
            (HOURLY_WATERMARK, _floor(now, timedelta(hours=1))))
    return RollupResult(start, end, hourly, daily)


def drop_old_chunks(conn: psycopg.Connection, *, before: datetime) -> int:
    """Drop raw telemetry and event chunks that end before `before` (the pass's now minus the
    retention: an interval would be measured from the database clock instead); return how many."""
    dropped = 0
    for table in ("telemetry", "events"):
        rows = conn.execute("SELECT drop_chunks(%s::regclass, older_than => %s::timestamptz)", (table, before)).fetchall()
        dropped += len(rows)
    return dropped
