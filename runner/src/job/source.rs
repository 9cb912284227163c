//! Source resolution: the job's local git checkout must be clean and at the
//! pinned commit; exactly that commit is cloned into a fresh workspace (a
//! shared clone, checked out detached, `.git` removed so the build sees only
//! the tree). The checkout's own git config is distrusted: every git command
//! against it runs inside a sandbox (`cloister-runner run`: no network, the
//! checkout read-only, only the job's work directory writable, no signing
//! socket), so a filter or hook it configures runs as hostile code would,
//! never as the daemon. [`verify`] and [`checkout`] are the same steps
//! without a sandbox, for tools that run as the checkout's owner.

use super::spec::Source;
use std::path::{Path, PathBuf};
use tokio::process::Command;

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

/// Flags that keep a distrusted repository's config from running commands.
fn git(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .arg("-c")
        .arg(format!("safe.directory={}", dir.display()))
        .args([
            "-c",
            "core.fsmonitor=false",
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "protocol.allow=never",
        ])
        .args(["-c", "protocol.file.allow=always"])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .kill_on_drop(true);
    cmd
}

async fn output(mut cmd: Command, path: &Path, what: &'static str) -> Result<String, SourceError> {
    let out = cmd.stdin(std::process::Stdio::null()).output().await?;
    if !out.status.success() {
        return Err(SourceError::Git {
            path: path.to_path_buf(),
            what,
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Checks that `source.path` is a clean checkout at `source.commit`.
pub async fn verify(source: &Source) -> Result<(), SourceError> {
    let path = &source.path;
    let mut cmd = git(path);
    cmd.args(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"]);
    let head = match output(cmd, path, "rev-parse").await {
        Ok(head) => head.trim().to_string(),
        Err(SourceError::Git { message, .. }) => {
            return Err(SourceError::NotARepo {
                path: path.clone(),
                message,
            });
        }
        Err(e) => return Err(e),
    };
    if head != source.commit {
        return Err(SourceError::WrongCommit {
            path: path.clone(),
            expected: source.commit.clone(),
            head,
        });
    }
    let mut cmd = git(path);
    cmd.args([
        "status",
        "--porcelain=v1",
        "--untracked-files=normal",
        "--ignore-submodules=none",
    ]);
    let status = output(cmd, path, "status").await?;
    if !status.trim().is_empty() {
        return Err(SourceError::Dirty {
            path: path.clone(),
            changes: summarize_changes(&status),
        });
    }
    Ok(())
}

/// Materializes `source.commit` into `dest` (which must not exist yet).
pub async fn checkout(source: &Source, dest: &Path) -> Result<(), SourceError> {
    let path = &source.path;
    let parent = dest.parent().unwrap_or(Path::new("/"));
    let mut cmd = git(parent);
    cmd.args(["clone", "--quiet", "--shared", "--no-checkout", "--"])
        .arg(path)
        .arg(dest);
    output(cmd, path, "clone").await?;
    let mut cmd = git(dest);
    cmd.args([
        "-c",
        "advice.detachedHead=false",
        "checkout",
        "--quiet",
        "--detach",
        &source.commit,
    ]);
    output(cmd, path, "checkout").await?;
    // The build sees the tree only: no history, no alternates path of the host.
    tokio::fs::remove_dir_all(dest.join(".git")).await?;
    Ok(())
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

/// Checks the checkout and clones the pinned commit into `work/src`, all
/// inside a sandbox run by `runner_exe`; returns the workspace path.
pub async fn fetch_sandboxed(
    runner_exe: &Path,
    source: &Source,
    work: &Path,
) -> Result<PathBuf, SourceError> {
    let path = &source.path;
    let result = work.join("source-result.json");
    let out = Command::new("setpriv")
        .args(["--pdeathsig", "KILL", "--"])
        .arg(runner_exe)
        .arg("run")
        .arg("--result")
        .arg(&result)
        .arg("--ro-bind")
        .arg(format!("{}:/src", path.display()))
        .arg("--bind")
        .arg(format!("{}:/work", work.display()))
        .args(["--workdir", "/work", "--timeout", "600", "--env"])
        .arg(format!("COMMIT={}", source.commit))
        .args(["--", "sh", "-c", SCRIPT])
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let sandbox: Option<serde_json::Value> = tokio::fs::read(&result)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let _ = tokio::fs::remove_file(&result).await;
    if let Some(error) = sandbox
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(|e| e.as_str())
    {
        return Err(SourceError::Git {
            path: path.clone(),
            what: "sandbox",
            message: error.to_string(),
        });
    }
    let git_err = |what| SourceError::Git {
        path: path.clone(),
        what,
        message: stderr.clone(),
    };
    match out.status.code() {
        Some(0) => Ok(work.join("src")),
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
