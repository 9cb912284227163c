//! Source resolution: the job's local git checkout must be clean and at the
//! pinned commit; the daemon then clones exactly that commit into a fresh
//! workspace (a shared clone, checked out detached, `.git` removed so the
//! build sees only the tree). The checkout's own git config is distrusted:
//! fsmonitor and hooks are disabled on every git call against it, and the
//! checkout happens in the fresh clone, whose config defines no filters.

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
        let lines: Vec<&str> = status.lines().collect();
        let mut changes = lines
            .iter()
            .take(5)
            .map(|l| l.trim())
            .collect::<Vec<_>>()
            .join(", ");
        if lines.len() > 5 {
            changes.push_str(&format!(", and {} more", lines.len() - 5));
        }
        return Err(SourceError::Dirty {
            path: path.clone(),
            changes,
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
