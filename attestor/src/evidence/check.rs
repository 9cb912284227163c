//! `pack verify`: checks either kind of pack offline with trusted public
//! keys, and reports every finding with a stable code:
//!
//! - the archive is read strictly (`archive::read`);
//! - `MANIFEST.dsse.json` must verify with a trusted key and its payload
//!   must be exactly `MANIFEST.json`, which is then parsed from the
//!   verified bytes;
//! - every listed file must be there with its sha256 and size, and nothing
//!   unlisted may be there, except under `appendix/`, where a changed,
//!   added or removed file is reported (`appendix_edited`) and accepted;
//! - every provenance envelope in the pack must verify (signature by a
//!   trusted key, a valid statement); the signed policy manifest must
//!   verify, every policy file must be one it signs, and every provenance
//!   must name policies it signs.
//!
//! The pack passes when no finding but `appendix_edited` remains.

use super::archive;
use super::manifest::{MANIFEST, MANIFEST_DSSE, Manifest, PAYLOAD_TYPE};
use cloister_attestor_core::digest::Sha256Digest;
use cloister_attestor_core::dsse::{self, Envelope};
use cloister_attestor_core::keys::PublicKey;
use cloister_attestor_core::policy::{self, PolicyKind};
use cloister_attestor_core::statement::Statement;
use cloister_attestor_core::verify::verify_envelope;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// A pack's files by path.
type Files = BTreeMap<String, Vec<u8>>;

/// What a finding is about (stable, snake_case on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finding {
    /// Not a gzip tar, or an entry that is not a plain file in the tree.
    ArchiveInvalid,
    /// `MANIFEST.json` or `MANIFEST.dsse.json` is absent.
    ManifestMissing,
    /// The manifest's signature does not verify with a trusted key.
    ManifestSignatureInvalid,
    /// `MANIFEST.json` differs from the payload the signature covers.
    ManifestMismatch,
    /// The signed manifest is not a valid manifest.
    ManifestInvalid,
    /// A listed file is absent.
    FileMissing,
    /// A file is there that the manifest does not list.
    FileUnexpected,
    /// A listed file's content differs.
    FileModified,
    /// An appendix file was edited, added or removed: reported, accepted.
    AppendixEdited,
    /// A provenance envelope does not verify.
    ProvenanceInvalid,
    /// The signed policy manifest does not verify.
    PolicyManifestInvalid,
    /// A policy file, or a provenance's policy digest, is not in the signed policy manifest.
    PolicyNotSigned,
}

impl Finding {
    pub fn as_str(self) -> &'static str {
        match self {
            Finding::ArchiveInvalid => "archive_invalid",
            Finding::ManifestMissing => "manifest_missing",
            Finding::ManifestSignatureInvalid => "manifest_signature_invalid",
            Finding::ManifestMismatch => "manifest_mismatch",
            Finding::ManifestInvalid => "manifest_invalid",
            Finding::FileMissing => "file_missing",
            Finding::FileUnexpected => "file_unexpected",
            Finding::FileModified => "file_modified",
            Finding::AppendixEdited => "appendix_edited",
            Finding::ProvenanceInvalid => "provenance_invalid",
            Finding::PolicyManifestInvalid => "policy_manifest_invalid",
            Finding::PolicyNotSigned => "policy_not_signed",
        }
    }

    /// Whether this finding fails the pack.
    pub fn is_fatal(self) -> bool {
        self != Finding::AppendixEdited
    }

    /// Every code, in documentation order.
    pub const ALL: &'static [Finding] = &[
        Finding::ArchiveInvalid,
        Finding::ManifestMissing,
        Finding::ManifestSignatureInvalid,
        Finding::ManifestMismatch,
        Finding::ManifestInvalid,
        Finding::FileMissing,
        Finding::FileUnexpected,
        Finding::FileModified,
        Finding::AppendixEdited,
        Finding::ProvenanceInvalid,
        Finding::PolicyManifestInvalid,
        Finding::PolicyNotSigned,
    ];
}

/// One finding about one file (or the pack).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    pub code: Finding,
    /// The file concerned, if any.
    pub path: Option<String>,
    pub message: String,
}

/// The outcome of `pack verify`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// No fatal finding.
    pub verified: bool,
    /// `signoff` or `procurement`, from the verified manifest.
    pub kind: Option<String>,
    pub subject: Option<String>,
    /// Hex sha256 of the whole archive (compare with the issuer's record).
    pub sha256: String,
    /// The key the manifest verified with.
    pub keyid: Option<String>,
    pub files: usize,
    pub provenance_checked: usize,
    pub findings: Vec<Issue>,
}

impl Report {
    fn add(&mut self, code: Finding, path: Option<&str>, message: impl Into<String>) {
        self.findings.push(Issue {
            code,
            path: path.map(str::to_owned),
            message: message.into(),
        });
    }
}

/// Checks a pack's bytes against trusted keys.
pub fn verify(bytes: &[u8], trusted: &[PublicKey]) -> Report {
    let mut report = Report {
        verified: false,
        kind: None,
        subject: None,
        sha256: Sha256Digest::of(bytes).hex(),
        keyid: None,
        files: 0,
        provenance_checked: 0,
        findings: Vec::new(),
    };
    let files = match archive::read(bytes) {
        Ok(f) => f,
        Err(e) => {
            report.add(Finding::ArchiveInvalid, None, e.to_string());
            return report;
        }
    };
    report.files = files.len();
    let Some(manifest) = verified_manifest(&files, trusted, &mut report) else {
        return report;
    };
    report.kind = Some(manifest.kind.clone());
    report.subject = Some(manifest.subject.clone());
    check_files(&files, &manifest, &mut report);
    let policy_manifest = check_policies(&files, trusted, &mut report);
    check_provenance(&files, trusted, policy_manifest.as_ref(), &mut report);
    report.verified = !report.findings.iter().any(|f| f.code.is_fatal());
    report
}

/// The pack's manifest, read from the payload of its signature once that
/// verifies with a trusted key; `None` (with the finding reported) otherwise.
fn verified_manifest(
    files: &Files,
    trusted: &[PublicKey],
    report: &mut Report,
) -> Option<Manifest> {
    let (Some(manifest_bytes), Some(dsse_bytes)) = (files.get(MANIFEST), files.get(MANIFEST_DSSE))
    else {
        report.add(
            Finding::ManifestMissing,
            None,
            format!("{MANIFEST} and {MANIFEST_DSSE} must both be in the pack"),
        );
        return None;
    };
    let envelope = match Envelope::parse(dsse_bytes) {
        Ok(e) => e,
        Err(e) => {
            report.add(
                Finding::ManifestSignatureInvalid,
                Some(MANIFEST_DSSE),
                format!("not a DSSE envelope: {e}"),
            );
            return None;
        }
    };
    match verify_envelope(&envelope, PAYLOAD_TYPE, trusted) {
        Ok(k) => report.keyid = Some(k.keyid().to_owned()),
        Err(r) => {
            report.add(
                Finding::ManifestSignatureInvalid,
                Some(MANIFEST_DSSE),
                format!("{} ({})", r.message, r.code),
            );
            return None;
        }
    }
    if envelope.payload != *manifest_bytes {
        report.add(
            Finding::ManifestMismatch,
            Some(MANIFEST),
            "MANIFEST.json is not the payload MANIFEST.dsse.json signs",
        );
    }
    // From here on only the verified payload is read.
    let manifest = match Manifest::parse(&envelope.payload) {
        Ok(m) => m,
        Err(e) => {
            report.add(Finding::ManifestInvalid, Some(MANIFEST), e.to_string());
            return None;
        }
    };
    Some(manifest)
}

/// Every listed file is there with its digest and size, and nothing
/// unlisted is (appendix edits are reported and accepted).
fn check_files(files: &Files, manifest: &Manifest, report: &mut Report) {
    let mut listed = BTreeSet::new();
    for entry in &manifest.files {
        listed.insert(entry.path.as_str());
        let editable = entry.editable && super::manifest::is_appendix(&entry.path);
        match files.get(&entry.path) {
            None if editable => report.add(
                Finding::AppendixEdited,
                Some(&entry.path),
                "appendix file removed",
            ),
            None => report.add(
                Finding::FileMissing,
                Some(&entry.path),
                "listed in the manifest but not in the pack",
            ),
            Some(data) => {
                let sha = Sha256Digest::of(data).hex();
                if sha != entry.sha256 || data.len() as u64 != entry.size {
                    if editable {
                        report.add(
                            Finding::AppendixEdited,
                            Some(&entry.path),
                            "appendix file edited",
                        );
                    } else {
                        report.add(
                            Finding::FileModified,
                            Some(&entry.path),
                            format!(
                                "sha256 {sha} ({} bytes), the manifest says {} ({} bytes)",
                                data.len(),
                                entry.sha256,
                                entry.size
                            ),
                        );
                    }
                }
            }
        }
    }
    for name in files.keys() {
        if name == MANIFEST || name == MANIFEST_DSSE || listed.contains(name.as_str()) {
            continue;
        }
        if super::manifest::is_appendix(name) {
            report.add(Finding::AppendixEdited, Some(name), "appendix file added");
        } else {
            report.add(
                Finding::FileUnexpected,
                Some(name),
                "in the pack but not in the manifest",
            );
        }
    }
}

/// The signed policy manifest and the policy files; the policy manifest when
/// it verifies.
fn check_policies(
    files: &Files,
    trusted: &[PublicKey],
    report: &mut Report,
) -> Option<policy::PolicyManifest> {
    let mut policy_manifest = None;
    if let Some(bytes) = files.get("policies/manifest.dsse.json") {
        match policy::verify(bytes, trusted) {
            Ok(v) => policy_manifest = Some(v.manifest),
            Err(e) => report.add(
                Finding::PolicyManifestInvalid,
                Some("policies/manifest.dsse.json"),
                e.to_string(),
            ),
        }
    }
    if let Some(m) = &policy_manifest {
        for (name, data) in files.range("policies/".to_owned()..) {
            if !name.starts_with("policies/") {
                break;
            }
            let rel = &name["policies/".len()..];
            let (kind, digest) = if let Some(file) = rel.strip_prefix("seccomp/") {
                if !file.ends_with(".json") || file.contains('/') {
                    continue;
                }
                (
                    PolicyKind::Seccomp,
                    cloister_policy::seccomp_policy_digest(&String::from_utf8_lossy(data)),
                )
            } else if rel.ends_with(".json")
                && !rel.contains('/')
                && !matches!(rel, "verification.json" | "manifest.dsse.json")
            {
                (
                    PolicyKind::Profile,
                    cloister_policy::profile_digest(&String::from_utf8_lossy(data)),
                )
            } else {
                continue;
            };
            match digest {
                Ok(d) if m.signs(kind, &d) => {}
                Ok(d) => report.add(
                    Finding::PolicyNotSigned,
                    Some(name),
                    format!(
                        "{} digest {d} is not in the signed policy manifest",
                        kind.as_str()
                    ),
                ),
                Err(e) => report.add(Finding::PolicyNotSigned, Some(name), e.to_string()),
            }
        }
    }
    policy_manifest
}

/// Every provenance envelope.
fn check_provenance(
    files: &Files,
    trusted: &[PublicKey],
    policy_manifest: Option<&policy::PolicyManifest>,
    report: &mut Report,
) {
    for (name, data) in files {
        if !name.ends_with(".intoto.jsonl") {
            continue;
        }
        for (i, line) in data
            .split(|&b| b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .enumerate()
        {
            report.provenance_checked += 1;
            let where_ = format!("line {}", i + 1);
            let checked = Envelope::parse(line)
                .map_err(|e| e.to_string())
                .and_then(|env| {
                    verify_envelope(&env, dsse::PAYLOAD_TYPE, trusted)
                        .map_err(|r| format!("{} ({})", r.message, r.code))?;
                    Statement::parse(&env.payload).map_err(|e| e.to_string())?;
                    Ok(env.payload)
                });
            match checked {
                Err(e) => report.add(
                    Finding::ProvenanceInvalid,
                    Some(name),
                    format!("{where_}: {e}"),
                ),
                Ok(payload) => {
                    if let Some(m) = policy_manifest
                        && let Err(r) = policy::check_claims(&policy::claims(&payload), m)
                    {
                        report.add(
                            Finding::PolicyNotSigned,
                            Some(name),
                            format!("{where_}: {}", r.message),
                        );
                    }
                }
            }
        }
    }
}
