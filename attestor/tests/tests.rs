//! The attestor crate's integration tests, one binary. Every test that
//! touches storage runs against both backends: SQLite in a tempdir and
//! PostgreSQL in a schema of its own inside `$CLOISTER_TEST_DATABASE_URL`
//! (CI sets it in `.ci/setup.d/40-postgres.sh`; without it the PostgreSQL
//! tests fail, they never skip).
//!
//! Module tree:
//! - `support`: temp state dirs, per-test PostgreSQL schemas, in-process
//!   servers, spawning the real `cloister-attestor` binary, a small HTTP client.
//! - `storage`: the `Storage` trait's contract on both backends (tenants,
//!   keys, attestations, exactly-once usage commits, concurrency, migrations).
//! - `api`: the consumer API over real HTTP on both backends (auth, tenant
//!   isolation, rate limits, body limits, error codes, idempotent replays,
//!   usage, metrics, readiness, TLS, graceful shutdown).
//! - `cli`: the operator commands (`tenants`, `api-keys`, `usage`, `serve`
//!   config errors) through the real binary, and that keys never reach logs.
//! - `crash`: SIGKILL mid-load and restart; usage equals distinct keys.
//! - `golden`: the OpenAPI document against `tests/golden/openapi.json`.
//! - `evidence`: audit engagements and auditor keys over HTTP, the policy
//!   gate and coverage, evidence packs (determinism, GNU tar, tampering,
//!   securesystemslib), `attestations import`.
//! - `billing`: rating, golden invoices (JSON + PDF), immutability, gapless
//!   numbering with concurrent and killed closers, PDFs read by external
//!   tools, webhooks against a real receiver, entitlements, invoice routes.
//! - `portal`: the trust portal's pages over plain HTTP (headers, sessions,
//!   CSRF, chips, metered downloads and verifications, tenant isolation,
//!   hostile data) and its storage queries; `portal::fixtures` is shared
//!   with the browser tests (`tests/browser.rs`).

mod support;

mod api;
mod billing;
mod cli;
mod crash;
mod evidence;
mod golden;
mod portal;
mod storage;
