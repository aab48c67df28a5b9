-- Go-live for a whole city fleet: dumbwaiters (杂物电梯, TSG T5002 Annex C) as a unit kind, the
-- maintenance history an existing fleet brings with it (legacy records: paper archives or a
-- previous system), and one view that says, per plan, when the plan's items were last done.

ALTER TABLE units DROP CONSTRAINT units_kind_check;
ALTER TABLE units ADD CONSTRAINT units_kind_check
    CHECK (kind IN ('traction', 'hydraulic', 'dumbwaiter', 'escalator', 'moving_walk'));

-- Kinds of visit whose items include those of `kind`: the annexes accumulate, so an annual
-- visit also covers the half-monthly items (the same table as maintenance/schedule.py).
CREATE FUNCTION liftwatch_covering_kinds(kind text) RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE kind WHEN 'half_monthly' THEN ARRAY['half_monthly', 'quarterly', 'semi_annual', 'annual']
                     WHEN 'quarterly'    THEN ARRAY['quarterly', 'semi_annual', 'annual']
                     WHEN 'semi_annual'  THEN ARRAY['semi_annual', 'annual']
                     WHEN 'annual'       THEN ARRAY['annual'] END
$$;

-- One imported visit of the past. Not e-signed, never in the ledger, never a work order: a
-- pointer to where the original record lives (archive box, previous system's id) and the
-- date the plan's clock counts from. Append-only like every record here.
CREATE TABLE legacy_maintenance (
    legacy_id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    unit_id             text NOT NULL REFERENCES units,
    kind                text NOT NULL CHECK (kind IN ('half_monthly', 'quarterly', 'semi_annual', 'annual')),
    visit_on            date NOT NULL,              -- the date in the source, local to the fleet
    counts_from         timestamptz NOT NULL,       -- the instant due dates count from (see docs/maintenance.md)
    company_id          text NOT NULL REFERENCES companies,
    technician_name     text NOT NULL CHECK (length(technician_name) BETWEEN 1 AND 100),
    technician_cert_no  text CHECK (length(technician_cert_no) <= 64),
    archive_ref         text CHECK (length(archive_ref) <= 200),       -- paper archive reference
    source_system       text CHECK (length(source_system) <= 100),     -- previous system's name
    source_record_id    text CHECK (length(source_record_id) <= 200),  -- its id there
    note                text NOT NULL DEFAULT '' CHECK (length(note) <= 2000),
    import_sha256       text NOT NULL CHECK (import_sha256 ~ '^[0-9a-f]{64}$'),  -- the file it came in
    imported_by         text NOT NULL,
    imported_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (archive_ref IS NOT NULL OR source_record_id IS NOT NULL),  -- where the original lives
    UNIQUE (unit_id, kind, visit_on)
);

CREATE TRIGGER legacy_maintenance_immutable BEFORE UPDATE OR DELETE ON legacy_maintenance
    FOR EACH ROW EXECUTE FUNCTION liftwatch_refuse_change();
CREATE TRIGGER legacy_maintenance_no_truncate BEFORE TRUNCATE ON legacy_maintenance
    FOR EACH STATEMENT EXECUTE FUNCTION liftwatch_refuse_change();

-- Per active plan: the last e-signed visit covering its items, the last imported one, and the
-- later of the two (what due dates and the overdue rule count from). `last_done_on` is the
-- date the next due date is computed from: the signature's date, or the imported visit's own.
CREATE VIEW maintenance_plan_clock AS
SELECT p.plan_id, p.unit_id, p.kind, p.interval_days, p.checklist_id, p.created_at AS plan_start,
       s.last_signed_at, l.last_legacy_at, l.last_legacy_on,
       GREATEST(s.last_signed_at, l.last_legacy_at) AS last_done_at,
       CASE WHEN l.last_legacy_at IS NOT NULL AND (s.last_signed_at IS NULL OR l.last_legacy_at > s.last_signed_at)
            THEN 'legacy' WHEN s.last_signed_at IS NOT NULL THEN 'signed' END AS last_done_source,
       CASE WHEN l.last_legacy_at IS NOT NULL AND (s.last_signed_at IS NULL OR l.last_legacy_at > s.last_signed_at)
            THEN l.last_legacy_on ELSE s.last_signed_at::date END AS last_done_on
  FROM maintenance_plans p
  LEFT JOIN LATERAL (SELECT max(w.signed_at) AS last_signed_at FROM work_orders w
                      WHERE w.unit_id = p.unit_id AND w.status IN ('signed', 'closed')
                        AND w.kind = ANY (liftwatch_covering_kinds(p.kind))) s ON true
  LEFT JOIN LATERAL (SELECT max(g.counts_from) AS last_legacy_at, max(g.visit_on) AS last_legacy_on
                       FROM legacy_maintenance g
                      WHERE g.unit_id = p.unit_id AND g.kind = ANY (liftwatch_covering_kinds(p.kind))) l ON true
 WHERE p.active;
