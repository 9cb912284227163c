-- Trust portal (issue 17): server-side sessions. The cookie holds a random
-- token; only its SHA-256 is stored. A session names its principal: `kind`
-- 'tenant' (signed in with the tenant's API key `key_id`); other kinds (an
-- auditor's expiring key) are added by later migrations and refused by the
-- code until then. `key_id` has no foreign key for that reason: the code
-- checks that a tenant session's key is still unrevoked on every request.
CREATE TABLE portal_sessions (
    token_hash    TEXT COLLATE "C" PRIMARY KEY,
    kind          TEXT NOT NULL,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    key_id        TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX portal_sessions_expires ON portal_sessions (expires_at_ms);
CREATE INDEX portal_sessions_tenant ON portal_sessions (tenant_id);
