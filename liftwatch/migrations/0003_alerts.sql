-- Alerts, in one table with their whole lifecycle: at most one OPEN alert per (unit, kind);
-- a pass of the analytics opens, updates or resolves it; acknowledgement keeps who and when;
-- resolved rows stay as history. The ingestor opens `entrapment` alerts directly (seconds
-- matter for a trapped passenger); the analytics job owns the rest of the lifecycle.

CREATE TABLE alerts (
    alert_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    unit_id         text        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('maintenance_overdue', 'maintenance_due_soon',
                        'countersign_missing', 'unverified_visit', 'inspection_overdue', 'inspection_due_soon',
                        'anomaly_prone', 'frequent_faults', 'offline', 'entrapment')),
    severity        text        NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    status          text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    reason          text        NOT NULL,           -- one human-readable sentence
    details         jsonb       NOT NULL DEFAULT '{}',  -- the numbers behind the reason
    source          text        NOT NULL,           -- 'ingest' or 'analytics'
    opened_at       timestamptz NOT NULL DEFAULT now(),
    event_time      timestamptz,                    -- when the cause happened (device time), if known
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    resolved_at     timestamptz,
    acknowledged_by text,
    acknowledged_at timestamptz,
    CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
);
CREATE UNIQUE INDEX alerts_one_open_per_unit_kind ON alerts (unit_id, kind) WHERE status = 'open';
CREATE INDEX alerts_open_idx ON alerts (kind, severity) WHERE status = 'open';
CREATE INDEX alerts_unit_idx ON alerts (unit_id, opened_at DESC);
