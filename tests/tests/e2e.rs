//! End to end through both daemons: `cloister-attestor serve` (signing
//! socket) and `cloister-runner serve`, driven by the `cloister-runner` CLI
//! the way a release pipeline drives it. Needs root (or user namespaces),
//! git, cargo (repo A), node/npm (repo B), make and cc (repo C), and the
//! external verifiers of `.ci/setup.d/30-interop.sh`.
//!
//! Module tree (under `tests/tests/e2e/`):
//! - `harness`: both daemons in a temporary directory, fixture repos, verifiers
//! - `repos`: repos A, B, C built, verified (ours and external verifiers), rebuilt identically
//! - `isolation`: a build cannot read the signing key or reach the signing socket
//! - `concurrency`: 8 concurrent jobs without cross-talk, none lost across a restart
//! - `toolchains`: toolchains are store snapshots, named by digest in provenance, refreshed on SIGHUP
//! - `image`: a job on a builder image imported from an OCI layout
//! - `pipelines`: repos A, B, C through the example release workflows' steps, both consumer verifications
//! - `quickstart`: `cloister-runner quickstart --json`

mod e2e {
    mod artifacts;
    mod concurrency;
    mod harness;
    mod image;
    mod isolation;
    mod pipelines;
    mod quickstart;
    mod repos;
    mod toolchains;
}
