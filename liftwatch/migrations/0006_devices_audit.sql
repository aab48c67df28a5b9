-- Device identity (one broker login per unit) and the audit log of logins and privileged
-- actions. The broker's password file holds the salted hashes; this table records who was
-- provisioned and revoked when, so an operator can answer "which devices may speak?".

CREATE TABLE device_credentials (
    username       text PRIMARY KEY,              -- the unit id, or a service account name
    unit_id        text REFERENCES units,         -- NULL for service accounts (ingest, simulator)
    account_kind   text NOT NULL CHECK (account_kind IN ('device', 'service')),
    provisioned_at timestamptz NOT NULL DEFAULT now(),
    rotated_at     timestamptz,
    revoked_at     timestamptz,
    CHECK ((account_kind = 'device') = (unit_id IS NOT NULL))
);

CREATE TABLE audit_log (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text NOT NULL,                      -- username, 'cli:<os user>' or 'anonymous'
    action    text NOT NULL,                      -- login_ok, login_failed, key_enrolled, device_provisioned, ...
    object    text,
    detail    jsonb NOT NULL DEFAULT '{}',
    client_ip inet
);
CREATE INDEX audit_log_at_idx ON audit_log (at);

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION liftwatch_refuse_change();
