//! Source resolution: the job's local git checkout must be clean and at the
//! pinned commit; exactly that commit is cloned into a fresh workspace (a
//! shared clone, checked out detached, `.git` removed so the build sees only
//! the tree). The checkout's own git config is distrusted: every git command
//! against it runs inside a sandbox (`cloister-runner run`: no network, the
//! checkout read-only, only the job's work directory writable, no signing
//! socket), so a filter or hook it configures runs as hostile code would,
//! never as the daemon.

use super::spec::Source;
use std::path::{Path, PathBuf};

/// Errors resolving a job's source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source {path}: not a git checkout ({message})")]
    NotARepo { path: PathBuf, message: String },
    #[error("source {path}: HEAD is {head}, not the expected commit {expected}")]
    WrongCommit {
        path: PathBuf,
        expected: String,
        head: String,
    },
    #[error("source {path}: the working tree is dirty ({changes})")]
    Dirty { path: PathBuf, changes: String },
    #[error("source {path}: git {what} failed: {message}")]
    Git {
        path: PathBuf,
        what: &'static str,
        message: String,
    },
    #[error("cannot run git: {0}")]
    Spawn(#[from] std::io::Error),
}

/// The sandboxed check-and-clone script (exit 10: wrong commit, 11: dirty,
/// 12: not a repository, 13: git failed).
const SCRIPT: &str = r#"
G="git -c safe.directory=* -c core.fsmonitor=false -c core.hooksPath=/dev/null --no-optional-locks"
head=$($G -C /src rev-parse --verify --quiet 'HEAD^{commit}') || { $G -C /src rev-parse HEAD 2>&1 | head -n1 >&2; exit 12; }
[ "$head" = "$COMMIT" ] || { echo "$head" >&2; exit 10; }
st=$($G -C /src status --porcelain=v1 --untracked-files=normal --ignore-submodules=none) || exit 13
[ -z "$st" ] || { printf '%s\n' "$st" >&2; exit 11; }
$G clone --quiet --shared --no-checkout /src /work/src || exit 13
$G -C /work/src -c advice.detachedHead=false checkout --quiet --detach "$COMMIT" || exit 13
rm -rf /work/src/.git
"#;

/// Checks the checkout and clones the pinned commit into
/// `work/checkout/src`, all inside a sandbox run by `runner_exe`; returns
/// the workspace path. The sandbox can write only `work/checkout` (fresh,
/// made here): its result file lies outside, and the workspace it leaves
/// must be a real directory, never a symlink it planted to lead the build's
/// writable bind (or output collection) somewhere else on the host.
pub async fn fetch_sandboxed(
    runner_exe: &Path,
    source: &Source,
    work: &Path,
) -> Result<PathBuf, SourceError> {
    let path = &source.path;
    let result = work.join("source-result.json");
    let checkout = work.join("checkout");
    tokio::fs::create_dir(&checkout).await?;
    let out = super::sandbox_command(runner_exe)
        .arg("run")
        .arg("--result")
        .arg(&result)
        .arg("--ro-bind")
        .arg(format!("{}:/src", path.display()))
        .arg("--bind")
        .arg(format!("{}:/work", checkout.display()))
        .args(["--workdir", "/work", "--timeout", "600", "--env"])
        .arg(format!("COMMIT={}", source.commit))
        .args(["--", "sh", "-c", SCRIPT])
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let sandbox = super::read_sandbox_result(&result).await;
    let _ = tokio::fs::remove_file(&result).await;
    let sandbox_error = |message: String| SourceError::Git {
        path: path.clone(),
        what: "sandbox",
        message,
    };
    match sandbox {
        Ok(Some(cloister_sandbox::RunResult::Failed(f))) => return Err(sandbox_error(f.error)),
        Err(e) => return Err(sandbox_error(e)),
        Ok(Some(cloister_sandbox::RunResult::Ran(_)) | None) => {}
    }
    let git_err = |what| SourceError::Git {
        path: path.clone(),
        what,
        message: stderr.clone(),
    };
    match out.status.code() {
        Some(0) => {
            let workspace = checkout.join("src");
            match tokio::fs::symlink_metadata(&workspace).await {
                Ok(m) if m.is_dir() => Ok(workspace),
                _ => Err(SourceError::Git {
                    path: path.clone(),
                    what: "clone",
                    message: "the checkout step left no workspace directory".into(),
                }),
            }
        }
        Some(10) => Err(SourceError::WrongCommit {
            path: path.clone(),
            expected: source.commit.clone(),
            head: stderr.lines().last().unwrap_or("").to_string(),
        }),
        Some(11) => Err(SourceError::Dirty {
            path: path.clone(),
            changes: summarize_changes(&stderr),
        }),
        Some(12) => Err(SourceError::NotARepo {
            path: path.clone(),
            message: stderr.clone(),
        }),
        _ => Err(git_err("clone")),
    }
}

/// `git status --porcelain` lines as one short list: the first five, then
/// how many more.
fn summarize_changes(status: &str) -> String {
    let lines: Vec<&str> = status
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut changes = lines[..lines.len().min(5)].join(", ");
    if lines.len() > 5 {
        changes.push_str(&format!(", and {} more", lines.len() - 5));
    }
    changes
}
