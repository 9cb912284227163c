-- Evidence packs, audit engagements, the evidence index (PostgreSQL).
-- Times are integer milliseconds since the Unix epoch (the service's clock).

-- Auditor tenants: tenants.plan admits 'Auditor' (never billed).
ALTER TABLE tenants DROP CONSTRAINT tenants_plan_check;
ALTER TABLE tenants ADD CONSTRAINT tenants_plan_check
    CHECK (plan IN ('Starter', 'Pro', 'Enterprise', 'Auditor'));

-- What each attestation's (verified, stored) provenance says, parsed once:
-- the built ref for frozen tags, the policy digests for coverage, builder
-- and runner for packs. Filled by a scan of attestations without a row.
CREATE TABLE evidence_index (
    attestation_id  TEXT COLLATE "C" PRIMARY KEY REFERENCES attestations (id),
    envelope_sha256 TEXT NOT NULL,
    source_uri      TEXT NOT NULL,
    source_ref      TEXT NOT NULL,
    builder_id      TEXT NOT NULL,
    runner_version  TEXT NOT NULL,
    profile_name    TEXT NOT NULL,
    profile_digest  TEXT NOT NULL,
    seccomp_digest  TEXT NOT NULL,
    created_at_ms   BIGINT NOT NULL
);
CREATE INDEX evidence_index_ref ON evidence_index (source_ref, source_uri, attestation_id);
CREATE INDEX evidence_index_envelope ON evidence_index (envelope_sha256);
CREATE INDEX evidence_index_time ON evidence_index (created_at_ms);
CREATE INDEX evidence_index_repo ON evidence_index (source_uri, attestation_id);

CREATE TABLE engagements (
    id            TEXT COLLATE "C" PRIMARY KEY,
    tag           TEXT NOT NULL,
    repo          TEXT,
    auditor       TEXT NOT NULL,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    status        TEXT NOT NULL CHECK (status IN ('open', 'signed_off')),
    opened_at_ms  BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    closed_at_ms  BIGINT,
    pack_sha256   TEXT
);

-- The frozen tag: written once when the engagement opens.
CREATE TABLE engagement_attestations (
    engagement_id   TEXT COLLATE "C" NOT NULL REFERENCES engagements (id),
    attestation_id  TEXT COLLATE "C" NOT NULL REFERENCES attestations (id),
    envelope_sha256 TEXT NOT NULL,
    PRIMARY KEY (engagement_id, attestation_id)
);

-- At most two notes per engagement, whatever the code does.
CREATE TABLE engagement_notes (
    engagement_id TEXT COLLATE "C" NOT NULL REFERENCES engagements (id),
    seq           BIGINT NOT NULL CHECK (seq BETWEEN 1 AND 2),
    author        TEXT NOT NULL,
    body          TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    at_ms         BIGINT NOT NULL,
    PRIMARY KEY (engagement_id, seq)
);

-- The decisions log: who did what, when, with the hash it vouches for.
CREATE TABLE engagement_log (
    engagement_id TEXT COLLATE "C" NOT NULL REFERENCES engagements (id),
    seq           BIGINT NOT NULL,
    at_ms         BIGINT NOT NULL,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    detail        TEXT NOT NULL,
    sha256        TEXT,
    PRIMARY KEY (engagement_id, seq)
);

-- Auditor keys, apart from tenants' api_keys (which never find them): one
-- per engagement, stored as SHA-256 only, expiring and revocable.
CREATE TABLE auditor_keys (
    id            TEXT COLLATE "C" PRIMARY KEY,
    engagement_id TEXT COLLATE "C" NOT NULL UNIQUE REFERENCES engagements (id),
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    key_hash      TEXT NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT
);

-- Issued packs: the archive's sha256 (signed), what it was for, how long it
-- took; sign-off packs keep their bytes for download.
CREATE TABLE evidence_packs (
    sha256          TEXT COLLATE "C" PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('signoff', 'procurement')),
    engagement_id   TEXT COLLATE "C" REFERENCES engagements (id),
    recipient       TEXT,
    size_bytes      BIGINT NOT NULL,
    time_to_pack_ms BIGINT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    envelope        TEXT NOT NULL,
    content         BYTEA
);
CREATE INDEX evidence_packs_created ON evidence_packs (created_at_ms);
