//! What both pack kinds share: the trusted keys, the signed policies and
//! their verification, per-attestation verification results (re-run at
//! pack time), `pack.json` with the time-to-pack, and the finish (manifest,
//! signature, archive, the pack's signed digest record).

use super::archive::{self, ArchiveError};
use super::manifest::{self, Manifest, ManifestError};
use super::policies::Coverage;
use super::{Context, KeyInfo, PolicyEvidence};
use crate::storage::{AttestationRow, StorageError};
use cloister_attestor_core::digest::Sha256Digest;
use cloister_attestor_core::dsse::Envelope;
use cloister_attestor_core::keys::PublicKey;
use cloister_attestor_core::policy::{self, VerifiedManifest};
use cloister_attestor_core::verify::{VerifyOptions, VerifyRequest, verify_with};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// DSSE payload type of a pack's signed digest record (stored with the
/// pack and returned with downloads; not inside the pack).
pub const DIGEST_PAYLOAD_TYPE: &str = "application/vnd.cloister.evidence-pack+json";
/// `_type` of that record.
pub const DIGEST_TYPE: &str = "https://cloister.dev/evidence/pack/v1";

/// Errors building a pack.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("signing: {0}")]
    Sign(#[from] cloister_attestor_core::dsse::DsseError),
    #[error("{0}")]
    Invalid(String),
}

/// RFC 3339 (UTC, seconds precision or more) of Unix milliseconds.
pub fn rfc3339(ms: i64) -> String {
    crate::clock::dates::rfc3339(ms)
}

/// Pretty JSON and a newline.
pub fn json_file<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).expect("pack documents serialize");
    out.push(b'\n');
    out
}

/// `keys/keys.json` (keyid, algorithm, status, validity window) and each
/// key's PEM as `keys/<keyid>.pub.pem`.
pub fn add_keys(files: &mut BTreeMap<String, Vec<u8>>, keys: &[KeyInfo]) {
    files.insert("keys/keys.json".into(), json_file(&keys));
    for k in keys {
        files.insert(
            format!("keys/{}.pub.pem", k.keyid),
            k.public_key.clone().into_bytes(),
        );
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PolicyVerification<'a> {
    configured: bool,
    verified: bool,
    keyid: Option<&'a str>,
    error: Option<&'a str>,
    entries: Vec<&'a policy::PolicyEntry>,
    /// Each policy file of the pack and whether its digest is signed.
    files: Vec<PolicyFileStatus<'a>>,
    files_error: Option<&'a str>,
    coverage: &'a Coverage,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PolicyFileStatus<'a> {
    path: String,
    kind: &'static str,
    name: &'a str,
    digest: &'a str,
    signed: bool,
}

/// `policies/`: the signed manifest as configured, its verification and
/// coverage (`verification.json`), and the policy files themselves.
pub fn add_policies(
    files: &mut BTreeMap<String, Vec<u8>>,
    policy: &PolicyEvidence,
    coverage: &Coverage,
) {
    let m = policy.manifest();
    if let Some(env) = &policy.envelope {
        files.insert("policies/manifest.dsse.json".into(), env.clone());
    }
    let mut statuses = Vec::new();
    for f in &policy.files {
        let path = format!("policies/{}", f.rel_path);
        statuses.push(PolicyFileStatus {
            path: path.clone(),
            kind: f.kind.as_str(),
            name: &f.name,
            digest: &f.digest,
            signed: m.is_some_and(|m| m.manifest.signs(f.kind, &f.digest)),
        });
        files.insert(path, f.text.clone());
    }
    let error = match &policy.verified {
        Some(Err(e)) => Some(e.as_str()),
        _ => None,
    };
    files.insert(
        "policies/verification.json".into(),
        json_file(&PolicyVerification {
            configured: policy.verified.is_some(),
            verified: m.is_some(),
            keyid: m.map(|m| m.keyid.as_str()),
            error,
            entries: m
                .map(|m| m.manifest.entries().iter().collect())
                .unwrap_or_default(),
            files: statuses,
            files_error: policy.files_error.as_deref(),
            coverage,
        }),
    );
}

/// One subject of an attestation.
#[derive(Debug, Clone, Serialize)]
pub struct SubjectOut {
    pub name: String,
    pub digest: String,
}

/// One reason of a verdict.
#[derive(Debug, Clone, Serialize)]
pub struct ReasonOut {
    pub code: String,
    pub message: String,
}

/// An attestation's verification, re-run at pack time.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResult {
    pub attestation_id: String,
    /// Hex sha256 of the envelope file's JSON line (without the newline).
    pub envelope_sha256: String,
    pub subjects: Vec<SubjectOut>,
    pub source_uri: String,
    pub builder_id: Option<String>,
    pub keyid: Option<String>,
    pub verified: bool,
    pub reasons: Vec<ReasonOut>,
}

/// Verifies a stored attestation as a consumer would: its first subject,
/// its repository (and `source_tag` when given), the policy manifest when
/// one applies.
pub fn verify_row(
    row: &AttestationRow,
    trusted: &[PublicKey],
    manifest: Option<&VerifiedManifest>,
    policy_configured: bool,
    source_tag: Option<&str>,
) -> VerifyResult {
    let req = VerifyRequest {
        artifact_digest: row
            .subjects
            .first()
            .map(|s| s.digest.clone())
            .unwrap_or_default(),
        source_uri: row.source_uri.clone(),
        source_tag: source_tag.map(str::to_owned),
        ..VerifyRequest::default()
    };
    let mut v = verify_with(
        row.envelope.as_bytes(),
        trusted,
        &req,
        &VerifyOptions {
            include_statement: false,
        },
    );
    match manifest {
        Some(m) => policy::apply(&mut v, &m.manifest),
        None if policy_configured => policy::refuse(
            &mut v,
            "a policy manifest is configured but does not verify with the trusted keys",
        ),
        None => {}
    }
    VerifyResult {
        attestation_id: row.id.clone(),
        envelope_sha256: Sha256Digest::of(row.envelope.as_bytes()).hex(),
        subjects: row
            .subjects
            .iter()
            .map(|s| SubjectOut {
                name: s.name.clone(),
                digest: s.digest.clone(),
            })
            .collect(),
        source_uri: row.source_uri.clone(),
        builder_id: v.builder_id.clone(),
        keyid: v.keyid.clone(),
        verified: v.verified,
        reasons: v
            .reasons
            .iter()
            .map(|r| ReasonOut {
                code: r.code.as_str().to_owned(),
                message: r.message.clone(),
            })
            .collect(),
    }
}

/// A finished pack.
#[derive(Debug, Clone)]
pub struct Built {
    pub bytes: Vec<u8>,
    /// Hex sha256 of `bytes`.
    pub sha256: String,
    pub manifest: Manifest,
    /// The whole build, measured (what the store and the metric record).
    pub time_to_pack_ms: i64,
    /// DSSE (JSON) over the pack's digest record.
    pub digest_envelope: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PackInfo<'a> {
    kind: &'a str,
    version: &'a str,
    subject: &'a str,
    generated_at: String,
    /// Time from the start of the build to its last file, in milliseconds;
    /// absent when SOURCE_DATE_EPOCH asked for a reproducible pack.
    #[serde(skip_serializing_if = "Option::is_none")]
    time_to_pack_ms: Option<i64>,
    attestor_keyid: &'a str,
    cloister_version: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DigestRecord<'a> {
    #[serde(rename = "_type")]
    type_: &'a str,
    kind: &'a str,
    subject: &'a str,
    sha256: &'a str,
    size: u64,
    generated_at: String,
}

/// Adds `pack.json`, the manifest and its signature, writes the archive
/// and signs its digest.
pub fn finish(
    ctx: &Context,
    mut files: BTreeMap<String, Vec<u8>>,
    kind: &str,
    version: &str,
    subject: &str,
    started: Instant,
) -> Result<Built, PackError> {
    let generated_ms = ctx.generated_at_ms();
    let generated_at = rfc3339(generated_ms);
    files.insert(
        "pack.json".into(),
        json_file(&PackInfo {
            kind,
            version,
            subject,
            generated_at: generated_at.clone(),
            time_to_pack_ms: ctx
                .source_date_epoch
                .is_none()
                .then(|| started.elapsed().as_millis() as i64),
            attestor_keyid: ctx.signer.keyid(),
            cloister_version: env!("CARGO_PKG_VERSION"),
        }),
    );
    let m = Manifest::of(kind, version, subject, &generated_at, &files)?;
    manifest::seal(&mut files, &m, ctx.signer.as_ref())?;
    let mtime = u64::try_from(generated_ms / 1000).unwrap_or(0);
    let bytes = archive::write(&files, mtime)?;
    let sha256 = Sha256Digest::of(&bytes).hex();
    let record = DigestRecord {
        type_: DIGEST_TYPE,
        kind,
        subject,
        sha256: &sha256,
        size: bytes.len() as u64,
        generated_at,
    };
    let envelope = Envelope::sign(
        DIGEST_PAYLOAD_TYPE,
        serde_json::to_vec(&record).expect("record serializes"),
        ctx.signer.as_ref(),
    )?;
    Ok(Built {
        time_to_pack_ms: started.elapsed().as_millis() as i64,
        bytes,
        sha256,
        manifest: m,
        digest_envelope: envelope.to_json(),
    })
}
