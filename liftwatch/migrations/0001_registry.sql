-- Registry: who maintains and uses which elevator, where it stands, and who may sign for it.
-- Identifiers are short codes (the same pattern as MQTT unit ids) so that CSV files and
-- topics can name them directly; China's 20-digit equipment code fits as a unit_id.

CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE companies (
    company_id      text PRIMARY KEY CHECK (company_id ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$'),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    kind            text NOT NULL CHECK (kind IN ('maintenance', 'user_unit', 'manufacturer')),
    licence_no      text,                 -- maintenance licence or unified social credit code
    phone           text,
    emergency_phone text,                 -- printed on the car's notice board (24 h rescue line)
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sites (
    site_id    text PRIMARY KEY CHECK (site_id ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$'),
    name       text NOT NULL,
    address    text NOT NULL DEFAULT '',
    district   text NOT NULL DEFAULT '',
    city       text NOT NULL DEFAULT '',
    lat        double precision CHECK (lat BETWEEN -90 AND 90),
    lon        double precision CHECK (lon BETWEEN -180 AND 180),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE units (
    unit_id                text PRIMARY KEY CHECK (unit_id ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$'),
    registration_code      text UNIQUE,   -- 使用登记证编号; NULL = not registered (counts against the KPI)
    site_id                text NOT NULL REFERENCES sites,
    kind                   text NOT NULL CHECK (kind IN ('traction', 'hydraulic', 'escalator', 'moving_walk')),
    maintenance_company_id text REFERENCES companies,
    user_unit_id           text REFERENCES companies,
    manufacturer_id        text REFERENCES companies,
    model                  text,
    installed_on           date,
    floors                 smallint CHECK (floors BETWEEN 1 AND 300),
    rated_speed_mps        numeric(5, 2) CHECK (rated_speed_mps > 0),
    rated_load_kg          integer CHECK (rated_load_kg > 0),
    last_inspection_on     date,          -- last periodic inspection (定期检验)
    next_inspection_due    date,          -- inspection certificate valid until
    status                 text NOT NULL DEFAULT 'in_service'
                           CHECK (status IN ('in_service', 'out_of_service', 'suspended', 'decommissioned')),
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CHECK (next_inspection_due IS NULL OR last_inspection_on IS NULL OR next_inspection_due >= last_inspection_on)
);
CREATE INDEX units_site_idx ON units (site_id);
CREATE INDEX units_maintenance_company_idx ON units (maintenance_company_id);
CREATE INDEX units_user_unit_idx ON units (user_unit_id);

CREATE TABLE people (
    person_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    role           text NOT NULL CHECK (role IN ('admin', 'supervisor', 'company_manager', 'technician', 'user_unit')),
    company_id     text REFERENCES companies,
    certificate_no text,                  -- 特种设备作业人员证 for technicians
    phone          text,
    active         boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (role IN ('admin', 'supervisor') OR company_id IS NOT NULL)
);
CREATE INDEX people_company_idx ON people (company_id);
