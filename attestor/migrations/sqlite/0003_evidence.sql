-- Evidence packs, audit engagements, the evidence index (SQLite).
-- Times are integer milliseconds since the Unix epoch (the service's clock).

-- Auditor tenants: tenants.plan admits 'Auditor' (never billed). SQLite
-- cannot ALTER a CHECK constraint; its documented procedure for changing
-- only constraints (lang_altertable.html, "Making Other Kinds Of Table
-- Schema Changes") edits the table's text in sqlite_schema, which keeps
-- every column and row as they are, whatever other migrations added. The
-- existing rows satisfy the wider check. `writable_schema = RESET` reloads
-- the schema on this connection; the CREATE TABLEs below change the schema
-- cookie, so every other connection reloads it too.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
   SET sql = replace(sql, '''Enterprise'')', '''Enterprise'', ''Auditor'')')
 WHERE type = 'table' AND name = 'tenants' AND instr(sql, '''Auditor''') = 0;
PRAGMA writable_schema = RESET;

-- What each attestation's (verified, stored) provenance says, parsed once:
-- the built ref for frozen tags, the policy digests for coverage, builder
-- and runner for packs. Filled by a scan of attestations without a row.
CREATE TABLE evidence_index (
    attestation_id  TEXT PRIMARY KEY REFERENCES attestations (id),
    envelope_sha256 TEXT NOT NULL,
    source_uri      TEXT NOT NULL,
    source_ref      TEXT NOT NULL,
    builder_id      TEXT NOT NULL,
    runner_version  TEXT NOT NULL,
    profile_name    TEXT NOT NULL,
    profile_digest  TEXT NOT NULL,
    seccomp_digest  TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL
) STRICT;
CREATE INDEX evidence_index_ref ON evidence_index (source_ref, source_uri, attestation_id);
CREATE INDEX evidence_index_envelope ON evidence_index (envelope_sha256);
CREATE INDEX evidence_index_time ON evidence_index (created_at_ms);
CREATE INDEX evidence_index_repo ON evidence_index (source_uri, attestation_id);

CREATE TABLE engagements (
    id            TEXT PRIMARY KEY,
    tag           TEXT NOT NULL,
    repo          TEXT,
    auditor       TEXT NOT NULL,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    status        TEXT NOT NULL CHECK (status IN ('open', 'signed_off')),
    opened_at_ms  INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    closed_at_ms  INTEGER,
    pack_sha256   TEXT
) STRICT;

-- The frozen tag: written once when the engagement opens.
CREATE TABLE engagement_attestations (
    engagement_id   TEXT NOT NULL REFERENCES engagements (id),
    attestation_id  TEXT NOT NULL REFERENCES attestations (id),
    envelope_sha256 TEXT NOT NULL,
    PRIMARY KEY (engagement_id, attestation_id)
) STRICT, WITHOUT ROWID;

-- At most two notes per engagement, whatever the code does.
CREATE TABLE engagement_notes (
    engagement_id TEXT NOT NULL REFERENCES engagements (id),
    seq           INTEGER NOT NULL CHECK (seq BETWEEN 1 AND 2),
    author        TEXT NOT NULL,
    body          TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    at_ms         INTEGER NOT NULL,
    PRIMARY KEY (engagement_id, seq)
) STRICT;

-- The decisions log: who did what, when, with the hash it vouches for.
CREATE TABLE engagement_log (
    engagement_id TEXT NOT NULL REFERENCES engagements (id),
    seq           INTEGER NOT NULL,
    at_ms         INTEGER NOT NULL,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    detail        TEXT NOT NULL,
    sha256        TEXT,
    PRIMARY KEY (engagement_id, seq)
) STRICT;

-- Auditor keys, apart from tenants' api_keys (which never find them): one
-- per engagement, stored as SHA-256 only, expiring and revocable.
CREATE TABLE auditor_keys (
    id            TEXT PRIMARY KEY,
    engagement_id TEXT NOT NULL UNIQUE REFERENCES engagements (id),
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    key_hash      TEXT NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
) STRICT;

-- Issued packs: the archive's sha256 (signed), what it was for, how long it
-- took; sign-off packs keep their bytes for download.
CREATE TABLE evidence_packs (
    sha256          TEXT PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('signoff', 'procurement')),
    engagement_id   TEXT REFERENCES engagements (id),
    recipient       TEXT,
    size_bytes      INTEGER NOT NULL,
    time_to_pack_ms INTEGER NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    envelope        TEXT NOT NULL,
    content         BLOB
) STRICT;
CREATE INDEX evidence_packs_created ON evidence_packs (created_at_ms);
