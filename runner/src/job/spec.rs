//! The job spec: what a client submits (JSON, camelCase, unknown fields
//! rejected). Documented field by field in `cookbook/job-spec.md`; every field
//! the tenant chooses lands in provenance as an external parameter.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// Errors in a job spec (a 422 for API clients).
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("invalid job spec: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid job spec: {0}")]
    Invalid(String),
}

/// A build job as submitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobSpec {
    pub source: Source,
    /// Sandbox profile name or path (default `default`).
    #[serde(default = "default_profile")]
    pub profile: String,
    /// Optional builder image, `sha256:<hex>` of an imported OCI image manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Vendored-dependency directories, snapshotted by the daemon and mounted read-only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vendor: Vec<Vendor>,
    /// Operator-configured toolchains to mount read-only (by name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub toolchains: Vec<String>,
    /// The build command (argv, run in the workspace).
    pub command: Vec<String>,
    /// Extra environment for the build command.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Declared outputs: globs relative to the workspace.
    pub outputs: Vec<String>,
    /// Per-job limits (each defaults to the daemon's configured value).
    #[serde(default)]
    pub limits: JobLimits,
    /// Scheduling priority (`release`, `normal`, `low`; default `normal`).
    /// It decides when the job runs, never what it builds, so it is not a
    /// build parameter and stays out of provenance.
    #[serde(default, skip_serializing_if = "Priority::is_normal")]
    pub priority: Priority,
}

/// A job's scheduling priority: the daemon starts higher priorities first,
/// in submission order within one, and ages waiting jobs so that none
/// starves (`daemon::scheduler`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    /// Release builds (the hermetic release workflow passes it for tags).
    Release,
}

impl Priority {
    /// Every priority, lowest first.
    pub const ALL: [Priority; 3] = [Priority::Low, Priority::Normal, Priority::Release];

    /// 0 for low, 1 for normal, 2 for release.
    pub fn rank(self) -> u64 {
        self as u64
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::Release => "release",
        }
    }

    fn is_normal(&self) -> bool {
        *self == Priority::Normal
    }
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Priority, String> {
        Priority::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("priority must be release, normal or low, got {s:?}"))
    }
}

fn default_profile() -> String {
    "default".into()
}

/// The source: a local git checkout at an expected commit, plus the URI and
/// ref recorded in provenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    /// Absolute path of the local git checkout.
    pub path: PathBuf,
    /// The expected commit (40 or 64 hex digits); the checkout's HEAD must be it.
    pub commit: String,
    /// The repository URI recorded in provenance (e.g. `git+https://github.com/o/r`).
    pub uri: String,
    /// The ref recorded in provenance (e.g. `refs/heads/main`, `refs/tags/v1.2.3`).
    #[serde(rename = "ref")]
    pub git_ref: String,
}

/// One vendored-dependency directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Vendor {
    /// A path relative to the source tree (snapshotted from the pinned
    /// checkout), or an absolute host path (then `dest` is required).
    pub path: PathBuf,
    /// Where it is mounted, relative to the workspace; defaults to `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest: Option<PathBuf>,
}

impl Vendor {
    /// The mount point relative to the workspace.
    pub fn dest(&self) -> &Path {
        self.dest.as_deref().unwrap_or(&self.path)
    }
}

/// Per-job limits; `None` takes the daemon's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// The job log's cap (build output past it is discarded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_bytes: Option<u64>,
    /// The sandbox's `/tmp` size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmp_bytes: Option<u64>,
    /// How much the workspace may grow during the build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_bytes: Option<u64>,
}

/// A relative path that stays inside its root: no `..`, not absolute, not empty.
fn is_contained(path: &Path) -> bool {
    !path.as_os_str().is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && path.components().any(|c| matches!(c, Component::Normal(_)))
}

impl JobSpec {
    /// Parses and validates a spec from JSON bytes.
    pub fn from_json(bytes: &[u8]) -> Result<JobSpec, SpecError> {
        let spec: JobSpec = serde_json::from_slice(bytes)?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks everything that does not need the filesystem.
    pub fn validate(&self) -> Result<(), SpecError> {
        let bad = |m: String| Err(SpecError::Invalid(m));
        if !self.source.path.is_absolute() {
            return bad(format!(
                "source.path must be absolute, got {}",
                self.source.path.display()
            ));
        }
        let c = &self.source.commit;
        if !((c.len() == 40 || c.len() == 64)
            && c.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        {
            return bad(format!(
                "source.commit must be a full lower-case hex commit id, got {c:?}"
            ));
        }
        if self.source.uri.trim().is_empty() || self.source.uri.contains(char::is_whitespace) {
            return bad(format!(
                "source.uri must be a URI without spaces, got {:?}",
                self.source.uri
            ));
        }
        if !self.source.git_ref.starts_with("refs/")
            || self.source.git_ref.contains(char::is_whitespace)
        {
            return bad(format!(
                "source.ref must be a full git ref (refs/heads/… or refs/tags/…), got {:?}",
                self.source.git_ref
            ));
        }
        if self.source.uri.contains('@') {
            return bad(format!(
                "source.uri must not contain '@' (the ref goes in source.ref), got {:?}",
                self.source.uri
            ));
        }
        if self.profile.is_empty() {
            return bad("profile must not be empty".into());
        }
        if let Some(image) = &self.image {
            let hex = image.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64
                || !hex
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            {
                return bad(format!(
                    "image must be sha256:<64 lower-case hex>, got {image:?}"
                ));
            }
        }
        if self.command.is_empty() || self.command[0].is_empty() {
            return bad("command must not be empty".into());
        }
        if self.command.iter().any(|a| a.contains('\0')) {
            return bad("command arguments must not contain NUL".into());
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return bad(format!("env name {k:?} is not a valid variable name"));
            }
        }
        if self.outputs.is_empty() {
            return bad("outputs must name at least one glob".into());
        }
        for glob in &self.outputs {
            if glob.starts_with('/') || glob.split('/').any(|p| p == "..") || glob.is_empty() {
                return bad(format!(
                    "output {glob:?} must be a glob relative to the workspace, without .."
                ));
            }
            globset::Glob::new(glob)
                .map_err(|e| SpecError::Invalid(format!("output {glob:?}: {e}")))?;
        }
        let mut dests = std::collections::BTreeSet::new();
        for v in &self.vendor {
            if v.path.is_absolute() {
                if v.dest.is_none() {
                    return bad(format!(
                        "vendor {}: an absolute path needs a dest",
                        v.path.display()
                    ));
                }
            } else if !is_contained(&v.path) {
                return bad(format!(
                    "vendor path {} must stay inside the source tree",
                    v.path.display()
                ));
            }
            if !is_contained(v.dest()) {
                return bad(format!(
                    "vendor dest {} must be relative to the workspace, without ..",
                    v.dest().display()
                ));
            }
            if !dests.insert(v.dest().to_path_buf()) {
                return bad(format!("vendor dest {} is used twice", v.dest().display()));
            }
        }
        for (i, t) in self.toolchains.iter().enumerate() {
            if !cloister_attestor_core::record::is_toolchain_name(t) {
                return bad(format!("toolchain name {t:?} must be [A-Za-z0-9_-]+"));
            }
            if self.toolchains[..i].contains(t) {
                return bad(format!("toolchain {t} is listed twice"));
            }
        }
        let l = &self.limits;
        if l.timeout_secs == Some(0)
            || l.pids == Some(0)
            || l.cpus == Some(0)
            || l.memory_bytes == Some(0)
        {
            return bad("limits must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn base() -> Value {
        json!({
            "source": {"path": "/src/a", "commit": "0123456789abcdef0123456789abcdef01234567",
                       "uri": "git+https://github.com/o/a", "ref": "refs/heads/main"},
            "command": ["make"],
            "outputs": ["out/*"]
        })
    }

    /// The error for the base spec with `patch` applied.
    fn error_with(patch: impl FnOnce(&mut Value)) -> String {
        let mut v = base();
        patch(&mut v);
        JobSpec::from_json(v.to_string().as_bytes())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn minimal_spec_parses_with_defaults() {
        let spec = JobSpec::from_json(base().to_string().as_bytes()).unwrap();
        assert_eq!(spec.profile, "default");
        assert!(spec.vendor.is_empty());
        assert!(spec.toolchains.is_empty());
        assert_eq!(spec.priority, Priority::Normal);
        // The default is not written back, so older records read the same.
        assert!(!serde_json::to_string(&spec).unwrap().contains("priority"));
    }

    #[test]
    fn priority_parses_and_round_trips() {
        for (text, p) in [
            ("release", Priority::Release),
            ("normal", Priority::Normal),
            ("low", Priority::Low),
        ] {
            let mut v = base();
            v["priority"] = json!(text);
            let spec = JobSpec::from_json(v.to_string().as_bytes()).unwrap();
            assert_eq!(spec.priority, p);
            let again: JobSpec =
                serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
            assert_eq!(again.priority, p);
            assert_eq!(text.parse::<Priority>(), Ok(p));
        }
        assert!(Priority::Low < Priority::Normal && Priority::Normal < Priority::Release);
        assert!("urgent".parse::<Priority>().is_err());
    }

    #[test]
    fn bad_specs_are_rejected_naming_the_problem() {
        type Case = (&'static str, fn(&mut Value), &'static str);
        let cases: &[Case] = &[
            (
                "unknown top-level field",
                |v| v["netwrk"] = json!("host"),
                "unknown field `netwrk`",
            ),
            (
                "unknown source field",
                |v| v["source"]["branch"] = json!("main"),
                "unknown field `branch`",
            ),
            (
                "unknown limit",
                |v| v["limits"] = json!({"network": true}),
                "unknown field `network`",
            ),
            (
                "short commit",
                |v| v["source"]["commit"] = json!("0123abc"),
                "source.commit",
            ),
            (
                "output ..",
                |v| v["outputs"] = json!(["../x"]),
                "relative to the workspace",
            ),
            (
                "absolute output",
                |v| v["outputs"] = json!(["/etc/passwd"]),
                "relative to the workspace",
            ),
            (
                "output a/../..",
                |v| v["outputs"] = json!(["a/../../b"]),
                "relative to the workspace",
            ),
            (
                "vendor ..",
                |v| v["vendor"] = json!([{"path": "../other"}]),
                "inside the source tree",
            ),
            (
                "absolute vendor without dest",
                |v| v["vendor"] = json!([{"path": "/opt/store"}]),
                "needs a dest",
            ),
            (
                "short image",
                |v| v["image"] = json!("sha256:abc"),
                "image must be sha256:",
            ),
            (
                "image tag",
                |v| v["image"] = json!("busybox:latest"),
                "image must be sha256:",
            ),
            (
                "upper-case image",
                |v| {
                    v["image"] = json!(
                        "sha256:ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
                    )
                },
                "image must be sha256:",
            ),
            (
                "zero timeout",
                |v| v["limits"] = json!({"timeoutSecs": 0}),
                "limits must be positive",
            ),
            (
                "partial ref",
                |v| v["source"]["ref"] = json!("main"),
                "full git ref",
            ),
            (
                "ref in uri",
                |v| v["source"]["uri"] = json!("git+https://github.com/o/r@v1"),
                "must not contain '@'",
            ),
            (
                "env name with =",
                |v| v["env"] = json!({"A=B": "x"}),
                "not a valid variable name",
            ),
            (
                "empty command",
                |v| v["command"] = json!([]),
                "command must not be empty",
            ),
            (
                "toolchain path",
                |v| v["toolchains"] = json!(["/opt/rust"]),
                "must be [A-Za-z0-9_-]+",
            ),
            (
                "unknown priority",
                |v| v["priority"] = json!("urgent"),
                "unknown variant `urgent`",
            ),
            (
                "toolchain twice",
                |v| v["toolchains"] = json!(["rust", "rust"]),
                "listed twice",
            ),
        ];
        for (name, patch, expected) in cases {
            let err = error_with(patch);
            assert!(err.contains(expected), "{name}: {err}");
        }
    }
}
