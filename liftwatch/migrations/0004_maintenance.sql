-- Paperless maintenance: accounts, signing keys, plans, work orders and their items,
-- signatures, the hash-chained ledger, hazards. Signed records can never be altered:
-- triggers below refuse UPDATE and DELETE on what has been signed.

CREATE TABLE users (
    user_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      text NOT NULL UNIQUE CHECK (username ~ '^[A-Za-z0-9][A-Za-z0-9._@-]{1,63}$'),
    person_id     bigint NOT NULL UNIQUE REFERENCES people,
    password_hash text NOT NULL,                  -- argon2id
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Ed25519 public keys enrolled by their holders; the private key never reaches the server.
CREATE TABLE signing_keys (
    key_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id   bigint NOT NULL REFERENCES people,
    algorithm   text NOT NULL DEFAULT 'Ed25519' CHECK (algorithm = 'Ed25519'),
    public_key  bytea NOT NULL UNIQUE CHECK (length(public_key) = 32),
    label       text NOT NULL DEFAULT '',
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    enrolled_at timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL))
);
CREATE INDEX signing_keys_person_idx ON signing_keys (person_id);

-- One plan per unit and kind; intervals are data (an on-demand scheme may lengthen them).
CREATE TABLE maintenance_plans (
    plan_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    unit_id       text NOT NULL REFERENCES units,
    kind          text NOT NULL CHECK (kind IN ('half_monthly', 'quarterly', 'semi_annual', 'annual')),
    interval_days integer NOT NULL CHECK (interval_days BETWEEN 1 AND 731),
    checklist_id  text NOT NULL,
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (unit_id, kind)
);

CREATE TABLE work_orders (
    work_order_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    unit_id           text NOT NULL REFERENCES units,
    plan_id           bigint REFERENCES maintenance_plans,
    kind              text NOT NULL CHECK (kind IN ('half_monthly', 'quarterly', 'semi_annual', 'annual')),
    checklist_id      text NOT NULL,
    checklist_version integer NOT NULL,
    company_id        text NOT NULL REFERENCES companies,  -- maintenance company when created
    due_on            date NOT NULL,
    status            text NOT NULL DEFAULT 'open'
                      CHECK (status IN ('open', 'in_progress', 'signed', 'closed', 'cancelled')),
    corrects_id       bigint REFERENCES work_orders,       -- a correction references the signed original
    technician_id     bigint REFERENCES people,
    checked_in_at     timestamptz,
    check_in_lat      double precision CHECK (check_in_lat BETWEEN -90 AND 90),
    check_in_lon      double precision CHECK (check_in_lon BETWEEN -180 AND 180),
    record            jsonb,                               -- frozen at the technician's signature
    record_sha256     text CHECK (record_sha256 ~ '^[0-9a-f]{64}$'),
    signed_at         timestamptz,
    closed_at         timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (status IN ('open', 'cancelled') OR checked_in_at IS NOT NULL),
    CHECK (status NOT IN ('signed', 'closed') OR (record IS NOT NULL AND record_sha256 IS NOT NULL AND signed_at IS NOT NULL)),
    CHECK ((status = 'closed') = (closed_at IS NOT NULL))
);
CREATE INDEX work_orders_unit_idx ON work_orders (unit_id, due_on);
CREATE INDEX work_orders_open_idx ON work_orders (status, due_on) WHERE status IN ('open', 'in_progress', 'signed');
-- at most one unfinished scheduled order per plan: `maintenance schedule` can run any number of times
CREATE UNIQUE INDEX work_orders_one_pending_per_plan ON work_orders (plan_id)
    WHERE status IN ('open', 'in_progress') AND plan_id IS NOT NULL;

CREATE TABLE work_order_items (
    work_order_id  bigint NOT NULL REFERENCES work_orders,
    code           text NOT NULL,
    position       smallint NOT NULL,
    result         text CHECK (result IN ('ok', 'adjusted', 'replaced', 'not_applicable', 'defect')),
    measured_value double precision,
    note           text NOT NULL DEFAULT '' CHECK (length(note) <= 2000),
    updated_at     timestamptz,
    updated_by     bigint REFERENCES people,
    PRIMARY KEY (work_order_id, code)
);

CREATE TABLE signatures (
    signature_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    work_order_id bigint NOT NULL REFERENCES work_orders,
    person_id     bigint NOT NULL REFERENCES people,
    key_id        bigint NOT NULL REFERENCES signing_keys,
    meaning       text NOT NULL CHECK (meaning IN ('performed', 'confirmed')),
    payload       jsonb NOT NULL,          -- {record_sha256, signer_id, name, role, meaning, signed_at}
    signature     bytea NOT NULL UNIQUE CHECK (length(signature) = 64),
    received_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (work_order_id, meaning)
);

-- Every accepted signature, chained: entry_hash = sha256(JCS(entry)), entry.prev_hash = the
-- previous row's entry_hash. Appended under a lock, so concurrent signing cannot fork it.
CREATE TABLE ledger (
    seq          bigint PRIMARY KEY CHECK (seq >= 1),
    signature_id bigint NOT NULL UNIQUE REFERENCES signatures,
    entry        jsonb NOT NULL,
    prev_hash    text NOT NULL CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
    entry_hash   text NOT NULL UNIQUE CHECK (entry_hash ~ '^[0-9a-f]{64}$'),
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE hazards (
    hazard_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    unit_id       text NOT NULL REFERENCES units,
    source        text NOT NULL CHECK (source IN ('defect', 'staff', 'public')),
    work_order_id bigint REFERENCES work_orders,
    item_code     text,
    description   text NOT NULL CHECK (length(description) BETWEEN 1 AND 2000),
    reported_by   bigint REFERENCES people,
    contact       text CHECK (length(contact) <= 200),   -- public reporter's phone or name, optional
    status        text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'assigned', 'rectified', 'closed')),
    assigned_to   bigint REFERENCES people,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    closed_at     timestamptz
);
CREATE INDEX hazards_unit_idx ON hazards (unit_id, created_at DESC);
CREATE INDEX hazards_open_idx ON hazards (status) WHERE status <> 'closed';

CREATE TABLE hazard_events (
    hazard_id bigint NOT NULL REFERENCES hazards,
    at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor     bigint REFERENCES people,
    action    text NOT NULL CHECK (action IN ('reported', 'assigned', 'rectified', 'closed', 'reopened')),
    note      text NOT NULL DEFAULT ''
);
CREATE INDEX hazard_events_idx ON hazard_events (hazard_id, at);

-- --- immutability ------------------------------------------------------------------------

CREATE FUNCTION liftwatch_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on % is not allowed: signed records are immutable', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END $$;

CREATE TRIGGER signatures_immutable BEFORE UPDATE OR DELETE ON signatures
    FOR EACH ROW EXECUTE FUNCTION liftwatch_refuse_change();
CREATE TRIGGER ledger_immutable BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION liftwatch_refuse_change();
CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION liftwatch_refuse_change();
CREATE TRIGGER signatures_no_truncate BEFORE TRUNCATE ON signatures
    FOR EACH STATEMENT EXECUTE FUNCTION liftwatch_refuse_change();

-- A signed order may only move signed -> closed (the countersignature); nothing else changes.
CREATE FUNCTION liftwatch_guard_work_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status IN ('signed', 'closed') THEN
            RAISE EXCEPTION 'work order % is signed and cannot be deleted', OLD.work_order_id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.status = 'closed'
       OR (OLD.status = 'signed' AND NOT (
            NEW.status = 'closed' AND NEW.closed_at IS NOT NULL
            AND (to_jsonb(NEW) - ARRAY['status', 'closed_at', 'updated_at'])
              = (to_jsonb(OLD) - ARRAY['status', 'closed_at', 'updated_at']))) THEN
        RAISE EXCEPTION 'work order % is % and cannot be changed; issue a correcting order instead',
            OLD.work_order_id, OLD.status USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER work_orders_guard BEFORE UPDATE OR DELETE ON work_orders
    FOR EACH ROW EXECUTE FUNCTION liftwatch_guard_work_order();

CREATE FUNCTION liftwatch_guard_work_order_item() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE st text;
BEGIN
    SELECT status INTO st FROM work_orders WHERE work_order_id = COALESCE(NEW.work_order_id, OLD.work_order_id);
    IF st IN ('signed', 'closed') THEN
        RAISE EXCEPTION 'items of signed work order % cannot be changed', COALESCE(NEW.work_order_id, OLD.work_order_id)
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN COALESCE(NEW, OLD);
END $$;
CREATE TRIGGER work_order_items_guard BEFORE INSERT OR UPDATE OR DELETE ON work_order_items
    FOR EACH ROW EXECUTE FUNCTION liftwatch_guard_work_order_item();
