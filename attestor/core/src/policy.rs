//! Signed policy manifests: the list of sandbox profiles and seccomp policies
//! a host is allowed to build under, signed by the attestor key, and the
//! check that provenance was produced under policies in such a list.
//!
//! Wire format: a DSSE envelope (payload type [`PAYLOAD_TYPE`]) whose payload
//! is a JSON array of `{"name", "kind", "sha256"}` objects, `kind` being
//! `profile` or `seccomp` and `sha256` the 64 hex digits of the policy's
//! canonical digest (the value provenance records as
//! `internalParameters.isolation.profile` / `.seccompPolicy`, computed by the
//! `cloister-policy` crate). Entries are sorted by kind then name, so the
//! same policies always give the same payload.
//!
//! Like every parser of untrusted input here, the payload is parsed only
//! after its signature verified, strictly (duplicate keys, unknown fields and
//! size are refused).

use serde::{Deserialize, Serialize};

use crate::dsse::{DsseError, Envelope};
use crate::json::{self, JsonError};
use crate::keys::{PublicKey, Signer};
pub use crate::verdict::{PolicyClaims, claims, claims_of};
use crate::verdict::{Reason, ReasonCode, Verdict};
use crate::verify::verify_envelope;

/// The DSSE payload type of a policy manifest.
pub const PAYLOAD_TYPE: &str = "application/vnd.cloister.policy-manifest+json";

/// Most entries one manifest may hold.
pub const MAX_ENTRIES: usize = 4096;

/// Most bytes of a manifest envelope we read.
pub const MAX_BYTES: usize = 1024 * 1024;

/// What a manifest entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    /// A sandbox profile (OCI runtime-spec document).
    Profile,
    /// A seccomp policy (seccompiler JSON).
    Seccomp,
}

impl PolicyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Profile => "profile",
            PolicyKind::Seccomp => "seccomp",
        }
    }
}

/// One signed policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyEntry {
    /// The profile's or policy's name (its file stem).
    pub name: String,
    pub kind: PolicyKind,
    /// 64 lower-case hex digits (no `sha256:` prefix, as in in-toto digest sets).
    pub sha256: String,
}

/// Errors building, signing or verifying a manifest.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("invalid policy manifest: {0}")]
    Invalid(String),
    #[error("policy manifest is not valid JSON: {0}")]
    Json(#[from] JsonError),
    #[error("policy manifest envelope: {0}")]
    Dsse(#[from] DsseError),
    #[error("policy manifest signature: {0}")]
    Signature(Reason),
}

/// A validated list of policies, sorted by kind then name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyManifest {
    entries: Vec<PolicyEntry>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn valid_hex(h: &str) -> bool {
    h.len() == 64
        && h.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl PolicyManifest {
    /// Validates and sorts `entries`: names of letters, digits, `.`, `_`,
    /// `-`; 64 lower-case hex digits; no name twice within a kind.
    pub fn new(mut entries: Vec<PolicyEntry>) -> Result<Self, PolicyError> {
        if entries.len() > MAX_ENTRIES {
            return Err(PolicyError::Invalid(format!(
                "{} entries, over the limit of {MAX_ENTRIES}",
                entries.len()
            )));
        }
        for e in &entries {
            if !valid_name(&e.name) {
                return Err(PolicyError::Invalid(format!(
                    "name {:?} must be 1 to 128 letters, digits, '.', '_' or '-'",
                    e.name
                )));
            }
            if !valid_hex(&e.sha256) {
                return Err(PolicyError::Invalid(format!(
                    "{} {}: sha256 must be 64 lower-case hex digits",
                    e.kind.as_str(),
                    e.name
                )));
            }
        }
        entries.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        if let Some(w) = entries
            .windows(2)
            .find(|w| w[0].kind == w[1].kind && w[0].name == w[1].name)
        {
            return Err(PolicyError::Invalid(format!(
                "{} {:?} is listed twice",
                w[0].kind.as_str(),
                w[0].name
            )));
        }
        Ok(Self { entries })
    }

    pub fn entries(&self) -> &[PolicyEntry] {
        &self.entries
    }

    /// The payload that is signed: the sorted entries as compact JSON.
    pub fn to_payload(&self) -> Vec<u8> {
        serde_json::to_vec(&self.entries).expect("entries serialize")
    }

    /// Parses a (verified) payload strictly.
    pub fn from_payload(bytes: &[u8]) -> Result<Self, PolicyError> {
        let entries: Vec<PolicyEntry> = json::parse_typed(bytes, MAX_BYTES)?;
        Self::new(entries)
    }

    /// Whether a policy of `kind` with `digest` (`sha256:<hex>`) is listed.
    pub fn signs(&self, kind: PolicyKind, digest: &str) -> bool {
        let Some(hex) = digest.strip_prefix("sha256:") else {
            return false;
        };
        self.entries
            .iter()
            .any(|e| e.kind == kind && e.sha256 == hex)
    }

    /// The names listed for a digest of `kind` (for messages and reports).
    pub fn names_of(&self, kind: PolicyKind, digest: &str) -> Vec<&str> {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.entries
            .iter()
            .filter(|e| e.kind == kind && e.sha256 == hex)
            .map(|e| e.name.as_str())
            .collect()
    }
}

/// Signs `manifest` as one DSSE envelope.
pub fn sign(manifest: &PolicyManifest, signer: &dyn Signer) -> Result<Envelope, PolicyError> {
    Ok(Envelope::sign(PAYLOAD_TYPE, manifest.to_payload(), signer)?)
}

/// A manifest whose signature verified.
#[derive(Debug, Clone)]
pub struct VerifiedManifest {
    pub manifest: PolicyManifest,
    /// The trusted key that signed it.
    pub keyid: String,
    /// The envelope as verified.
    pub envelope: Envelope,
}

/// Verifies a manifest envelope (its JSON text) against trusted keys, then
/// parses the verified payload.
pub fn verify(bytes: &[u8], trusted: &[PublicKey]) -> Result<VerifiedManifest, PolicyError> {
    if bytes.len() > MAX_BYTES {
        return Err(PolicyError::Invalid(format!(
            "{} bytes, over the limit of {MAX_BYTES}",
            bytes.len()
        )));
    }
    let envelope = Envelope::parse(bytes)?;
    let key = verify_envelope(&envelope, PAYLOAD_TYPE, trusted).map_err(PolicyError::Signature)?;
    let keyid = key.keyid().to_owned();
    let manifest = PolicyManifest::from_payload(&envelope.payload)?;
    Ok(VerifiedManifest {
        manifest,
        keyid,
        envelope,
    })
}

/// Whether the policies `claims` names are both in `manifest`; the reason
/// (`policy_not_signed`) names each one that is not.
pub fn check_claims(claims: &PolicyClaims, manifest: &PolicyManifest) -> Result<(), Reason> {
    let mut missing = Vec::new();
    match &claims.profile {
        Some(d) if manifest.signs(PolicyKind::Profile, d) => {}
        Some(d) => missing.push(format!(
            "sandbox profile {d}{} is not in the signed policy manifest",
            claims
                .profile_name
                .as_deref()
                .map(|n| format!(" ({n:?})"))
                .unwrap_or_default()
        )),
        None => missing.push("the provenance names no sandbox profile digest".to_owned()),
    }
    match &claims.seccomp {
        Some(d) if manifest.signs(PolicyKind::Seccomp, d) => {}
        Some(d) => missing.push(format!(
            "seccomp policy {d} is not in the signed policy manifest"
        )),
        None => missing.push("the provenance names no seccomp policy digest".to_owned()),
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Reason::new(ReasonCode::PolicyNotSigned, missing.join("; ")))
    }
}

/// Applies a manifest to a verdict: a verdict whose signature verified
/// (it carries the verified payload) fails with `policy_not_signed` when its
/// policies are not in `manifest`. A verdict that failed before its
/// signature verified is left as it is.
pub fn apply(verdict: &mut Verdict, manifest: &PolicyManifest) {
    let Some(claims) = &verdict.policies else {
        return;
    };
    if let Err(reason) = check_claims(claims, manifest) {
        fail(verdict, reason);
    }
}

/// Fails a verdict because no trustworthy manifest is available (e.g. the
/// configured one is signed by a key no longer trusted): no silent
/// fallback to verifying without the policy gate.
pub fn refuse(verdict: &mut Verdict, why: impl Into<String>) {
    fail(verdict, Reason::new(ReasonCode::PolicyNotSigned, why));
}

fn fail(verdict: &mut Verdict, reason: Reason) {
    verdict.verified = false;
    verdict.slsa_level = None;
    verdict.reasons.push(reason);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Algorithm, KeyPair};

    fn entry(name: &str, kind: PolicyKind, c: char) -> PolicyEntry {
        PolicyEntry {
            name: name.into(),
            kind,
            sha256: c.to_string().repeat(64),
        }
    }

    #[test]
    fn manifests_sort_validate_and_round_trip() {
        let m = PolicyManifest::new(vec![
            entry("dev", PolicyKind::Profile, 'b'),
            entry("default", PolicyKind::Seccomp, 'c'),
            entry("default", PolicyKind::Profile, 'a'),
        ])
        .unwrap();
        let names: Vec<_> = m
            .entries()
            .iter()
            .map(|e| (e.kind.as_str(), e.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("profile", "default"),
                ("profile", "dev"),
                ("seccomp", "default")
            ]
        );
        assert_eq!(PolicyManifest::from_payload(&m.to_payload()).unwrap(), m);
        assert!(m.signs(PolicyKind::Profile, &format!("sha256:{}", "a".repeat(64))));
        assert!(!m.signs(PolicyKind::Seccomp, &format!("sha256:{}", "a".repeat(64))));
        assert!(!m.signs(PolicyKind::Profile, &"a".repeat(64)));
        for bad in [
            vec![entry("", PolicyKind::Profile, 'a')],
            vec![entry("a/b", PolicyKind::Profile, 'a')],
            vec![entry("x", PolicyKind::Profile, 'A')],
            vec![
                entry("x", PolicyKind::Profile, 'a'),
                entry("x", PolicyKind::Profile, 'b'),
            ],
        ] {
            assert!(PolicyManifest::new(bad).is_err());
        }
        // unknown fields and duplicate keys in a payload are refused
        assert!(
            PolicyManifest::from_payload(
                br#"[{"name":"x","kind":"profile","sha256":"aa","extra":1}]"#
            )
            .is_err()
        );
        let dup = format!(
            r#"[{{"name":"x","name":"y","kind":"profile","sha256":"{}"}}]"#,
            "a".repeat(64)
        );
        assert!(PolicyManifest::from_payload(dup.as_bytes()).is_err());
    }

    #[test]
    fn signed_manifests_verify_only_with_their_key() {
        let key = KeyPair::generate(Algorithm::EcdsaP256).unwrap();
        let other = KeyPair::generate(Algorithm::Ed25519).unwrap();
        let m = PolicyManifest::new(vec![entry("default", PolicyKind::Profile, 'a')]).unwrap();
        let env = sign(&m, &key).unwrap();
        let text = env.to_json();
        let v = verify(text.as_bytes(), &[key.public_key().clone()]).unwrap();
        assert_eq!(v.manifest, m);
        assert_eq!(v.keyid, key.keyid());
        let err = verify(text.as_bytes(), &[other.public_key().clone()]).unwrap_err();
        assert!(matches!(err, PolicyError::Signature(r) if r.code == ReasonCode::UntrustedKey));
        // a provenance envelope is not a policy manifest
        let mut wrong = env.clone();
        wrong.payload_type = crate::dsse::PAYLOAD_TYPE.into();
        let err = verify(wrong.to_json().as_bytes(), &[key.public_key().clone()]).unwrap_err();
        assert!(
            matches!(err, PolicyError::Signature(r) if r.code == ReasonCode::PayloadTypeMismatch)
        );
    }

    #[test]
    fn claims_outside_the_manifest_are_named() {
        let m = PolicyManifest::new(vec![
            entry("default", PolicyKind::Profile, 'a'),
            entry("default", PolicyKind::Seccomp, 'b'),
        ])
        .unwrap();
        let ok = PolicyClaims {
            profile: Some(format!("sha256:{}", "a".repeat(64))),
            seccomp: Some(format!("sha256:{}", "b".repeat(64))),
            profile_name: Some("default".into()),
        };
        check_claims(&ok, &m).unwrap();
        let mut bad = ok.clone();
        bad.profile = Some(format!("sha256:{}", "c".repeat(64)));
        let r = check_claims(&bad, &m).unwrap_err();
        assert_eq!(r.code, ReasonCode::PolicyNotSigned);
        assert!(r.message.contains("sandbox profile") && r.message.contains("\"default\""));
        bad.seccomp = None;
        let r = check_claims(&bad, &m).unwrap_err();
        assert!(
            r.message.contains("no seccomp policy digest"),
            "{}",
            r.message
        );
    }
}
