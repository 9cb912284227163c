//! Jobs: the spec a client submits, their durable records, and everything
//! the daemon does for one job (source, outputs, log, record, execution).

pub mod exec;
pub mod log;
pub mod outputs;
pub mod record;
pub mod source;
pub mod spec;
pub mod store;

use std::path::Path;

/// `runner_exe ARGS…` as the daemon starts a sandbox (`cloister-runner
/// run`): under `setpriv --pdeathsig KILL`, so the sandbox process dies with
/// the daemon (its init dies with it in turn) and a daemon crash leaves no
/// build running (the runner crate has no `unsafe` for a pre-exec hook);
/// a clean environment but for PATH; no stdin; killed when dropped.
pub(crate) fn sandbox_command(runner_exe: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("setpriv");
    cmd.args(["--pdeathsig", "KILL", "--"])
        .arg(runner_exe)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// The JSON a sandbox wrote with `--result FILE`, if it wrote one.
pub(crate) async fn read_sandbox_result(path: &Path) -> Option<serde_json::Value> {
    let bytes = tokio::fs::read(path).await.ok()?;
    serde_json::from_slice(&bytes).ok()
}
