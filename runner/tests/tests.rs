//! The runner crate's integration tests: the `cloister-runner` binary as a
//! daemon and its client commands. Jobs that need both daemons end to end
//! (attestation, repos A/B/C) live in the top-level `tests/tests/e2e.rs`.
//!
//! Module tree:
//! - `harness`: a daemon in a temporary state dir, fixture git repos
//! - `daemon::config`: configuration validated at start, systemd units verified
//! - `daemon::api`: socket mode and group, bearer token on TCP, spec validation, sd_notify
//! - `daemon::lifecycle`: cancel, bounded queue, crash and drain, hostile outputs, no persistence
//! - `daemon::priority`: release before normal before low, queue positions, aging
//! - `daemon::source`: a dirty tree or another commit fails the job before any build
//! - `daemon::policy`: `[policy] require_signed` refuses jobs under unsigned sandbox policies
//! - `cli::front`: the front binary hands every subcommand but `run` to the full one
//! - `docs`: the cookbook index, the README's `run` table and its verify example

mod harness;

mod docs;

mod cli {
    mod front;
}

mod daemon {
    mod api;
    mod config;
    mod lifecycle;
    mod policy;
    mod priority;
    mod source;
}
