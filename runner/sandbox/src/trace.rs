//! Start-up stage timestamps, for profiling where a run's start-up time
//! goes. Off unless `CLOISTER_TRACE_STARTUP` is set in the runner's
//! environment; then the runner, the sandbox init and the command's process
//! each note `CLOCK_MONOTONIC` at the end of every stage (the init and the
//! command send theirs over the report pipe), and `cloister-runner run`
//! prints them on stderr after the run, relative to its first mark.
//!
//! Marks carry only stage names chosen by this crate, never data the build
//! controls, and nothing here changes what a run does.

use std::sync::{Mutex, OnceLock};

/// The environment variable that turns tracing on.
pub const ENV: &str = "CLOISTER_TRACE_STARTUP";

static ENABLED: OnceLock<bool> = OnceLock::new();
static MARKS: Mutex<Vec<(String, u64)>> = Mutex::new(Vec::new());

/// Whether stage timestamps are being recorded.
pub fn enabled() -> bool {
    *ENABLED.get_or_init(|| std::env::var_os(ENV).is_some())
}

/// `CLOCK_MONOTONIC` in nanoseconds (the same clock in every namespace the
/// sandbox creates: it makes no time namespace).
pub fn now_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64);
    t.unwrap_or(0)
}

/// Notes that `stage` ended now (runner side; a no-op unless enabled).
pub fn mark(stage: &str) {
    if enabled() {
        record(stage.to_string(), now_ns());
    }
}

pub(crate) fn record(stage: String, ns: u64) {
    if let Ok(mut marks) = MARKS.lock() {
        marks.push((stage, ns));
    }
}

/// Every mark so far, oldest first, with milliseconds since the first one
/// and since the previous one. Empty unless enabled.
pub fn report() -> Vec<(String, f64, f64)> {
    let mut marks = MARKS.lock().map(|m| m.clone()).unwrap_or_default();
    marks.sort_by_key(|(_, ns)| *ns);
    let first = marks.first().map(|(_, ns)| *ns).unwrap_or(0);
    let mut prev = first;
    marks
        .into_iter()
        .map(|(stage, ns)| {
            let since = (ns - first) as f64 / 1e6;
            let step = (ns - prev) as f64 / 1e6;
            prev = ns;
            (stage, since, step)
        })
        .collect()
}
