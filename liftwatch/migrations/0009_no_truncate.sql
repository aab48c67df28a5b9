-- Row triggers do not fire on TRUNCATE: signatures and the ledger already refuse it (0004),
-- but the audit log and the work orders with their items could still be emptied in one
-- statement. Records that must never be altered refuse TRUNCATE too (noticed in issue #8).
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION liftwatch_refuse_change();
CREATE TRIGGER work_orders_no_truncate BEFORE TRUNCATE ON work_orders
    FOR EACH STATEMENT EXECUTE FUNCTION liftwatch_refuse_change();
CREATE TRIGGER work_order_items_no_truncate BEFORE TRUNCATE ON work_order_items
    FOR EACH STATEMENT EXECUTE FUNCTION liftwatch_refuse_change();
