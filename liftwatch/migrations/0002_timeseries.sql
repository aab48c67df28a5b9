-- Time series written by the ingestor, and the places where nothing is allowed to vanish:
-- rejected_messages (every refused payload, with its reason) and ingest_gaps (seq holes).
--
-- Chunk intervals. TimescaleDB's guidance is that the most recent chunk of each hypertable,
-- indexes included, fits in about a quarter of memory. A city fleet of 5,000 units sampling
-- every 10-30 s writes 15-45 M telemetry rows a day at ~120 bytes each (2-5 GB/day with the
-- one unique index), so one day per telemetry chunk stays well inside that on a 16-32 GB
-- server, matches the daily rollups and makes retention (`drop_chunks` in whole days) exact.
-- Events are some thousands of times rarer, so they get one week per chunk to avoid a
-- swarm of tiny chunks. Default indexes are switched off: the unique (unit_id, time, seq)
-- index is the only one the hot path and the per-unit queries need; time-range scans over
-- all units are served by chunk exclusion.

CREATE TABLE telemetry (
    time          timestamptz NOT NULL,           -- ts from the device
    unit_id       text        NOT NULL,
    seq           bigint      NOT NULL CHECK (seq >= 0),
    received_at   timestamptz NOT NULL DEFAULT now(),   -- when the ingestor wrote it (lag = received_at - time)
    mode          text CHECK (mode IN ('normal', 'inspection', 'fire_return', 'firefighter', 'emergency_power',
                                       'earthquake', 'out_of_service', 'stopped', 'unknown')),
    floor         smallint,
    direction     text CHECK (direction IN ('up', 'down', 'none')),
    moving        boolean,
    door          text CHECK (door IN ('open', 'closed', 'opening', 'closing')),
    door_zone     boolean,
    passengers    boolean,
    speed_mps     real,
    load_pct      real,
    vibration_mg  real,
    motor_temp_c  real,
    leveling_mm   real,
    door_close_ms real,
    run_count     bigint,
    run_hours     double precision,
    extra         jsonb,                           -- fields the contract does not name, kept verbatim
    UNIQUE (unit_id, time, seq)
);
SELECT create_hypertable('telemetry', by_range('time', INTERVAL '1 day'), create_default_indexes => false);

CREATE TABLE events (
    time        timestamptz NOT NULL,
    unit_id     text        NOT NULL,
    seq         bigint      NOT NULL CHECK (seq >= 0),
    received_at timestamptz NOT NULL DEFAULT now(),
    code        text        NOT NULL,              -- vocabulary enforced by the ingestor (liftwatch.contract)
    state       text        NOT NULL CHECK (state IN ('raised', 'cleared')),
    source_code text,                              -- the controller's or sensor's own number for the fault
    detail      jsonb,
    UNIQUE (unit_id, time, seq)
);
SELECT create_hypertable('events', by_range('time', INTERVAL '7 days'), create_default_indexes => false);

-- Every refused payload. Kept as bytes (it may not be UTF-8), at most 64 KiB of it; the size
-- and hash are those of the whole payload. Plain table: it is small unless under attack,
-- and then it is what an operator wants to read.
CREATE TABLE rejected_messages (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at    timestamptz NOT NULL DEFAULT now(),
    topic          text        NOT NULL,
    unit_id        text,                            -- from the topic, when the topic could be parsed
    reason         text        NOT NULL CHECK (reason IN ('invalid_json', 'schema', 'unknown_version',
                       'unknown_code', 'future_ts', 'unknown_unit', 'topic_mismatch', 'too_large',
                       'stale_ts', 'rate_limited')),
    detail         text        NOT NULL,            -- which field, what was wrong
    payload        bytea       NOT NULL,
    payload_size   integer     NOT NULL,
    payload_sha256 bytea       NOT NULL
);
CREATE INDEX rejected_messages_received_idx ON rejected_messages (received_at);

-- Holes in a unit's seq that did not fill within the settle time: loss upstream of the broker.
CREATE TABLE ingest_gaps (
    unit_id     text        NOT NULL,
    from_seq    bigint      NOT NULL,
    to_seq      bigint      NOT NULL,
    missing     bigint      GENERATED ALWAYS AS (to_seq - from_seq + 1) STORED,
    filled      bigint      NOT NULL DEFAULT 0,     -- seqs of the hole that arrived after all (late delivery)
    detected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (unit_id, from_seq),
    CHECK (to_seq >= from_seq)
);

-- Per-unit ingest bookkeeping, updated in each batch's transaction (so replicas agree):
-- next_seq = lowest seq not yet seen contiguously; ahead = seqs seen beyond a hole.
CREATE TABLE unit_ingest_state (
    unit_id          text PRIMARY KEY,
    next_seq         bigint      NOT NULL,
    ahead            bigint[]    NOT NULL DEFAULT '{}',
    hole_since       timestamptz,
    last_time        timestamptz,                   -- newest device ts seen (offline detection)
    last_received_at timestamptz NOT NULL DEFAULT now()
);
