-- Analytics: per-unit rollups maintained by `liftwatch analytics run` (the Apache edition of
-- TimescaleDB has no continuous aggregates), the analytics run log, and derived per-unit
-- assessments (anomaly score, risk grade).

CREATE TABLE unit_hourly (
    unit_id            text        NOT NULL,
    bucket             timestamptz NOT NULL,
    samples            integer     NOT NULL,
    trips              integer     NOT NULL DEFAULT 0,   -- run_count advance within the hour
    door_cycles        integer     NOT NULL DEFAULT 0,   -- samples reporting a door close time
    door_close_ms_mean real,
    door_close_ms_p95  real,
    leveling_abs_mean  real,                             -- |stop error| at the landing, mm
    leveling_abs_max   real,
    vibration_mean     real,
    vibration_p95      real,
    motor_temp_max     real,
    mode_seconds       jsonb       NOT NULL DEFAULT '{}', -- time in each mode; a sample stands for at most 5 min
    faults             jsonb       NOT NULL DEFAULT '{}', -- raised events per code
    first_seen         timestamptz,
    last_seen          timestamptz,
    computed_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (unit_id, bucket)
);
CREATE INDEX unit_hourly_bucket_idx ON unit_hourly (bucket);

-- Days are combined from hours: sums and maxima are exact, means are sample-weighted, and
-- the daily p95 is the largest hourly p95 (a conservative stand-in for the true daily p95).
CREATE TABLE unit_daily (LIKE unit_hourly INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE unit_daily ADD PRIMARY KEY (unit_id, bucket);
CREATE INDEX unit_daily_bucket_idx ON unit_daily (bucket);

CREATE TABLE analytics_state (
    key        text PRIMARY KEY,
    value      timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE analytics_runs (
    run_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz,
    status       text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'ok', 'failed')),
    window_from  timestamptz,
    window_to    timestamptz,
    parameters   jsonb NOT NULL DEFAULT '{}',
    code_version text NOT NULL,
    counts       jsonb NOT NULL DEFAULT '{}',
    duration_s   double precision,
    error        text
);

-- The latest assessment of each unit, rewritten by each run that computes it.
CREATE TABLE unit_assessments (
    unit_id          text PRIMARY KEY REFERENCES units,
    assessed_at      timestamptz NOT NULL,
    anomaly_score    double precision,
    anomaly_flagged  boolean NOT NULL DEFAULT false,
    anomaly_reasons  jsonb NOT NULL DEFAULT '[]',
    risk_grade       text CHECK (risk_grade IN ('A', 'B', 'C', 'D')),
    risk_reasons     jsonb NOT NULL DEFAULT '[]',
    advised_half_monthly_days integer,
    run_id           bigint REFERENCES analytics_runs
);
