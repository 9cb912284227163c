-- Idempotent signing (issue 20): one row per (builder, invocation) the
-- signing socket has signed, with the SHA-256 of the build record it signed
-- and the attestation it stored. A runner that retries after a lost reply
-- (an attestor restart) sends the same record for the same job and gets the
-- same attestation back instead of a second signature; a different record
-- under a job id already signed is refused. Inserted in the transaction
-- that stores the attestation, so either both exist or neither does.
CREATE TABLE sign_requests (
    builder_id     TEXT NOT NULL,
    invocation_id  TEXT NOT NULL,
    record_sha256  TEXT NOT NULL,
    attestation_id TEXT NOT NULL REFERENCES attestations (id),
    PRIMARY KEY (builder_id, invocation_id)
);
