-- What the telemetry said about each signed visit, recorded by the analytics pass while the
-- raw rows exist. LIFTWATCH_RETENTION_DAYS drops raw telemetry and events after a month or
-- more; the company scorecards read raw rows directly (0007), so every visit of a month older
-- than the retention would have turned 'unverified' with no faults after it. They read this
-- table now. A pass measures a visit until 72 hours after its signature (late telemetry, the
-- faults after it); after that the unverified-visit rule reads the verdict from here instead of
-- scanning the raw rows again on every pass.

CREATE TABLE visit_checks (
    work_order_id      bigint      PRIMARY KEY REFERENCES work_orders,
    unit_id            text        NOT NULL,
    samples            integer     NOT NULL,  -- telemetry in check-in .. signature (± 10 min)
    inspection_samples integer     NOT NULL,  -- of which in inspection mode
    modes_seen         text[]      NOT NULL DEFAULT '{}',  -- the modes those samples reported
    verdict            text        NOT NULL CHECK (verdict IN ('verified', 'no_inspection_mode', 'unverifiable')),
    faults_72h         integer     NOT NULL,  -- raised events in the 72 h after the signature (so far)
    checked_at         timestamptz NOT NULL DEFAULT now()
);

-- the visits signed so far, from whatever raw rows there are now
INSERT INTO visit_checks (work_order_id, unit_id, samples, inspection_samples, modes_seen, verdict, faults_72h)
SELECT w.work_order_id, w.unit_id, c.samples, c.inspection_samples, COALESCE(c.modes_seen, '{}'),
       CASE WHEN c.inspection_samples > 0 THEN 'verified' WHEN c.samples = 0 THEN 'unverifiable'
            ELSE 'no_inspection_mode' END,
       (SELECT count(*) FROM events e WHERE e.unit_id = w.unit_id AND e.state = 'raised'
           AND e.time > w.signed_at AND e.time <= w.signed_at + interval '72 hours')
  FROM work_orders w
  CROSS JOIN LATERAL (
      SELECT count(*) AS samples, count(*) FILTER (WHERE t.mode = 'inspection') AS inspection_samples,
             array_agg(DISTINCT t.mode) FILTER (WHERE t.mode IS NOT NULL) AS modes_seen
        FROM telemetry t WHERE t.unit_id = w.unit_id
         AND t.time BETWEEN w.checked_in_at - interval '10 minutes' AND w.signed_at + interval '10 minutes') c
 WHERE w.status IN ('signed', 'closed');

CREATE OR REPLACE VIEW company_monthly_scorecards AS
WITH o AS (
    SELECT w.company_id, date_trunc('month', w.due_on)::date AS month, w.work_order_id, w.unit_id,
           w.due_on, w.status, w.checked_in_at, w.signed_at, w.closed_at
      FROM work_orders w
     WHERE w.status <> 'cancelled' AND (w.due_on <= current_date OR w.signed_at IS NOT NULL)
), per_order AS (
    SELECT o.*,
           o.signed_at IS NOT NULL AND o.signed_at::date <= o.due_on AS on_time,
           -- a visit signed moments ago and not yet checked by a pass is not counted either way
           o.signed_at IS NOT NULL AND COALESCE(vc.verdict <> 'verified', false) AS unverified,
           COALESCE(vc.faults_72h, 0) AS faults_after
      FROM o LEFT JOIN visit_checks vc USING (work_order_id)
)
SELECT company_id, month,
       count(*)                                             AS orders_due,
       count(*) FILTER (WHERE signed_at IS NOT NULL)        AS orders_signed,
       count(*) FILTER (WHERE on_time)                      AS on_time,
       round(100.0 * count(*) FILTER (WHERE on_time) / count(*), 1) AS on_time_pct,
       count(*) FILTER (WHERE unverified)                   AS unverified_visits,
       round(100.0 * count(*) FILTER (WHERE unverified) / NULLIF(count(*) FILTER (WHERE signed_at IS NOT NULL), 0), 1)
                                                            AS unverified_pct,
       round((avg(extract(epoch FROM closed_at - signed_at)) / 3600)::numeric, 1) AS countersign_avg_h,
       count(*) FILTER (WHERE status = 'signed')            AS awaiting_countersign,
       sum(faults_after)::int                               AS faults_72h_after_visits
  FROM per_order
 GROUP BY company_id, month;
