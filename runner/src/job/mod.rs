//! Jobs: the spec a client submits, their durable records, and everything
//! the daemon does for one job (source, outputs, log, record, execution).

pub mod exec;
pub mod log;
pub mod metrics;
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

/// What a sandbox wrote with `--result FILE`: `None` when it wrote nothing
/// (it died before); an error naming the field when what it wrote is not a
/// run result this daemon reads (a field missing, renamed or unknown).
pub(crate) async fn read_sandbox_result(
    path: &Path,
) -> Result<Option<cloister_sandbox::RunResult>, String> {
    let bytes = match tokio::fs::read(path).await {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read the sandbox's result: {e}")),
    };
    cloister_sandbox::RunResult::parse(&bytes)
        .map(Some)
        .map_err(|e| format!("the sandbox's result is not one this runner reads: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The daemon refuses a result with a field it does not know, or
    /// without one it needs, naming the field (a renamed field would
    /// otherwise read as absent).
    #[tokio::test]
    async fn a_result_with_an_unknown_or_missing_field_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("result.json");
        let good = include_str!("../cli/testdata/run-result.json");
        std::fs::write(&path, good).unwrap();
        assert!(matches!(
            read_sandbox_result(&path).await,
            Ok(Some(cloister_sandbox::RunResult::Ran(_)))
        ));
        let mut v: serde_json::Value = serde_json::from_str(good).unwrap();
        v["exitStatus"] = v["exitCode"].take();
        v.as_object_mut().unwrap().remove("exitCode");
        std::fs::write(&path, v.to_string()).unwrap();
        let err = read_sandbox_result(&path).await.unwrap_err();
        assert!(err.contains("unknown field `exitStatus`"), "{err}");
        v.as_object_mut().unwrap().remove("exitStatus");
        std::fs::write(&path, v.to_string()).unwrap();
        let err = read_sandbox_result(&path).await.unwrap_err();
        assert!(err.contains("missing field `exitCode`"), "{err}");
        assert!(
            err.starts_with("the sandbox's result is not one this runner reads"),
            "{err}"
        );
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(read_sandbox_result(&path).await, Ok(None)));
    }
}
