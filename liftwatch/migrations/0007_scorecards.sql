-- Maintenance-company scorecards, per company and month of the due date: how many orders
-- were due, how many were signed on time, how many visits the telemetry does not confirm
-- (no inspection mode within 10 minutes of the check-in..signature window), how long the
-- user units took to countersign, and how many faults the units raised in the 72 hours
-- after a visit. A view: always current, nothing to keep in step.

CREATE VIEW company_monthly_scorecards AS
WITH o AS (
    SELECT w.company_id, date_trunc('month', w.due_on)::date AS month, w.work_order_id, w.unit_id,
           w.due_on, w.status, w.checked_in_at, w.signed_at, w.closed_at
      FROM work_orders w
     WHERE w.status <> 'cancelled' AND (w.due_on <= current_date OR w.signed_at IS NOT NULL)
), per_order AS (
    SELECT o.*,
           o.signed_at IS NOT NULL AND o.signed_at::date <= o.due_on AS on_time,
           o.signed_at IS NOT NULL AND NOT EXISTS (
               SELECT 1 FROM telemetry t
                WHERE t.unit_id = o.unit_id AND t.mode = 'inspection'
                  AND t.time BETWEEN o.checked_in_at - interval '10 minutes' AND o.signed_at + interval '10 minutes'
           ) AS unverified,
           (SELECT count(*) FROM events e
             WHERE e.unit_id = o.unit_id AND e.state = 'raised' AND o.signed_at IS NOT NULL
               AND e.time > o.signed_at AND e.time <= o.signed_at + interval '72 hours') AS faults_after
      FROM o
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
