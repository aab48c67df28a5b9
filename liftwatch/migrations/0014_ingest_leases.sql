-- Active/standby ingestors (issue #17): two replicas share one MQTT client id, hence one
-- persistent session and its queued backlog on the broker, and only the holder of this lease
-- connects. The holder renews it every second; a standby takes it over when it has expired
-- (a hung holder) or at once when the holder's lease connection is gone (a killed holder),
-- unless that connection only went away with a database restart (then the holder gets the
-- time-to-live to come back). See ingest/lease.py and docs/reliability.md.
CREATE TABLE ingest_leases (
    name          text PRIMARY KEY,               -- the MQTT client id the pair shares
    holder        text NOT NULL,                  -- replica identity: host:pid:random
    backend_pid   int NOT NULL,                   -- the holder's lease connection ...
    backend_start timestamptz NOT NULL,           -- ... and when it started (pids are reused)
    acquired_at   timestamptz NOT NULL DEFAULT now(),
    renewed_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    handovers     integer NOT NULL DEFAULT 0      -- how often another replica took it over
);
