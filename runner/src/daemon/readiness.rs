//! `GET /readyz`: whether this daemon can take a job through to signed
//! provenance now. Each check is one `{name, ok, detail}`; 200 when all
//! pass, 503 (and `"status": "not_ready"`) otherwise:
//!
//! - `attestor`: the signing socket answers `GET /healthz` (within 2 s);
//!   also sets `cloister_runner_attestor_up`;
//! - `store_disk`: the store's filesystem has at least `store_min_free`
//!   (config `store_min_free_bytes`, default 1 GiB) free;
//! - `cgroups`: a run cgroup with memory, pids and cpu limits can be made
//!   below the daemon's own cgroup (the one its sandboxes start in) and
//!   removed again: delegation works, on v1 hierarchies or v2;
//! - `draining`: the daemon is not shutting down.

use super::scheduler::Scheduler;
use serde::Serialize;
use std::sync::atomic::{AtomicU32, Ordering};

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

fn check(name: &'static str, r: Result<String, String>) -> Check {
    let (ok, detail) = match r {
        Ok(d) => (true, d),
        Err(d) => (false, d),
    };
    Check { name, ok, detail }
}

/// Runs every check.
pub async fn checks(s: &Scheduler) -> Vec<Check> {
    let attestor = crate::job::record::attestor_health(&s.config.attestor_socket).await;
    s.metrics().attestor_up.set(i64::from(attestor.is_ok()));
    let store = s.config.store.clone();
    let min_free = s.config.store_min_free;
    let disk = tokio::task::spawn_blocking(move || store_disk(&store, min_free))
        .await
        .unwrap_or_else(|e| Err(format!("disk check task: {e}")));
    let cgroups = tokio::task::spawn_blocking(cgroups)
        .await
        .unwrap_or_else(|e| Err(format!("cgroup check task: {e}")));
    vec![
        check("attestor", attestor),
        check("store_disk", disk),
        check("cgroups", cgroups),
        check(
            "draining",
            if s.is_draining() {
                Err("the daemon is shutting down".into())
            } else {
                Ok("taking jobs".into())
            },
        ),
    ]
}

fn store_disk(store: &std::path::Path, min_free: u64) -> Result<String, String> {
    let (free, _) = crate::job::metrics::filesystem_space(store)?;
    let gib = |b: u64| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64);
    if free < min_free {
        return Err(format!(
            "{}: {} free, below {}",
            store.display(),
            gib(free),
            gib(min_free)
        ));
    }
    Ok(format!("{}: {} free", store.display(), gib(free)))
}

/// Makes a run cgroup the way a sandbox does (below this process's own
/// cgroup, which the sandbox processes the daemon starts inherit) with the
/// three limits builds get, then removes it.
fn cgroups() -> Result<String, String> {
    use cloister_sandbox::cgroup::{Cgroup, CgroupLimits, Layout};
    static PROBE: AtomicU32 = AtomicU32::new(0);
    let layout = Layout::detect().map_err(|e| e.to_string())?;
    // The sandbox's naming (`cloister-<pid>-<n>`), so a probe left by a
    // killed daemon is removed as stale by the next run.
    let name = format!(
        "cloister-{}-{}",
        std::process::id(),
        1_000_000 + PROBE.fetch_add(1, Ordering::Relaxed)
    );
    let limits = CgroupLimits {
        memory: Some(64 << 20),
        pids: Some(64),
        cpus: Some(cloister_sandbox::MilliCpus(1000)),
    };
    let cg = Cgroup::create(&layout, None, &name, &limits)
        .map_err(|e| format!("cgroup {}: {e}", layout.version()))?;
    cg.remove();
    Ok(format!(
        "cgroup {}: a run cgroup with memory, pids and cpu limits can be made",
        layout.version()
    ))
}
