//! The build record: the facts the runner observed about one build (sent to
//! the attestor's signing socket as JSON), and [`to_statement`], the one
//! mapping from those facts to Cloister's SLSA v1 provenance
//! (buildType [`BUILD_TYPE`], documented in `cookbook/buildtype.md`).
//! Every field but the subjects comes from the control plane's observations.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::digest::Sha256Digest;
use crate::statement::{
    BUILD_TYPE, BuildDefinition, BuildMetadata, Builder, PROVENANCE_PREDICATE_TYPE, Provenance,
    ResourceDescriptor, RunDetails, STATEMENT_TYPE, Statement, StatementError,
};

/// Errors from turning a record into a statement.
#[derive(Debug, Error)]
pub enum RecordError {
    #[error("invalid build record: {0}")]
    Invalid(String),
    #[error("refusing to attest a build without full isolation: {0}")]
    NotIsolated(String),
    #[error(transparent)]
    Statement(#[from] StatementError),
}

/// The isolation the sandbox applied (the sandbox's `IsolationFacts`);
/// recorded verbatim as `internalParameters.isolation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IsolationFacts {
    /// `"none"`: the sandbox had its own network namespace with loopback only.
    pub network: String,
    /// Namespaces unshared, sorted (e.g. cgroup, ipc, mnt, net, pid, user, uts).
    pub namespaces: Vec<String>,
    pub no_new_privs: bool,
    /// Capabilities left in any set: `[]`.
    pub capabilities: Vec<String>,
    /// Digest of the seccomp policy applied.
    pub seccomp_policy: Sha256Digest,
    /// Digest of the canonical sandbox profile.
    pub profile: Sha256Digest,
    /// Whether the sandbox ran without host root.
    pub rootless: bool,
}

/// Where the build ran; recorded as `internalParameters.runner`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunnerFacts {
    /// The runner label (e.g. the GitHub runner label set `self-hosted,isolated`).
    pub label: String,
    /// A stable identifier of the build host.
    pub host_id: String,
}

/// The source checkout the build ran from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceFacts {
    /// Repository URI, e.g. `https://github.com/o/r` or `git+https://github.com/o/r`.
    pub uri: String,
    /// Full git ref, e.g. `refs/tags/v1.2.3` or `refs/heads/main`.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The commit checked out (40 or 64 lowercase hex digits).
    pub commit: String,
}

/// What the tenant chose for the job (besides the source).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobParameters {
    /// The build command, argv.
    pub command: Vec<String>,
    /// The sandbox profile name.
    pub profile: String,
    /// Directories snapshotted as vendored dependencies, relative to the checkout.
    #[serde(default)]
    pub vendor_paths: Vec<String>,
    /// Declared outputs (paths or globs) that become subjects.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Names (never values) of environment variables passed in.
    #[serde(default)]
    pub env: Vec<String>,
    /// Builder image reference the tenant asked for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builder_image: Option<String>,
    /// Names of the operator-configured toolchains the tenant asked for
    /// (required: `[]` when none, so a runner cannot omit them by accident).
    pub toolchains: Vec<String>,
}

/// A vendored-dependency snapshot mounted into the build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotFact {
    /// The vendor path it was taken from, relative to the checkout.
    pub path: String,
    /// sha256 of the deterministic uncompressed tar.
    pub digest: Sha256Digest,
}

/// An operator-configured toolchain mounted into the build: the snapshot
/// of its host directory the build saw (not the live directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolchainFact {
    /// The name the job asked for (`[A-Za-z0-9_-]+`).
    pub name: String,
    /// The host directory it was snapshotted from (absolute; recorded as a
    /// `file://` URI, so limited to characters a URI path takes verbatim).
    pub path: String,
    /// sha256 of the deterministic uncompressed tar of that directory.
    pub digest: Sha256Digest,
}

/// The builder image the rootfs came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageFact {
    /// The reference it was imported as.
    pub reference: String,
    /// The OCI manifest digest.
    pub digest: Sha256Digest,
}

/// One declared output, hashed by the runner after the sandbox exited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubjectFact {
    pub name: String,
    pub digest: Sha256Digest,
}

/// Everything the runner observed about one build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuildRecord {
    /// The job id (`runDetails.metadata.invocationId`).
    pub invocation_id: String,
    /// The configured, stable builder id (`runDetails.builder.id`).
    pub builder_id: String,
    pub runner: RunnerFacts,
    pub source: SourceFacts,
    pub parameters: JobParameters,
    pub isolation: IsolationFacts,
    #[serde(default)]
    pub snapshots: Vec<SnapshotFact>,
    /// The toolchains mounted, in the order of `parameters.toolchains`
    /// (required: `[]` when none).
    pub toolchains: Vec<ToolchainFact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builder_image: Option<ImageFact>,
    /// RFC 3339.
    pub started_on: String,
    /// RFC 3339.
    pub finished_on: String,
    /// sha256 of the build log.
    pub log_digest: Sha256Digest,
    pub subjects: Vec<SubjectFact>,
    /// Version of `cloister-runner` that ran the build.
    pub runner_version: String,
}

fn nonempty(field: &str, v: &str) -> Result<(), RecordError> {
    if v.trim().is_empty() {
        return Err(RecordError::Invalid(format!("{field} is empty")));
    }
    Ok(())
}

fn parse_time(field: &str, v: &str) -> Result<time::OffsetDateTime, RecordError> {
    time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
        .map_err(|_| RecordError::Invalid(format!("{field} {v:?} is not an rfc 3339 timestamp")))
}

/// Whether `name` is a valid toolchain name (`[A-Za-z0-9_-]+`).
pub fn is_toolchain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `path` is an absolute path that a `file://` URI can carry
/// verbatim: only `[A-Za-z0-9/._~+,=@:-]` (unreserved characters and the
/// few others RFC 3986 allows in a path unescaped), no empty, `.` or `..`
/// component, no trailing `/`.
pub fn is_uri_safe_path(path: &str) -> bool {
    path.len() > 1
        && path.starts_with('/')
        && path[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._~+,=@:-".contains(&b))
}

/// The `git+` form of a repository URI (`https://x` → `git+https://x`).
pub fn git_uri(uri: &str) -> String {
    if uri.starts_with("git+") {
        uri.to_owned()
    } else {
        format!("git+{uri}")
    }
}

impl BuildRecord {
    /// Checks the record is complete and describes an isolated build.
    pub fn validate(&self) -> Result<(), RecordError> {
        nonempty("invocationId", &self.invocation_id)?;
        nonempty("builderId", &self.builder_id)?;
        nonempty("runner.label", &self.runner.label)?;
        nonempty("runner.hostId", &self.runner.host_id)?;
        nonempty("source.uri", &self.source.uri)?;
        nonempty("source.ref", &self.source.git_ref)?;
        nonempty("runnerVersion", &self.runner_version)?;
        nonempty("parameters.profile", &self.parameters.profile)?;
        if self.source.uri.contains('@') {
            return Err(RecordError::Invalid(
                "source.uri must not contain '@' (the ref goes in source.ref)".into(),
            ));
        }
        if !self.source.git_ref.starts_with("refs/") {
            return Err(RecordError::Invalid(format!(
                "source.ref {:?} is not a full ref (refs/heads/… or refs/tags/…)",
                self.source.git_ref
            )));
        }
        let c = &self.source.commit;
        if !(c.len() == 40 || c.len() == 64)
            || !c
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(RecordError::Invalid(format!(
                "source.commit {c:?} is not a 40 or 64 digit lowercase hex id"
            )));
        }
        if self.parameters.command.is_empty() {
            return Err(RecordError::Invalid("parameters.command is empty".into()));
        }
        let started = parse_time("startedOn", &self.started_on)?;
        let finished = parse_time("finishedOn", &self.finished_on)?;
        if finished < started {
            return Err(RecordError::Invalid(
                "finishedOn is before startedOn".into(),
            ));
        }
        if self.subjects.is_empty() {
            return Err(RecordError::Invalid("no subjects".into()));
        }
        for s in &self.subjects {
            nonempty("subject name", &s.name)?;
        }
        let names: Vec<&str> = self.toolchains.iter().map(|t| t.name.as_str()).collect();
        if names != self.parameters.toolchains {
            return Err(RecordError::Invalid(format!(
                "toolchains {names:?} do not match parameters.toolchains {:?}",
                self.parameters.toolchains
            )));
        }
        for (i, t) in self.toolchains.iter().enumerate() {
            if !is_toolchain_name(&t.name) {
                return Err(RecordError::Invalid(format!(
                    "toolchain name {:?} is not [A-Za-z0-9_-]+",
                    t.name
                )));
            }
            if names[..i].contains(&t.name.as_str()) {
                return Err(RecordError::Invalid(format!(
                    "toolchain {} is listed twice",
                    t.name
                )));
            }
            if !is_uri_safe_path(&t.path) {
                return Err(RecordError::Invalid(format!(
                    "toolchain {} path {:?} is not an absolute path of [A-Za-z0-9/._~+,=@:-]",
                    t.name, t.path
                )));
            }
        }
        let iso = &self.isolation;
        if iso.network != "none" {
            return Err(RecordError::NotIsolated(format!(
                "network is {:?}",
                iso.network
            )));
        }
        if !iso.no_new_privs {
            return Err(RecordError::NotIsolated("no_new_privs was not set".into()));
        }
        if !iso.capabilities.is_empty() {
            return Err(RecordError::NotIsolated(format!(
                "capabilities {:?} were kept",
                iso.capabilities
            )));
        }
        if !iso.namespaces.iter().any(|n| n == "net") {
            return Err(RecordError::NotIsolated("no network namespace".into()));
        }
        Ok(())
    }
}

/// Builds Cloister's SLSA v1 provenance statement from a build record.
pub fn to_statement(record: &BuildRecord) -> Result<Statement, RecordError> {
    record.validate()?;
    let r = record;
    let source_uri = git_uri(&r.source.uri);

    let mut external = serde_json::json!({
        "source": {"uri": source_uri, "ref": r.source.git_ref},
        "command": r.parameters.command,
        "profile": r.parameters.profile,
        "vendorPaths": r.parameters.vendor_paths,
        "outputs": r.parameters.outputs,
        "env": r.parameters.env,
        "toolchains": r.parameters.toolchains,
    });
    if let Some(image) = &r.parameters.builder_image {
        external["builderImage"] = image.clone().into();
    }
    let internal = serde_json::json!({
        "isolation": r.isolation,
        "runner": r.runner,
    });

    let mut deps = vec![ResourceDescriptor {
        name: Some("source".into()),
        uri: Some(format!("{source_uri}@{}", r.source.git_ref)),
        digest: BTreeMap::from([("gitCommit".to_owned(), r.source.commit.clone())]),
        ..Default::default()
    }];
    for s in &r.snapshots {
        deps.push(ResourceDescriptor {
            name: Some(format!("snapshot:{}", s.path)),
            digest: BTreeMap::from([("sha256".to_owned(), s.digest.hex())]),
            media_type: Some("application/x-tar".into()),
            ..Default::default()
        });
    }
    for t in &r.toolchains {
        deps.push(ResourceDescriptor {
            name: Some(format!("toolchain:{}", t.name)),
            uri: Some(format!("file://{}", t.path)),
            digest: BTreeMap::from([("sha256".to_owned(), t.digest.hex())]),
            media_type: Some("application/x-tar".into()),
            ..Default::default()
        });
    }
    if let Some(image) = &r.builder_image {
        deps.push(ResourceDescriptor {
            name: Some("builder-image".into()),
            uri: Some(image.reference.clone()),
            digest: BTreeMap::from([("sha256".to_owned(), image.digest.hex())]),
            media_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
            ..Default::default()
        });
    }

    let statement = Statement {
        statement_type: STATEMENT_TYPE.into(),
        subject: r
            .subjects
            .iter()
            .map(|s| ResourceDescriptor::subject(&s.name, s.digest))
            .collect(),
        predicate_type: PROVENANCE_PREDICATE_TYPE.into(),
        predicate: Provenance {
            build_definition: BuildDefinition {
                build_type: BUILD_TYPE.into(),
                external_parameters: external,
                internal_parameters: Some(internal),
                resolved_dependencies: deps,
            },
            run_details: RunDetails {
                builder: Builder {
                    id: r.builder_id.clone(),
                    builder_dependencies: vec![ResourceDescriptor {
                        name: Some("cloister-runner".into()),
                        uri: Some(format!("pkg:generic/cloister-runner@{}", r.runner_version)),
                        ..Default::default()
                    }],
                    version: BTreeMap::from([(
                        "cloister-runner".to_owned(),
                        r.runner_version.clone(),
                    )]),
                },
                metadata: Some(BuildMetadata {
                    invocation_id: Some(r.invocation_id.clone()),
                    started_on: Some(r.started_on.clone()),
                    finished_on: Some(r.finished_on.clone()),
                }),
                byproducts: vec![ResourceDescriptor {
                    name: Some("build.log".into()),
                    digest: BTreeMap::from([("sha256".to_owned(), r.log_digest.hex())]),
                    media_type: Some("text/plain".into()),
                    ..Default::default()
                }],
            },
        },
    };
    statement.validate()?;
    Ok(statement)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn record() -> BuildRecord {
        serde_json::from_str(include_str!("../tests/golden/build-record.json")).unwrap()
    }

    #[test]
    fn record_validation_refuses_incomplete_or_unisolated_records() {
        type Case = (&'static str, fn(&mut BuildRecord));
        let cases: Vec<Case> = vec![
            ("empty job id", |r| r.invocation_id.clear()),
            ("empty builder id", |r| r.builder_id.clear()),
            ("short commit", |r| r.source.commit = "abc".into()),
            ("uppercase commit", |r| {
                r.source.commit = r.source.commit.to_uppercase()
            }),
            ("partial ref", |r| r.source.git_ref = "main".into()),
            ("ref in uri", |r| r.source.uri.push_str("@refs/heads/main")),
            ("bad time", |r| r.started_on = "2026-13-01".into()),
            ("time order", |r| {
                std::mem::swap(&mut r.started_on, &mut r.finished_on)
            }),
            ("no subjects", |r| r.subjects.clear()),
            ("no command", |r| r.parameters.command.clear()),
            ("host network", |r| r.isolation.network = "host".into()),
            ("no nnp", |r| r.isolation.no_new_privs = false),
            ("caps", |r| {
                r.isolation.capabilities = vec!["CAP_SYS_ADMIN".into()]
            }),
            ("no netns", |r| {
                r.isolation.namespaces.retain(|n| n != "net")
            }),
            ("toolchain not asked for", |r| {
                r.parameters.toolchains.clear()
            }),
            ("toolchain asked for, not recorded", |r| {
                r.toolchains.clear()
            }),
            ("toolchains out of order", |r| {
                let mut go = r.toolchains[0].clone();
                go.name = "go".into();
                r.toolchains.push(go);
                r.parameters.toolchains.insert(0, "go".into());
            }),
            ("toolchain twice", |r| {
                let t = r.toolchains[0].clone();
                r.toolchains.push(t.clone());
                r.parameters.toolchains.push(t.name);
            }),
            ("bad toolchain name", |r| {
                r.toolchains[0].name = "rust stable".into();
                r.parameters.toolchains[0] = "rust stable".into();
            }),
            ("relative toolchain path", |r| {
                r.toolchains[0].path = "opt/rust".into()
            }),
            ("toolchain path with a space", |r| {
                r.toolchains[0].path = "/opt/my rust".into()
            }),
            ("toolchain path with ..", |r| {
                r.toolchains[0].path = "/opt/../etc".into()
            }),
            ("toolchain path with a query", |r| {
                r.toolchains[0].path = "/opt/rust?x=1".into()
            }),
        ];
        for (name, mutate) in cases {
            let mut r = record();
            mutate(&mut r);
            assert!(to_statement(&r).is_err(), "{name} accepted");
        }
        to_statement(&record()).unwrap();
    }

    #[test]
    fn toolchains_are_required_fields() {
        for (at, key) in [(None, "toolchains"), (Some("parameters"), "toolchains")] {
            let mut v: serde_json::Value = serde_json::to_value(record()).unwrap();
            let obj = match at {
                Some(k) => &mut v[k],
                None => &mut v,
            };
            obj.as_object_mut().unwrap().remove(key);
            let err = serde_json::from_value::<BuildRecord>(v).unwrap_err();
            assert!(
                err.to_string().contains("missing field `toolchains`"),
                "{err}"
            );
        }
    }

    #[test]
    fn toolchains_become_parameters_and_dependencies() {
        let st = to_statement(&record()).unwrap();
        let bd = &st.predicate.build_definition;
        assert_eq!(
            bd.external_parameters["toolchains"],
            serde_json::json!(["rust"])
        );
        let dep = bd
            .resolved_dependencies
            .iter()
            .find(|d| d.name.as_deref() == Some("toolchain:rust"))
            .expect("toolchain dependency");
        let t = &record().toolchains[0];
        assert_eq!(
            dep.uri.as_deref(),
            Some(format!("file://{}", t.path).as_str())
        );
        assert_eq!(dep.digest["sha256"], t.digest.hex());
        assert_eq!(dep.media_type.as_deref(), Some("application/x-tar"));
    }

    #[test]
    fn record_rejects_unknown_fields() {
        let mut v: serde_json::Value = serde_json::to_value(record()).unwrap();
        v["surprise"] = 1.into();
        assert!(serde_json::from_value::<BuildRecord>(v).is_err());
    }
}
