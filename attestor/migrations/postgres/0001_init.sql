-- Attestor schema v1 (PostgreSQL). Times are integer milliseconds since the
-- Unix epoch, written by the service's clock.

CREATE TABLE tenants (
    id            TEXT COLLATE "C" PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    plan          TEXT NOT NULL CHECK (plan IN ('Starter', 'Pro', 'Enterprise')),
    created_at_ms BIGINT NOT NULL
);

-- Only the SHA-256 of each key is stored; the key is shown once at issue.
CREATE TABLE api_keys (
    id            TEXT COLLATE "C" PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    key_hash      TEXT NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- Signed attestations: the envelope and bundle exactly as returned at signing.
CREATE TABLE attestations (
    id            TEXT COLLATE "C" PRIMARY KEY,
    created_at_ms BIGINT NOT NULL,
    keyid         TEXT NOT NULL,
    builder_id    TEXT NOT NULL,
    source_uri    TEXT NOT NULL,
    envelope      TEXT NOT NULL,
    bundle        TEXT NOT NULL
);
CREATE INDEX attestations_builder ON attestations (builder_id, id);
CREATE INDEX attestations_source ON attestations (source_uri, id);

CREATE TABLE attestation_subjects (
    attestation_id TEXT NOT NULL REFERENCES attestations (id),
    name           TEXT NOT NULL,
    digest         TEXT NOT NULL,
    PRIMARY KEY (attestation_id, name, digest)
);
CREATE INDEX attestation_subjects_digest ON attestation_subjects (digest, attestation_id);

-- One row per metered request, the billing record.
CREATE TABLE usage_events (
    id              BIGSERIAL PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    event           TEXT NOT NULL,
    units           BIGINT NOT NULL CHECK (units > 0),
    idempotency_key TEXT NOT NULL,
    occurred_at_ms  BIGINT NOT NULL
);
CREATE INDEX usage_events_tenant_time ON usage_events (tenant_id, occurred_at_ms);

-- The unique constraint behind exactly-once metering: one live record per
-- (tenant, event, Idempotency-Key), holding the response to replay.
CREATE TABLE idempotency (
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    event         TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    status        BIGINT NOT NULL,
    body          BYTEA NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, event, key)
);
CREATE INDEX idempotency_created ON idempotency (created_at_ms);
