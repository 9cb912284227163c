//! What `prepare_job` decided for a job, kept by the hook between its
//! invocations: the image, the mounts (checked against the contract's
//! targets and confined to the runner's work directory), the job
//! container's working directory and environment. One JSON file per job in
//! the hook's state directory (0700, each file 0600, written whole by
//! rename), which must lie outside everything mounted into a step: the
//! runner's `state` only carries the job's id, so a step can neither read
//! nor rewrite what its next step will be given.

use super::request::{Mount, is_clean_absolute};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The runner's mounts for a job container (`prepare_job`): its work
/// directory and the parts it mounts again, its externals (node for
/// JavaScript actions), the job's HOME and event payload.
pub const JOB_TARGETS: &[&str] = &[
    "/__w",
    "/__e",
    "/__w/_temp",
    "/__w/_actions",
    "/__w/_tool",
    "/github/home",
    "/github/workflow",
];

/// The runner's mounts for a container step (`run_container_step`), on top
/// of [`JOB_TARGETS`].
pub const STEP_TARGETS: &[&str] = &[
    "/github/home",
    "/github/workflow",
    "/github/file_commands",
    "/github/workspace",
];

/// The runner mounts the Docker socket into every container; it is root on
/// the host, so it is never mounted (said once in the step's log).
pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// The key of the runner's hook state holding our job id.
pub const STATE_KEY: &str = "cloisterJob";

/// Errors of the job records and mount checks.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{0}")]
    Refused(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("hook state {path} is corrupt: {message}")]
    Corrupt { path: PathBuf, message: String },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> JobError + 'a {
    move |source| JobError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// One mount as it will be made: a canonical host directory at a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlannedMount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// A prepared job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobRecord {
    pub version: u32,
    pub id: String,
    /// `sha256:<hex>` of the image manifest in the store.
    pub image: String,
    /// The canonical host directory mounted at `/__w`.
    pub work_root: PathBuf,
    /// The canonical host directory mounted at `/__e`, if any.
    pub externals: Option<PathBuf>,
    pub mounts: Vec<PlannedMount>,
    pub working_directory: PathBuf,
    /// The canonical host directory of the runner's action cache (what
    /// `/__w/_actions` shows): bound read-only into every step.
    pub actions: PathBuf,
    /// The job container's `env`.
    pub env: BTreeMap<String, String>,
    pub is_alpine: bool,
}

/// The mounts to make, and what was left out (the Docker socket).
#[derive(Debug, Default)]
pub struct MountPlan {
    pub mounts: Vec<PlannedMount>,
    pub dropped: Vec<String>,
}

/// Checks the runner's mounts: each target one the contract names in
/// `allowed`, each once; each source an existing directory inside
/// `work_root` (`/__e` may be `externals`); the hook's `state_dir` inside
/// none of them. `/__e` is always read-only. The Docker socket is dropped.
pub fn plan_mounts(
    mounts: &[Mount],
    allowed: &[&str],
    work_root: &Path,
    externals: Option<&Path>,
    state_dir: &Path,
) -> Result<MountPlan, JobError> {
    let refuse = |m: String| Err(JobError::Refused(m));
    let mut plan = MountPlan::default();
    for m in mounts {
        let target = PathBuf::from(&m.target_volume_path);
        if m.target_volume_path == DOCKER_SOCKET || m.source_volume_path == DOCKER_SOCKET {
            plan.dropped.push(m.target_volume_path.clone());
            continue;
        }
        if !allowed.contains(&m.target_volume_path.as_str()) {
            return refuse(format!(
                "mount target {} is not one of the runner's ({})",
                m.target_volume_path,
                allowed.join(", ")
            ));
        }
        if plan.mounts.iter().any(|p| p.target == target) {
            return refuse(format!("mount target {} is given twice", target.display()));
        }
        let source = Path::new(&m.source_volume_path);
        if !source.is_absolute() {
            return refuse(format!(
                "mount source {:?} for {} must be an absolute host path (named volumes are not supported)",
                m.source_volume_path,
                target.display()
            ));
        }
        let canonical = std::fs::canonicalize(source).map_err(io("mount source", source))?;
        if !canonical.is_dir() {
            return refuse(format!(
                "mount source {} for {} is not a directory",
                canonical.display(),
                target.display()
            ));
        }
        let is_externals = m.target_volume_path == "/__e";
        let inside = canonical.starts_with(work_root)
            || (is_externals && externals.is_some_and(|e| canonical == e));
        if !inside {
            return refuse(format!(
                "mount source {} for {} lies outside the runner's work directory {}",
                canonical.display(),
                target.display(),
                work_root.display()
            ));
        }
        if state_dir.starts_with(&canonical) {
            return refuse(format!(
                "the hook's state directory {} lies inside mount source {} ({}): a step could rewrite the hook's records; move it with --state-dir",
                state_dir.display(),
                canonical.display(),
                target.display()
            ));
        }
        plan.mounts.push(PlannedMount {
            source: canonical,
            target,
            read_only: m.read_only || is_externals,
        });
    }
    Ok(plan)
}

/// The runner's action cache for a job: the source of its `/__w/_actions`
/// mount, else `_actions` in the work directory (made if missing, so that
/// it can be bound read-only and no step can create it). Canonical, a
/// directory, inside `work_root`.
pub fn actions_dir(mounts: &[PlannedMount], work_root: &Path) -> Result<PathBuf, JobError> {
    if let Some(m) = mounts
        .iter()
        .find(|m| m.target == Path::new(super::network::ACTIONS_TARGET))
    {
        return Ok(m.source.clone());
    }
    let dir = work_root.join("_actions");
    match std::fs::DirBuilder::new().mode(0o755).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io("creating", &dir)(e)),
    }
    let canonical = std::fs::canonicalize(&dir).map_err(io("action cache", &dir))?;
    if canonical != dir || !canonical.is_dir() {
        return Err(JobError::Refused(format!(
            "the runner's action cache {} is not a directory of its work directory (it resolves to {})",
            dir.display(),
            canonical.display()
        )));
    }
    Ok(canonical)
}

/// `mounts` with the action cache `actions` read-only wherever a step
/// would see it: the `/__w/_actions` mount (and any mount inside the cache)
/// made read-only, and a read-only bind of the cache over its place in
/// every writable mount that contains it (`/__w` itself), so no step can
/// change an action's code for a later step.
pub fn protect_actions(mounts: &[PlannedMount], actions: &Path) -> Vec<PlannedMount> {
    let mut out: Vec<PlannedMount> = mounts
        .iter()
        .map(|m| PlannedMount {
            read_only: m.read_only || m.source.starts_with(actions),
            ..m.clone()
        })
        .collect();
    for m in mounts {
        if m.read_only || m.source == actions || !actions.starts_with(&m.source) {
            continue;
        }
        let rel = actions
            .strip_prefix(&m.source)
            .expect("the cache lies inside the mount");
        let target = m.target.join(rel);
        if let Some(existing) = out.iter_mut().find(|p| p.target == target) {
            // Only the cache itself may be mounted there, read-only.
            existing.source = actions.to_path_buf();
            existing.read_only = true;
        } else {
            out.push(PlannedMount {
                source: actions.to_path_buf(),
                target,
                read_only: true,
            });
        }
    }
    out
}

/// Checks that every recorded mount source is still the directory
/// `prepare_job` resolved: the same canonical path (no link swapped in by
/// an earlier step, which could write there) and a directory. Nothing of the
/// job runs between steps, so nothing can swap it after this check.
pub fn verify_mounts(mounts: &[PlannedMount]) -> Result<(), JobError> {
    for m in mounts {
        let now = std::fs::canonicalize(&m.source).map_err(io("mount source", &m.source))?;
        let meta = std::fs::symlink_metadata(&m.source).map_err(io("mount source", &m.source))?;
        if now != m.source || !meta.is_dir() {
            return Err(JobError::Refused(format!(
                "mount source {} for {} changed since prepare_job (now {}): an earlier step replaced it",
                m.source.display(),
                m.target.display(),
                now.display()
            )));
        }
    }
    Ok(())
}

/// The canonical source of the mount at `target`, if the runner gave one.
pub fn source_of(mounts: &[Mount], target: &str) -> Result<Option<PathBuf>, JobError> {
    match mounts.iter().find(|m| m.target_volume_path == target) {
        Some(m) => {
            let p = Path::new(&m.source_volume_path);
            if !p.is_absolute() {
                return Err(JobError::Refused(format!(
                    "mount source {:?} for {target} must be an absolute host path",
                    m.source_volume_path
                )));
            }
            Ok(Some(
                std::fs::canonicalize(p).map_err(io("mount source", p))?,
            ))
        }
        None => Ok(None),
    }
}

/// The hook's directory of job records.
#[derive(Debug, Clone)]
pub struct Records {
    dir: PathBuf,
}

impl Records {
    /// Opens (creating, mode 0700) `<state_dir>/jobs`; `state_dir` must be
    /// a clean absolute path.
    pub fn open(state_dir: &Path) -> Result<Records, JobError> {
        if !is_clean_absolute(state_dir) {
            return Err(JobError::Refused(format!(
                "the hook's state directory {} must be a clean absolute path",
                state_dir.display()
            )));
        }
        let dir = state_dir.join("jobs");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io("creating", &dir))?;
        Ok(Records { dir })
    }

    /// The canonical state directory (for the mount checks).
    pub fn state_dir(&self) -> Result<PathBuf, JobError> {
        let parent = self.dir.parent().unwrap_or(&self.dir);
        std::fs::canonicalize(parent).map_err(io("state directory", parent))
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Writes a record whole (temporary file, then rename).
    pub fn save(&self, record: &JobRecord) -> Result<(), JobError> {
        let path = self.path(&record.id);
        let temp = self.dir.join(format!(".{}.tmp", record.id));
        let text = serde_json::to_vec_pretty(record).expect("a job record serializes");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temp)
            .map_err(io("writing", &temp))?;
        // No fsync: a record lost in a host crash fails its job's next
        // step ("not prepared"), which the crash failed anyway; an fsync
        // per job cost milliseconds on a busy disk.
        f.write_all(&text).map_err(io("writing", &temp))?;
        std::fs::rename(&temp, &path).map_err(io("renaming into", &path))
    }

    /// Reads the record of job `id` (`None` when there is none).
    pub fn load(&self, id: &str) -> Result<Option<JobRecord>, JobError> {
        let path = self.path(id);
        let f = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("reading", &path)(e)),
        };
        let meta = f.metadata().map_err(io("reading", &path))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(JobError::Corrupt {
                path,
                message: "readable or writable by others than the hook's user".into(),
            });
        }
        let record: JobRecord =
            serde_json::from_reader(std::io::BufReader::new(f)).map_err(|e| JobError::Corrupt {
                path: path.clone(),
                message: e.to_string(),
            })?;
        if record.id != id {
            return Err(JobError::Corrupt {
                path,
                message: format!("it names job {}", record.id),
            });
        }
        Ok(Some(record))
    }

    /// Removes job `id`'s record; whether there was one.
    pub fn remove(&self, id: &str) -> Result<bool, JobError> {
        let path = self.path(id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io("removing", &path)(e)),
        }
    }
}

/// The job id in the runner's hook state: `Ok(None)` when the state holds
/// none (before `prepare_job`), an error when it holds something else.
pub fn job_id(state: Option<&serde_json::Value>) -> Result<Option<String>, JobError> {
    let obj = match state {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::Object(o)) => o,
        Some(other) => {
            return Err(JobError::Refused(format!(
                "malformed request: state must be an object, got {other}"
            )));
        }
    };
    match obj.get(STATE_KEY) {
        None => Ok(None),
        Some(serde_json::Value::String(s)) => match uuid::Uuid::parse_str(s) {
            Ok(u) if u.to_string() == *s => Ok(Some(s.clone())),
            _ => Err(JobError::Refused(format!(
                "malformed request: state.{STATE_KEY} {s:?} is not a job id this hook issued"
            ))),
        },
        Some(other) => Err(JobError::Refused(format!(
            "malformed request: state.{STATE_KEY} must be a string, got {other}"
        ))),
    }
}

/// Whether the image is Alpine: `ID=alpine` in its os-release, read
/// without following any link out of the image.
pub fn is_alpine(rootfs: &Path) -> bool {
    ["etc/os-release", "usr/lib/os-release"].iter().any(|rel| {
        read_in_root(rootfs, Path::new(rel)).is_some_and(|text| {
            text.lines().any(|l| {
                l.trim()
                    .strip_prefix("ID=")
                    .is_some_and(|v| v.trim_matches(['"', '\'']) == "alpine")
            })
        })
    })
}

/// Reads `rel` inside `root`, resolving symlinks component by component
/// as if `root` were `/` (absolute targets are root-relative, `..` stops at
/// the root), at most 16 links and 64 KiB.
fn read_in_root(root: &Path, rel: &Path) -> Option<String> {
    use std::path::Component;
    let mut pending: Vec<std::ffi::OsString> = rel
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        })
        .collect();
    let mut at = PathBuf::new();
    let mut links = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            at.pop();
            continue;
        }
        if name == "." {
            continue;
        }
        let next = at.join(&name);
        let meta = std::fs::symlink_metadata(root.join(&next)).ok()?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > 16 {
                return None;
            }
            let target = std::fs::read_link(root.join(&next)).ok()?;
            if target.is_absolute() {
                at = PathBuf::new();
            }
            for c in target.components().rev() {
                match c {
                    Component::Normal(n) => pending.push(n.to_os_string()),
                    Component::ParentDir => pending.push("..".into()),
                    _ => {}
                }
            }
        } else {
            at = next;
        }
    }
    let path = root.join(&at);
    let meta = std::fs::symlink_metadata(&path).ok()?;
    if !meta.is_file() || meta.len() > 64 << 10 {
        return None;
    }
    std::fs::read_to_string(path).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(src: &Path, target: &str, ro: bool) -> Mount {
        Mount {
            source_volume_path: src.display().to_string(),
            target_volume_path: target.into(),
            read_only: ro,
        }
    }

    #[test]
    fn mounts_are_confined_to_the_contract_and_the_work_directory() {
        let t = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(t.path()).unwrap();
        let work = root.join("_work");
        let ext = root.join("externals");
        let state = root.join("hook-state");
        for d in [&work, &work.join("_temp/_github_home"), &ext, &state] {
            std::fs::create_dir_all(d).unwrap();
        }
        let ok = [
            mount(&work, "/__w", false),
            mount(&ext, "/__e", false),
            mount(&work.join("_temp/_github_home"), "/github/home", false),
            mount(Path::new(DOCKER_SOCKET), DOCKER_SOCKET, false),
        ];
        let plan = plan_mounts(&ok, JOB_TARGETS, &work, Some(&ext), &state).unwrap();
        assert_eq!(plan.mounts.len(), 3);
        assert_eq!(plan.dropped, [DOCKER_SOCKET]);
        assert!(plan.mounts[1].read_only, "externals are read-only");
        assert!(!plan.mounts[0].read_only);

        let refused = |ms: &[Mount], state: &Path| {
            plan_mounts(ms, JOB_TARGETS, &work, Some(&ext), state)
                .unwrap_err()
                .to_string()
        };
        assert!(
            refused(&[mount(&work, "/etc", false)], &state).contains("not one of the runner's")
        );
        assert!(
            refused(&[mount(&root, "/github/home", false)], &state)
                .contains("outside the runner's work directory")
        );
        assert!(refused(&[mount(Path::new("/"), "/__w/_tool", false)], &state).contains("outside"));
        assert!(
            refused(
                &[mount(&work, "/__w", false), mount(&work, "/__w", false)],
                &state
            )
            .contains("twice")
        );
        assert!(
            refused(&[mount(&work, "/__w", false)], &work.join("_temp"))
                .contains("state directory")
        );
        let named = Mount {
            source_volume_path: "my_docker_volume".into(),
            target_volume_path: "/__w".into(),
            read_only: false,
        };
        assert!(refused(&[named], &state).contains("absolute host path"));
        // A link inside the work directory that leads out of it is judged by its target.
        std::os::unix::fs::symlink("/etc", work.join("escape")).unwrap();
        assert!(
            refused(&[mount(&work.join("escape"), "/__w/_tool", false)], &state)
                .contains("outside")
        );
    }

    #[test]
    fn records_round_trip_and_refuse_tampering() {
        let t = tempfile::tempdir().unwrap();
        let records = Records::open(t.path()).unwrap();
        let id = uuid::Uuid::now_v7().to_string();
        let record = JobRecord {
            version: 1,
            id: id.clone(),
            image: format!("sha256:{}", "a".repeat(64)),
            work_root: "/w".into(),
            externals: None,
            mounts: vec![],
            working_directory: "/__w/r/r".into(),
            actions: "/w/_actions".into(),
            env: BTreeMap::new(),
            is_alpine: false,
        };
        records.save(&record).unwrap();
        assert_eq!(records.load(&id).unwrap(), Some(record));
        let path = t.path().join("jobs").join(format!("{id}.json"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(
            records
                .load(&id)
                .unwrap_err()
                .to_string()
                .contains("others")
        );
        assert!(records.remove(&id).unwrap());
        assert!(!records.remove(&id).unwrap());
        assert_eq!(records.load(&id).unwrap(), None);
    }

    #[test]
    fn state_holds_our_job_id_or_nothing() {
        let id = uuid::Uuid::now_v7().to_string();
        assert_eq!(job_id(None).unwrap(), None);
        assert_eq!(job_id(Some(&serde_json::json!({}))).unwrap(), None);
        assert_eq!(
            job_id(Some(&serde_json::json!({ STATE_KEY: id }))).unwrap(),
            Some(id)
        );
        for bad in [
            serde_json::json!([]),
            serde_json::json!({ STATE_KEY: "../../etc/passwd" }),
            serde_json::json!({ STATE_KEY: 5 }),
        ] {
            assert!(
                job_id(Some(&bad))
                    .unwrap_err()
                    .to_string()
                    .contains("malformed request")
            );
        }
    }

    #[test]
    fn alpine_is_read_from_os_release_without_leaving_the_image() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        assert!(!is_alpine(root));
        std::fs::write(
            root.join("usr/lib/os-release"),
            "NAME=\"Alpine Linux\"\nID=alpine\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("../usr/lib/os-release", root.join("etc/os-release")).unwrap();
        assert!(is_alpine(root));
        // An absolute link resolves inside the image, never on the host.
        let t2 = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t2.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc/os-release", t2.path().join("etc/os-release")).unwrap();
        assert!(!is_alpine(t2.path()));
    }
}
