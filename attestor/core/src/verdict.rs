//! What a verification concludes: the [`Verdict`], its [`Reason`]s with
//! their stable [`ReasonCode`]s (documented in
//! `cookbook/verification-reasons.md`), and the sandbox policies a verified
//! statement names ([`PolicyClaims`]).
//!
//! Below both `verify` (which produces verdicts) and `policy` (which checks
//! a verdict's claims against a signed manifest, and reports in the same
//! reasons); both re-export these types where they were first defined.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::statement::{ResourceDescriptor, Statement};

/// Stable machine-readable reasons (snake_case on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// The request itself is invalid (bad digest syntax, conflicting flags).
    InvalidRequest,
    /// No trusted public key was supplied.
    NoTrustedKeys,
    /// The provenance input exceeds the size or count limits.
    InputTooLarge,
    /// The provenance (or its payload) is not well-formed JSON.
    MalformedJson,
    /// A JSON object repeats a key.
    DuplicateJsonKey,
    /// A base64 field does not decode.
    InvalidBase64,
    /// Well-formed JSON that is neither a DSSE envelope nor a Sigstore bundle.
    UnrecognizedFormat,
    /// A Sigstore bundle we do not verify (media type, certificates, tlog entries, message signature).
    UnsupportedBundle,
    /// Missing signatures, or a bundle without exactly one.
    SignatureCount,
    /// payloadType is not `application/vnd.in-toto+json`.
    PayloadTypeMismatch,
    /// A trusted key's signature carries another keyid (or the bundle hint differs).
    KeyidMismatch,
    /// No signature is by a trusted key.
    UntrustedKey,
    /// A signature by a trusted key does not verify.
    SignatureInvalid,
    /// The verified payload is not a valid statement.
    InvalidStatement,
    /// `_type` is not in-toto Statement v1.
    StatementTypeMismatch,
    /// `predicateType` is not SLSA provenance v1.
    PredicateTypeMismatch,
    /// `buildType` is not Cloister's.
    BuildTypeMismatch,
    /// The artifact digest is not among the subjects.
    ArtifactDigestMismatch,
    /// No source dependency in the provenance.
    SourceMissing,
    SourceUriMismatch,
    SourceTagMismatch,
    SourceVersionedTagMismatch,
    SourceBranchMismatch,
    BuilderIdMismatch,
    /// `internalParameters.isolation` or one of its claims is absent or mistyped.
    IsolationClaimMissing,
    /// `internalParameters.isolation.network` is not `"none"`.
    IsolationNetworkNotNone,
    /// no_new_privs unset, capabilities kept, or no network namespace.
    IsolationClaimInsufficient,
    /// A policy manifest applies and the provenance's sandbox profile or
    /// seccomp policy digest is not in it (or the manifest is not signed by
    /// a trusted key).
    PolicyNotSigned,
}

impl ReasonCode {
    /// Every code, in documentation order.
    pub const ALL: &'static [ReasonCode] = &[
        ReasonCode::InvalidRequest,
        ReasonCode::NoTrustedKeys,
        ReasonCode::InputTooLarge,
        ReasonCode::MalformedJson,
        ReasonCode::DuplicateJsonKey,
        ReasonCode::InvalidBase64,
        ReasonCode::UnrecognizedFormat,
        ReasonCode::UnsupportedBundle,
        ReasonCode::SignatureCount,
        ReasonCode::PayloadTypeMismatch,
        ReasonCode::KeyidMismatch,
        ReasonCode::UntrustedKey,
        ReasonCode::SignatureInvalid,
        ReasonCode::InvalidStatement,
        ReasonCode::StatementTypeMismatch,
        ReasonCode::PredicateTypeMismatch,
        ReasonCode::BuildTypeMismatch,
        ReasonCode::ArtifactDigestMismatch,
        ReasonCode::SourceMissing,
        ReasonCode::SourceUriMismatch,
        ReasonCode::SourceTagMismatch,
        ReasonCode::SourceVersionedTagMismatch,
        ReasonCode::SourceBranchMismatch,
        ReasonCode::BuilderIdMismatch,
        ReasonCode::IsolationClaimMissing,
        ReasonCode::IsolationNetworkNotNone,
        ReasonCode::IsolationClaimInsufficient,
        ReasonCode::PolicyNotSigned,
    ];

    /// The wire name, e.g. `signature_invalid`.
    pub fn as_str(self) -> &'static str {
        // Kept in step with the serde names by the `codes_are_snake_case` test.
        match self {
            ReasonCode::InvalidRequest => "invalid_request",
            ReasonCode::NoTrustedKeys => "no_trusted_keys",
            ReasonCode::InputTooLarge => "input_too_large",
            ReasonCode::MalformedJson => "malformed_json",
            ReasonCode::DuplicateJsonKey => "duplicate_json_key",
            ReasonCode::InvalidBase64 => "invalid_base64",
            ReasonCode::UnrecognizedFormat => "unrecognized_format",
            ReasonCode::UnsupportedBundle => "unsupported_bundle",
            ReasonCode::SignatureCount => "signature_count",
            ReasonCode::PayloadTypeMismatch => "payload_type_mismatch",
            ReasonCode::KeyidMismatch => "keyid_mismatch",
            ReasonCode::UntrustedKey => "untrusted_key",
            ReasonCode::SignatureInvalid => "signature_invalid",
            ReasonCode::InvalidStatement => "invalid_statement",
            ReasonCode::StatementTypeMismatch => "statement_type_mismatch",
            ReasonCode::PredicateTypeMismatch => "predicate_type_mismatch",
            ReasonCode::BuildTypeMismatch => "build_type_mismatch",
            ReasonCode::ArtifactDigestMismatch => "artifact_digest_mismatch",
            ReasonCode::SourceMissing => "source_missing",
            ReasonCode::SourceUriMismatch => "source_uri_mismatch",
            ReasonCode::SourceTagMismatch => "source_tag_mismatch",
            ReasonCode::SourceVersionedTagMismatch => "source_versioned_tag_mismatch",
            ReasonCode::SourceBranchMismatch => "source_branch_mismatch",
            ReasonCode::BuilderIdMismatch => "builder_id_mismatch",
            ReasonCode::IsolationClaimMissing => "isolation_claim_missing",
            ReasonCode::IsolationNetworkNotNone => "isolation_network_not_none",
            ReasonCode::IsolationClaimInsufficient => "isolation_claim_insufficient",
            ReasonCode::PolicyNotSigned => "policy_not_signed",
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reason a verification failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub code: ReasonCode,
    pub message: String,
}

impl Reason {
    pub fn new(code: ReasonCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub verified: bool,
    /// Empty when verified.
    pub reasons: Vec<Reason>,
    /// `runDetails.builder.id` of the verified provenance.
    pub builder_id: Option<String>,
    /// 3 when verified (SLSA Build L3), else absent.
    pub slsa_level: Option<u8>,
    /// The subject that matched the artifact.
    pub subject: Option<ResourceDescriptor>,
    /// The verified statement as JSON (parsed from the verified bytes; only
    /// with [`crate::verify::VerifyOptions::include_statement`], which
    /// [`crate::verify::verify`] sets).
    #[serde(skip)]
    pub statement: Option<serde_json::Value>,
    /// Exactly the verified payload bytes (for `--print-provenance`).
    #[serde(skip)]
    pub payload: Option<Vec<u8>>,
    /// keyid of the key whose signature verified.
    #[serde(skip)]
    pub keyid: Option<String>,
    /// The sandbox policies the verified statement names (for a policy
    /// manifest's check, `policy::apply`), once its signature verified.
    #[serde(skip)]
    pub policies: Option<PolicyClaims>,
}

impl Verdict {
    pub(crate) fn fail(reasons: Vec<Reason>) -> Self {
        Self {
            verified: false,
            reasons,
            builder_id: None,
            slsa_level: None,
            subject: None,
            statement: None,
            payload: None,
            keyid: None,
            policies: None,
        }
    }

    pub(crate) fn fail1(code: ReasonCode, message: impl Into<String>) -> Self {
        Self::fail(vec![Reason::new(code, message)])
    }

    /// The first reason's code, if any.
    pub fn code(&self) -> Option<ReasonCode> {
        self.reasons.first().map(|r| r.code)
    }
}

/// The policy digests a statement's isolation claims name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyClaims {
    /// `sha256:<hex>` of the sandbox profile.
    pub profile: Option<String>,
    /// `sha256:<hex>` of the seccomp policy.
    pub seccomp: Option<String>,
    /// `externalParameters.profile`: the profile's name as the job chose it.
    pub profile_name: Option<String>,
}

/// Reads the policy claims from statement bytes (already verified and
/// parsed strictly by the caller; this only looks fields up).
pub fn claims(statement: &[u8]) -> PolicyClaims {
    let v: serde_json::Value = serde_json::from_slice(statement).unwrap_or_default();
    let bd = v.pointer("/predicate/buildDefinition");
    let get = |path: &str| {
        bd.and_then(|b| b.pointer(path))
            .and_then(|x| x.as_str())
            .map(str::to_owned)
    };
    PolicyClaims {
        profile: get("/internalParameters/isolation/profile"),
        seccomp: get("/internalParameters/isolation/seccompPolicy"),
        profile_name: get("/externalParameters/profile"),
    }
}

/// The policy claims of a parsed statement.
pub fn claims_of(st: &Statement) -> PolicyClaims {
    let bd = &st.predicate.build_definition;
    let iso = bd
        .internal_parameters
        .as_ref()
        .and_then(|p| p.get("isolation"));
    let text = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(str::to_owned);
    PolicyClaims {
        profile: text(iso.and_then(|i| i.get("profile"))),
        seccomp: text(iso.and_then(|i| i.get("seccompPolicy"))),
        profile_name: text(bd.external_parameters.get("profile")),
    }
}
