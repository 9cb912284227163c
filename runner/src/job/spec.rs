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
        for t in &self.toolchains {
            if t.is_empty()
                || !t
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return bad(format!("toolchain name {t:?} must be [A-Za-z0-9_-]+"));
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

    fn base() -> serde_json::Value {
        serde_json::json!({
            "source": {"path": "/src/a", "commit": "0123456789abcdef0123456789abcdef01234567",
                       "uri": "git+https://github.com/o/a", "ref": "refs/heads/main"},
            "command": ["make"],
            "outputs": ["out/*"]
        })
    }

    #[test]
    fn minimal_spec_parses_with_defaults() {
        let spec = JobSpec::from_json(base().to_string().as_bytes()).unwrap();
        assert_eq!(spec.profile, "default");
        assert!(spec.vendor.is_empty());
    }

    #[test]
    fn unknown_top_level_field_is_rejected() {
        let mut v = base();
        v["netwrk"] = serde_json::json!("host");
        let err = JobSpec::from_json(v.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `netwrk`"), "{err}");
    }

    #[test]
    fn unknown_nested_field_is_rejected() {
        let mut v = base();
        v["source"]["branch"] = serde_json::json!("main");
        let err = JobSpec::from_json(v.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `branch`"), "{err}");
        let mut v = base();
        v["limits"] = serde_json::json!({"network": true});
        let err = JobSpec::from_json(v.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `network`"), "{err}");
    }

    #[test]
    fn short_commit_is_rejected() {
        let mut v = base();
        v["source"]["commit"] = serde_json::json!("0123abc");
        let err = JobSpec::from_json(v.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("source.commit"), "{err}");
    }

    #[test]
    fn escaping_output_glob_is_rejected() {
        for glob in ["../x", "/etc/passwd", "a/../../b"] {
            let mut v = base();
            v["outputs"] = serde_json::json!([glob]);
            let err = JobSpec::from_json(v.to_string().as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains("relative to the workspace"), "{glob}: {err}");
        }
    }

    #[test]
    fn escaping_vendor_path_is_rejected() {
        let mut v = base();
        v["vendor"] = serde_json::json!([{"path": "../other"}]);
        let err = JobSpec::from_json(v.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("inside the source tree"), "{err}");
        let mut v = base();
        v["vendor"] = serde_json::json!([{"path": "/opt/store"}]);
        let err = JobSpec::from_json(v.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs a dest"), "{err}");
    }

    #[test]
    fn bad_image_ref_and_limits_are_rejected() {
        for image in [
            "sha256:abc",
            "busybox:latest",
            "sha256:ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
        ] {
            let mut v = base();
            v["image"] = serde_json::json!(image);
            let err = JobSpec::from_json(v.to_string().as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains("image must be sha256:"), "{image}: {err}");
        }
        let mut v = base();
        v["limits"] = serde_json::json!({"timeoutSecs": 0});
        let err = JobSpec::from_json(v.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("limits must be positive"), "{err}");
        let mut v = base();
        v["source"]["ref"] = serde_json::json!("main");
        let err = JobSpec::from_json(v.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("full git ref"), "{err}");
        let mut v = base();
        v["source"]["uri"] = serde_json::json!("git+https://github.com/o/r@v1");
        let err = JobSpec::from_json(v.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("must not contain '@'"), "{err}");
        let mut v = base();
        v["env"] = serde_json::json!({"A=B": "x"});
        let err = JobSpec::from_json(v.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a valid variable name"), "{err}");
    }

    #[test]
    fn empty_command_is_rejected() {
        let mut v = base();
        v["command"] = serde_json::json!([]);
        let err = JobSpec::from_json(v.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("command must not be empty"), "{err}");
    }
}
