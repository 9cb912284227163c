//! Operations (issue 20): the SLO rules, dashboards and runbooks under
//! `systemd/monitoring/` and `cookbook/`, and the runner daemon's metrics,
//! readiness and attestor-restart survival, with both daemons as real
//! processes (the e2e harness). Needs promtool (Debian's `prometheus`
//! package, `.ci/setup.d/75-monitoring.sh`, `CLOISTER_PROMTOOL`), curl, and
//! what the e2e suite needs to run a build.
//!
//! Module tree (under `tests/tests/monitoring/`):
//! - `rules`: `promtool check rules` / `test rules` / `check config`,
//!   runbook links that reach real sections, dashboards that parse
//! - `promql`: metric names out of PromQL expressions; the text exposition
//!   parsed (a small reader, checked against promtool's own)
//! - `scrape`: both daemons' `/metrics` after a real job and a real verify
//!   export every name the rules and dashboards use
//! - `jobs`: the runner's metrics across a succeeded, a failed, a cancelled
//!   and a timed-out job; `/readyz`
//! - `restart`: 8 jobs through an attestor SIGKILL and restart; a retry
//!   window that runs out, then `cloister-runner attest`

#[path = "e2e/harness.rs"]
#[allow(dead_code)]
mod harness;

mod monitoring {
    mod jobs;
    pub mod promql;
    mod restart;
    mod rules;
    mod scrape;
}
