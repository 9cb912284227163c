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
use std::time::Duration;

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

/// Whether the attestor's signing socket answers `GET /healthz` within 2 s
/// (readiness and the `attestor_up` metric).
pub async fn attestor_health(socket: &Path) -> Result<String, String> {
    let ep = Endpoint::Unix(socket.to_path_buf());
    match tokio::time::timeout(
        Duration::from_secs(2),
        ep.call(hyper::Method::GET, "/healthz", None),
    )
    .await
    {
        Ok(Ok(_)) => Ok(format!("signing socket {} answers", socket.display())),
        Ok(Err(e)) => Err(format!("attestor signing socket {}: {e}", socket.display())),
        Err(_) => Err(format!(
            "attestor signing socket {}: no answer within 2 s",
            socket.display()
        )),
    }
}

/// Sends the record to the attestor and returns the signed envelope and bundle.
pub async fn sign(socket: &Path, o: &Observed) -> Result<Signed, AttestError> {
    let body = record_bytes(o)?;
    sign_bytes(socket, body).await
}

/// The record as sent to the attestor: JSON, validated first. These exact
/// bytes are what a retry (and `cloister-runner attest`) sends again, so
/// the attestor sees one request per job however often it is asked.
pub fn record_bytes(o: &Observed) -> Result<Vec<u8>, AttestError> {
    let record = build_record(o)?;
    serde_json::to_vec(&record).map_err(|e| AttestError::Record(e.to_string()))
}

/// One signing request with a record already serialized.
pub async fn sign_bytes(socket: &Path, body: Vec<u8>) -> Result<Signed, AttestError> {
    Endpoint::Unix(socket.to_path_buf())
        .json(hyper::Method::POST, "/v1/sign", Some(body))
        .await
        .map_err(|source| AttestError::Client {
            socket: socket.display().to_string(),
            source,
        })
}

/// How a failed job's reason starts when the attestor stayed unreachable
/// for the whole retry window (metrics read it: `attestor_unreachable`).
pub const UNREACHABLE_PREFIX: &str = "attestor unreachable";

/// The first retry's delay; each next one doubles, up to [`RETRY_CAP`].
pub const RETRY_FIRST: Duration = Duration::from_millis(250);
/// The longest pause between two signing attempts.
pub const RETRY_CAP: Duration = Duration::from_secs(15);

/// The metric outcome of a signing attempt's error
/// (`crate::job::metrics::ATTEST_OUTCOMES`): `unreachable` (no
/// connection, or the connection broke before the answer: the reply may be
/// lost, which is why a retry must be idempotent), `unavailable` (5xx),
/// `refused` (4xx), `invalid` (an answer that is not a signed result, or a
/// record that cannot be built).
pub fn outcome(e: &AttestError) -> &'static str {
    match e {
        AttestError::Client { source, .. } => match source {
            ClientError::Connect { .. } | ClientError::Http { .. } => "unreachable",
            ClientError::Status { status, .. } if status.is_server_error() => "unavailable",
            ClientError::Status { .. } => "refused",
            ClientError::Json { .. } => "invalid",
        },
        AttestError::Record(_) => "invalid",
    }
}

/// Whether an attempt that ended with `outcome` is worth repeating: the
/// attestor was not there or not able to answer (a restart, an upgrade, its
/// storage briefly down). A refusal or a malformed answer would repeat.
pub fn retryable(outcome: &str) -> bool {
    matches!(outcome, "unreachable" | "unavailable")
}

/// A signing that did not succeed.
#[derive(Debug)]
pub struct SignFailure {
    /// The last attempt's error.
    pub error: AttestError,
    /// Attempts made.
    pub attempts: u32,
    /// Whether the attestor was unreachable (or unavailable) to the end:
    /// the request may be made again later with the same record.
    pub retryable: bool,
}

impl std::fmt::Display for SignFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.error)
    }
}

/// The pause before retry number `n` (1 = the first retry): 250 ms
/// doubling, capped at [`RETRY_CAP`].
pub fn backoff(n: u32) -> Duration {
    RETRY_FIRST
        .checked_mul(1u32 << n.saturating_sub(1).min(16))
        .unwrap_or(RETRY_CAP)
        .min(RETRY_CAP)
}

/// Sends `body` until the attestor signs it, retrying a retryable failure
/// with capped exponential backoff ([`backoff`]) while the next attempt
/// still starts within `window` of the first. `attempted` hears of every
/// attempt's outcome (one of the metric outcomes, `signed` included) and,
/// after a failure that will be retried, the pause before the next.
pub async fn sign_retrying(
    socket: &Path,
    body: &[u8],
    window: Duration,
    mut attempted: impl FnMut(&'static str, Option<(&AttestError, Duration)>),
) -> Result<Signed, SignFailure> {
    let start = tokio::time::Instant::now();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let error = match sign_bytes(socket, body.to_vec()).await {
            Ok(signed) => {
                attempted("signed", None);
                return Ok(signed);
            }
            Err(e) => e,
        };
        let what = outcome(&error);
        let pause = backoff(attempts);
        if !retryable(what) || start.elapsed() + pause > window {
            attempted(what, None);
            return Err(SignFailure {
                error,
                attempts,
                retryable: retryable(what),
            });
        }
        attempted(what, Some((&error, pause)));
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let pauses: Vec<u128> = (1..=9).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(
            pauses,
            [250, 500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]
        );
        assert_eq!(backoff(1000), RETRY_CAP);
    }

    /// Nothing listens: every attempt is `unreachable`, retried with
    /// doubling pauses until the next would start past the window, then a
    /// retryable failure naming the socket.
    #[tokio::test]
    async fn an_unreachable_attestor_is_retried_for_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("sign.sock");
        let mut seen = Vec::new();
        let err = sign_retrying(&socket, b"{}", Duration::from_secs(1), |o, next| {
            seen.push((o, next.map(|(_, d)| d)));
        })
        .await
        .unwrap_err();
        assert!(err.retryable);
        assert_eq!(err.attempts as usize, seen.len());
        assert!(seen.len() >= 2, "{seen:?}");
        assert!(seen.iter().all(|(o, _)| *o == "unreachable"), "{seen:?}");
        let (last, pauses) = seen.split_last().unwrap();
        assert_eq!(last.1, None, "no pause after the last attempt");
        for (i, (_, pause)) in pauses.iter().enumerate() {
            assert_eq!(*pause, Some(backoff(i as u32 + 1)));
        }
        let paused: Duration = pauses.iter().filter_map(|(_, p)| *p).sum();
        assert!(paused <= Duration::from_secs(1), "{seen:?}");
        assert!(err.to_string().contains("attestor signing socket"), "{err}");
        // a window of zero: one attempt
        let err = sign_retrying(&socket, b"{}", Duration::ZERO, |_, _| {})
            .await
            .unwrap_err();
        assert_eq!((err.attempts, err.retryable), (1, true));
    }

    #[test]
    fn refusals_are_final_and_outages_retried() {
        let status = |code: u16| AttestError::Client {
            socket: "s".into(),
            source: ClientError::Status {
                endpoint: "e".into(),
                status: hyper::StatusCode::from_u16(code).unwrap(),
                body: String::new(),
            },
        };
        assert_eq!(outcome(&status(503)), "unavailable");
        assert!(retryable(outcome(&status(503))));
        assert_eq!(outcome(&status(422)), "refused");
        assert!(!retryable(outcome(&status(409))));
        assert!(!retryable(outcome(&AttestError::Record("x".into()))));
        let refused = AttestError::Client {
            socket: "s".into(),
            source: ClientError::Connect {
                endpoint: "e".into(),
                source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            },
        };
        assert_eq!(outcome(&refused), "unreachable");
    }
}
