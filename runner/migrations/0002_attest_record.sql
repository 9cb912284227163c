-- Attestor restarts (issue 20): the exact build record a job sends for
-- signing, kept from the moment it enters `attesting` until it is signed, so
-- a job that failed because the attestor stayed unreachable (or a daemon
-- restart interrupted) can be attested later with the same record
-- (`cloister-runner attest JOB`); NULL otherwise.
ALTER TABLE jobs ADD COLUMN attest_record BLOB;
