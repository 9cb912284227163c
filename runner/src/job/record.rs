//! The facts the daemon observed for one job, turned into the attestor's
//! `BuildRecord` and sent to its signing socket (`POST /v1/sign`). Only the
//! control plane fills these fields: nothing here is read from the
//! workspace except the output digests, which the daemon computed itself.

use super::outputs::Collected;
use super::spec::JobSpec;
use crate::client::{ClientError, Endpoint};
use cloister_attestor_core::digest::Sha256Digest;
use cloister_attestor_core::record::{
    self, BuildRecord, ImageFact, IsolationFacts, JobParameters, RunnerFacts, SourceFacts,
    SubjectFact,
};
use std::path::Path;

/// A vendored snapshot the job used.
#[derive(Debug, Clone)]
pub struct SnapshotFact {
    /// The vendor path as the spec gave it.
    pub path: String,
    /// `sha256:<hex>` of the snapshot.
    pub digest: String,
}

/// A toolchain snapshot the job had mounted.
#[derive(Debug, Clone)]
pub struct ToolchainFact {
    pub name: String,
    /// The host directory the snapshot was taken from.
    pub path: String,
    /// `sha256:<hex>` of the snapshot.
    pub digest: String,
}

/// Everything observed during a job, before signing.
#[derive(Debug, Clone)]
pub struct Observed {
    pub job_id: String,
    pub spec: JobSpec,
    pub builder_id: String,
    pub label: String,
    pub host_id: String,
    pub snapshots: Vec<SnapshotFact>,
    pub toolchains: Vec<ToolchainFact>,
    pub subjects: Vec<Collected>,
    pub started_on: String,
    pub finished_on: String,
    pub log_digest: String,
    /// What `cloister-runner run --result` reported.
    pub sandbox_result: cloister_sandbox::RunReport,
}

/// The attestor's answer.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Signed {
    pub envelope: serde_json::Value,
    pub bundle: serde_json::Value,
    pub keyid: String,
    #[serde(default)]
    pub attestation_id: Option<String>,
}

/// Errors getting a job signed.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error("attestor signing socket {socket}: {source}")]
    Client { socket: String, source: ClientError },
    #[error("build record: {0}")]
    Record(String),
}

/// The build record sent to the attestor, validated before it leaves.
pub fn build_record(o: &Observed) -> Result<BuildRecord, AttestError> {
    let spec = &o.spec;
    let digest = |what: &str, d: &str| {
        d.parse::<Sha256Digest>()
            .map_err(|e| AttestError::Record(format!("{what} digest {d:?}: {e}")))
    };
    // Field by field: a fact the sandbox renames or drops is a compile
    // error here, not a default.
    let facts = &o.sandbox_result.isolation;
    let isolation = IsolationFacts {
        network: facts.network.clone(),
        namespaces: facts.namespaces.clone(),
        no_new_privs: facts.no_new_privs,
        capabilities: facts.capabilities.clone(),
        seccomp_policy: digest("seccomp policy", &facts.seccomp_policy)?,
        profile: digest("profile", &facts.profile)?,
        rootless: facts.rootless,
    };
    let record = BuildRecord {
        invocation_id: o.job_id.clone(),
        builder_id: o.builder_id.clone(),
        runner: RunnerFacts {
            label: o.label.clone(),
            host_id: o.host_id.clone(),
        },
        source: SourceFacts {
            uri: spec.source.uri.clone(),
            git_ref: spec.source.git_ref.clone(),
            commit: spec.source.commit.clone(),
        },
        parameters: JobParameters {
            command: spec.command.clone(),
            profile: spec.profile.clone(),
            vendor_paths: spec
                .vendor
                .iter()
                .map(|v| v.path.display().to_string())
                .collect(),
            outputs: spec.outputs.clone(),
            env: spec.env.keys().cloned().collect(),
            builder_image: spec.image.clone(),
            toolchains: spec.toolchains.clone(),
        },
        isolation,
        snapshots: o
            .snapshots
            .iter()
            .map(|s| {
                Ok(record::SnapshotFact {
                    path: s.path.clone(),
                    digest: digest("snapshot", &s.digest)?,
                })
            })
            .collect::<Result<_, AttestError>>()?,
        toolchains: o
            .toolchains
            .iter()
            .map(|t| {
                Ok(record::ToolchainFact {
                    name: t.name.clone(),
                    path: t.path.clone(),
                    digest: digest("toolchain", &t.digest)?,
                })
            })
            .collect::<Result<_, AttestError>>()?,
        builder_image: match &spec.image {
            Some(image) => Some(ImageFact {
                reference: image.clone(),
                digest: digest("image", image)?,
            }),
            None => None,
        },
        started_on: o.started_on.clone(),
        finished_on: o.finished_on.clone(),
        log_digest: digest("log", &o.log_digest)?,
        subjects: o
            .subjects
            .iter()
            .map(|s| {
                Ok(SubjectFact {
                    name: s.name.clone(),
                    digest: digest("subject", &s.digest)?,
                })
            })
            .collect::<Result<_, AttestError>>()?,
        runner_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    record
        .validate()
        .map_err(|e| AttestError::Record(e.to_string()))?;
    Ok(record)
}

/// Sends the record to the attestor and returns the signed envelope and bundle.
pub async fn sign(socket: &Path, o: &Observed) -> Result<Signed, AttestError> {
    let record = build_record(o)?;
    let body = serde_json::to_vec(&record).map_err(|e| AttestError::Record(e.to_string()))?;
    Endpoint::Unix(socket.to_path_buf())
        .json(hyper::Method::POST, "/v1/sign", Some(body))
        .await
        .map_err(|source| AttestError::Client {
            socket: socket.display().to_string(),
            source,
        })
}
