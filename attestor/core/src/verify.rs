//! Offline verification of key-signed provenance with slsa-verifier
//! `verify-artifact` semantics: a DSSE signature by a trusted key whose keyid
//! matches, the in-toto payload type, Statement v1 and SLSA v1 predicate
//! types, Cloister's buildType, the artifact digest among the subjects, the
//! source URI (and optionally tag, versioned tag, branch) matching the source
//! dependency, the builder id, and the isolation claims. The statement is
//! parsed from exactly the payload bytes whose signature was checked.
//!
//! Every failure carries a stable [`ReasonCode`] (documented in
//! `cookbook/verification-reasons.md`) and a human sentence.

use serde::{Deserialize, Serialize};

use crate::bundle::{Bundle, BundleError};
use crate::digest::Sha256Digest;
use crate::dsse::{DsseError, Envelope, PAYLOAD_TYPE};
use crate::json::{self, JsonError};
use crate::keys::PublicKey;
use crate::statement::{BUILD_TYPE, ResourceDescriptor, Statement, StatementError};
pub use crate::verdict::{Reason, ReasonCode, Verdict};

/// Most envelopes one `.intoto.jsonl` file may hold.
pub const MAX_JSONL_ENVELOPES: usize = 64;

/// What the consumer expects of the artifact's provenance (the flags of
/// `slsa-verifier verify-artifact`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyRequest {
    /// `sha256:<hex>` of the artifact.
    pub artifact_digest: String,
    /// Expected source repository (`github.com/o/r`, `https://…` or `git+https://…`).
    pub source_uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_tag: Option<String>,
    /// A semver tag (`v1`, `v1.2`, `v1.2.3`): the provenance tag must match
    /// every component given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_versioned_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_branch: Option<String>,
    /// `name` (any version) or `name@version` (exactly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builder_id: Option<String>,
}

fn json_reason(e: &JsonError) -> Reason {
    let code = match e {
        JsonError::TooLarge { .. } => ReasonCode::InputTooLarge,
        JsonError::DuplicateKey(_) => ReasonCode::DuplicateJsonKey,
        JsonError::Malformed(_) => ReasonCode::MalformedJson,
        JsonError::InvalidBase64(_) => ReasonCode::InvalidBase64,
        JsonError::Schema(_) => ReasonCode::UnrecognizedFormat,
    };
    Reason::new(code, e.to_string())
}

fn dsse_reason(e: &DsseError) -> Reason {
    match e {
        DsseError::Json(j) => json_reason(j),
        DsseError::TooManySignatures(_) => Reason::new(ReasonCode::InputTooLarge, e.to_string()),
        DsseError::Sign(_) => Reason::new(ReasonCode::UnrecognizedFormat, e.to_string()),
    }
}

fn bundle_reason(e: &BundleError) -> Reason {
    match e {
        BundleError::Json(j) => json_reason(j),
        BundleError::Dsse(d) => dsse_reason(d),
        BundleError::SignatureCount(_) => Reason::new(ReasonCode::SignatureCount, e.to_string()),
        BundleError::MediaType(_)
        | BundleError::Material(_)
        | BundleError::NoEnvelope
        | BundleError::TlogEntries => Reason::new(ReasonCode::UnsupportedBundle, e.to_string()),
    }
}

/// An input document: one envelope (from a bundle with its hint, or bare).
struct Candidate {
    envelope: Envelope,
    bundle_hint: Option<String>,
}

/// Splits the input into candidate envelopes, or the reason it cannot be.
fn candidates(input: &[u8]) -> Result<Vec<Candidate>, Reason> {
    if input.len() > json::MAX_DOCUMENT_BYTES {
        return Err(Reason::new(
            ReasonCode::InputTooLarge,
            format!(
                "provenance is {} bytes, over the limit of {} bytes",
                input.len(),
                json::MAX_DOCUMENT_BYTES
            ),
        ));
    }
    // The common case in one pass: a DSSE envelope parses strictly on its
    // own (its structs refuse unknown and repeated fields), which is what
    // `check`, the probe and `Envelope::parse` of `one_document` conclude in
    // three passes. Anything else takes those passes, which name the reason.
    if let Ok(envelope) = Envelope::parse(input) {
        return Ok(vec![Candidate {
            envelope,
            bundle_hint: None,
        }]);
    }
    match json::check(input, json::MAX_DOCUMENT_BYTES) {
        Ok(()) => return one_document(input).map(|c| vec![c]),
        Err(JsonError::Malformed(_)) => {}
        Err(e) => return Err(json_reason(&e)),
    }
    // Not a single JSON document: maybe .intoto.jsonl with several lines.
    let lines: Vec<&[u8]> = input
        .split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(|b| b.is_ascii_whitespace()))
        .collect();
    if lines.len() < 2 {
        let err = json::check(input, json::MAX_DOCUMENT_BYTES).expect_err("failed above");
        return Err(json_reason(&err));
    }
    if lines.len() > MAX_JSONL_ENVELOPES {
        return Err(Reason::new(
            ReasonCode::InputTooLarge,
            format!(
                "{} envelopes in one file, over the limit of {MAX_JSONL_ENVELOPES}",
                lines.len()
            ),
        ));
    }
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            Envelope::parse(line)
                .map(|envelope| Candidate {
                    envelope,
                    bundle_hint: None,
                })
                .map_err(|e| {
                    let r = dsse_reason(&e);
                    Reason::new(r.code, format!("line {}: {}", i + 1, r.message))
                })
        })
        .collect()
}

fn one_document(doc: &[u8]) -> Result<Candidate, Reason> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<serde_json::Value>,
        #[serde(rename = "verificationMaterial")]
        verification_material: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(doc).map_err(|_| {
        Reason::new(
            ReasonCode::UnrecognizedFormat,
            "provenance is not a json object (expected a DSSE envelope or Sigstore bundle)",
        )
    })?;
    if probe.media_type.is_some() || probe.verification_material.is_some() {
        let bundle = Bundle::parse(doc).map_err(|e| bundle_reason(&e))?;
        let hint = bundle.hint().map(str::to_owned);
        let envelope = bundle
            .dsse_envelope
            .expect("Bundle::parse requires an envelope");
        Ok(Candidate {
            envelope,
            bundle_hint: hint,
        })
    } else {
        let envelope = Envelope::parse(doc).map_err(|e| {
            let r = dsse_reason(&e);
            match r.code {
                ReasonCode::UnrecognizedFormat => Reason::new(
                    r.code,
                    format!(
                        "provenance is neither a DSSE envelope nor a Sigstore bundle: {}",
                        r.message
                    ),
                ),
                _ => r,
            }
        })?;
        Ok(Candidate {
            envelope,
            bundle_hint: None,
        })
    }
}

/// Checks an envelope of any payload type (policy manifests, evidence
/// manifests) the way provenance envelopes are checked: the payload type,
/// then a signature by a trusted key with a matching keyid. Returns the key
/// that verified; only then may the payload be parsed.
pub fn verify_envelope<'k>(
    envelope: &Envelope,
    payload_type: &str,
    trusted: &'k [PublicKey],
) -> Result<&'k PublicKey, Reason> {
    if trusted.is_empty() {
        return Err(Reason::new(
            ReasonCode::NoTrustedKeys,
            "no trusted public key was given",
        ));
    }
    check_signatures(envelope, None, trusted, payload_type)
}

/// Checks the signatures; returns the trusted key that verified.
fn check_signatures<'k>(
    env: &Envelope,
    bundle_hint: Option<&str>,
    trusted: &'k [PublicKey],
    payload_type: &str,
) -> Result<&'k PublicKey, Reason> {
    if env.payload_type != payload_type {
        return Err(Reason::new(
            ReasonCode::PayloadTypeMismatch,
            format!(
                "payloadType is {:?}, expected {payload_type:?}",
                env.payload_type
            ),
        ));
    }
    if env.signatures.is_empty() {
        return Err(Reason::new(
            ReasonCode::SignatureCount,
            "the envelope has no signatures",
        ));
    }
    let pae = env.pae();
    let mut bad_trusted_sig = None;
    let mut wrong_keyid = None;
    // Whether a signature with an unknown keyid was already tried against
    // every trusted key (to tell `keyid_mismatch` from `untrusted_key`):
    // only the first is, so forged signatures cost at most one pass.
    let mut tried_unknown = false;
    for s in &env.signatures {
        let mut keyid_known = false;
        for k in trusted.iter().filter(|k| k.keyid() == s.keyid) {
            keyid_known = true;
            if k.verify(&pae, &s.sig) {
                if let Some(hint) = bundle_hint
                    && hint != k.keyid()
                {
                    return Err(Reason::new(
                        ReasonCode::KeyidMismatch,
                        format!(
                            "bundle publicKey hint {hint:?} is not the signing key's keyid {}",
                            k.keyid()
                        ),
                    ));
                }
                return Ok(k);
            }
        }
        if keyid_known {
            bad_trusted_sig.get_or_insert_with(|| s.keyid.clone());
        } else if !tried_unknown {
            tried_unknown = true;
            if let Some(k) = trusted.iter().find(|k| k.verify(&pae, &s.sig)) {
                wrong_keyid = Some((s.keyid.clone(), k.keyid().to_owned()));
            }
        }
    }
    if let Some(keyid) = bad_trusted_sig {
        return Err(Reason::new(
            ReasonCode::SignatureInvalid,
            format!("the signature by trusted key {keyid} does not verify"),
        ));
    }
    if let Some((claimed, actual)) = wrong_keyid {
        return Err(Reason::new(
            ReasonCode::KeyidMismatch,
            format!("a signature by trusted key {actual} carries keyid {claimed:?}"),
        ));
    }
    let ids: Vec<&str> = env.signatures.iter().map(|s| s.keyid.as_str()).collect();
    Err(Reason::new(
        ReasonCode::UntrustedKey,
        format!("no signature is by a trusted key (signature keyids: {ids:?})"),
    ))
}

fn statement_reason(e: &StatementError) -> Reason {
    let code = match e {
        StatementError::Json(JsonError::DuplicateKey(_)) => ReasonCode::DuplicateJsonKey,
        StatementError::Json(JsonError::TooLarge { .. }) => ReasonCode::InputTooLarge,
        StatementError::Json(_) | StatementError::Invalid(_) => ReasonCode::InvalidStatement,
        StatementError::Type(_) => ReasonCode::StatementTypeMismatch,
        StatementError::PredicateType(_) => ReasonCode::PredicateTypeMismatch,
    };
    Reason::new(code, format!("signed payload: {e}"))
}

/// The repository part of a source URI for comparison: `git+` stripped, a
/// scheme added when missing (`github.com/o/r` → `https://github.com/o/r`).
pub fn normalize_source_uri(uri: &str) -> String {
    let u = uri.trim().strip_prefix("git+").unwrap_or(uri.trim());
    if u.contains("://") {
        u.to_owned()
    } else {
        format!("https://{u}")
    }
}

/// Splits a provenance source URI `git+https://h/o/r@refs/x/y` into the
/// normalized repository and the ref.
fn split_source(uri: &str) -> (String, Option<String>) {
    match uri.rsplit_once('@') {
        Some((repo, r)) if r.starts_with("refs/") => {
            (normalize_source_uri(repo), Some(r.to_owned()))
        }
        _ => (normalize_source_uri(uri), None),
    }
}

/// A Go `golang.org/x/mod/semver` version (as slsa-verifier parses tags):
/// `vMAJOR[.MINOR[.PATCH[-PRE][+BUILD]]]`.
#[derive(Debug, PartialEq, Eq)]
struct Semver<'a> {
    major: &'a str,
    minor: Option<&'a str>,
    patch: Option<&'a str>,
    prerelease: Option<&'a str>,
    build: Option<&'a str>,
}

fn is_num(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
}

fn is_ident_list(s: &str, numeric_no_leading_zero: bool) -> bool {
    !s.is_empty()
        && s.split('.').all(|id| {
            !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && (!numeric_no_leading_zero
                    || !id.bytes().all(|b| b.is_ascii_digit())
                    || is_num(id))
        })
}

fn parse_semver(tag: &str) -> Option<Semver<'_>> {
    let rest = tag.strip_prefix('v')?;
    let (rest, build) = match rest.split_once('+') {
        Some((a, b)) => (a, Some(b)),
        None => (rest, None),
    };
    let (core, prerelease) = match rest.split_once('-') {
        Some((a, b)) => (a, Some(b)),
        None => (rest, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() > 3 || !parts.iter().all(|p| is_num(p)) {
        return None;
    }
    if (prerelease.is_some() || build.is_some()) && parts.len() != 3 {
        return None;
    }
    if prerelease.is_some_and(|p| !is_ident_list(p, true))
        || build.is_some_and(|b| !is_ident_list(b, false))
    {
        return None;
    }
    Some(Semver {
        major: parts[0],
        minor: parts.get(1).copied(),
        patch: parts.get(2).copied(),
        prerelease,
        build,
    })
}

/// slsa-verifier's versioned-tag rule: same major; minor and patch equal
/// when the expected tag gives them; prerelease and build equal when given.
fn versioned_tag_matches(provenance_tag: &str, expected: &str) -> Result<(), String> {
    let e =
        parse_semver(expected).ok_or_else(|| format!("expected tag {expected:?} is not semver"))?;
    let p = parse_semver(provenance_tag)
        .ok_or_else(|| format!("provenance tag {provenance_tag:?} is not semver"))?;
    let fields = [
        ("major", Some(e.major), Some(p.major)),
        ("minor", e.minor, p.minor),
        ("patch", e.patch, p.patch),
        ("prerelease", e.prerelease, p.prerelease),
        ("build metadata", e.build, p.build),
    ];
    for (name, want, got) in fields {
        if want.is_some() && want != got {
            return Err(format!(
                "provenance tag {provenance_tag:?} does not match {expected:?} ({name} differs)"
            ));
        }
    }
    Ok(())
}

/// slsa-verifier's builder id rule: `name@version` must match exactly; a
/// bare `name` matches that builder at any version.
fn builder_matches(provenance_id: &str, expected: &str) -> bool {
    let split = |s: &str| match s.rsplit_once('@') {
        Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
        None => (s.to_owned(), None),
    };
    let (pn, pv) = split(provenance_id);
    let (en, ev) = split(expected);
    pn == en && (ev.is_none() || ev == pv)
}

/// Validates a request; the reason is `invalid_request`.
pub fn check_request(req: &VerifyRequest) -> Result<Sha256Digest, Reason> {
    let bad = |m: String| Reason::new(ReasonCode::InvalidRequest, m);
    let digest: Sha256Digest = req
        .artifact_digest
        .parse()
        .map_err(|e: crate::digest::DigestError| bad(e.to_string()))?;
    if req.source_uri.trim().is_empty() {
        return Err(bad("a source uri is required".into()));
    }
    if req.source_uri.contains('@') {
        return Err(bad(
            "the source uri must not contain '@' (give a tag or branch separately)".into(),
        ));
    }
    if req.source_tag.is_some() && req.source_versioned_tag.is_some() {
        return Err(bad(
            "give either a source tag or a source versioned tag, not both".into(),
        ));
    }
    if let Some(v) = &req.source_versioned_tag
        && parse_semver(v).is_none()
    {
        return Err(bad(format!(
            "versioned tag {v:?} is not semver (vMAJOR[.MINOR[.PATCH]])"
        )));
    }
    for (name, v) in [
        ("tag", &req.source_tag),
        ("branch", &req.source_branch),
        ("builder id", &req.builder_id),
    ] {
        if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err(bad(format!("the {name} is empty")));
        }
    }
    Ok(digest)
}

/// Policy checks on a verified statement; all failures are collected.
fn check_policy(
    st: &Statement,
    digest: &Sha256Digest,
    req: &VerifyRequest,
) -> (Vec<Reason>, Option<ResourceDescriptor>) {
    let mut reasons = Vec::new();
    let bd = &st.predicate.build_definition;
    if bd.build_type != BUILD_TYPE {
        reasons.push(Reason::new(
            ReasonCode::BuildTypeMismatch,
            format!("buildType is {:?}, expected {BUILD_TYPE}", bd.build_type),
        ));
    }
    let subject = st
        .subject
        .iter()
        .find(|s| s.sha256().as_ref() == Some(digest))
        .cloned();
    if subject.is_none() {
        reasons.push(Reason::new(
            ReasonCode::ArtifactDigestMismatch,
            format!("artifact digest {digest} is not among the provenance subjects"),
        ));
    }

    // Source: the first resolved dependency, cross-checked with externalParameters.source.uri.
    let expected_repo = normalize_source_uri(&req.source_uri);
    match bd
        .resolved_dependencies
        .first()
        .and_then(|d| d.uri.as_deref())
    {
        None => reasons.push(Reason::new(
            ReasonCode::SourceMissing,
            "the provenance has no source dependency",
        )),
        Some(uri) => {
            let (repo, git_ref) = split_source(uri);
            let config_repo = bd
                .external_parameters
                .pointer("/source/uri")
                .and_then(|v| v.as_str())
                .map(normalize_source_uri);
            if repo != expected_repo || config_repo.as_ref().is_some_and(|c| *c != expected_repo) {
                reasons.push(Reason::new(
                    ReasonCode::SourceUriMismatch,
                    format!("source {repo} does not match expected {expected_repo}"),
                ));
            }
            let git_ref = git_ref.unwrap_or_default();
            let tag = git_ref.strip_prefix("refs/tags/");
            let branch = git_ref.strip_prefix("refs/heads/");
            if let Some(want) = &req.source_tag
                && tag != Some(want.as_str())
            {
                reasons.push(Reason::new(
                    ReasonCode::SourceTagMismatch,
                    format!("source ref {git_ref:?} is not tag {want:?}"),
                ));
            }
            if let Some(want) = &req.source_versioned_tag {
                let res = match tag {
                    Some(t) => versioned_tag_matches(t, want),
                    None => Err(format!("source ref {git_ref:?} is not a tag")),
                };
                if let Err(m) = res {
                    reasons.push(Reason::new(ReasonCode::SourceVersionedTagMismatch, m));
                }
            }
            if let Some(want) = &req.source_branch
                && branch != Some(want.as_str())
            {
                reasons.push(Reason::new(
                    ReasonCode::SourceBranchMismatch,
                    format!("source ref {git_ref:?} is not branch {want:?}"),
                ));
            }
        }
    }

    let builder = &st.predicate.run_details.builder.id;
    if let Some(want) = &req.builder_id
        && !builder_matches(builder, want)
    {
        reasons.push(Reason::new(
            ReasonCode::BuilderIdMismatch,
            format!("builder id {builder:?} does not match expected {want:?}"),
        ));
    }

    if let Some(r) = check_isolation(st) {
        reasons.push(r);
    }
    (reasons, subject)
}

fn check_isolation(st: &Statement) -> Option<Reason> {
    let iso = st
        .predicate
        .build_definition
        .internal_parameters
        .as_ref()
        .and_then(|p| p.get("isolation"));
    let Some(iso) = iso.and_then(|v| v.as_object()) else {
        return Some(Reason::new(
            ReasonCode::IsolationClaimMissing,
            "internalParameters.isolation is missing",
        ));
    };
    let missing = |k: &str| {
        Reason::new(
            ReasonCode::IsolationClaimMissing,
            format!("isolation claim {k} is missing or mistyped"),
        )
    };
    let digest_ok = |k: &str| {
        iso.get(k)
            .and_then(|v| v.as_str())
            .is_some_and(|s| s.parse::<Sha256Digest>().is_ok())
    };
    let Some(network) = iso.get("network").and_then(|v| v.as_str()) else {
        return Some(missing("network"));
    };
    let Some(namespaces) = iso.get("namespaces").and_then(|v| v.as_array()) else {
        return Some(missing("namespaces"));
    };
    let Some(nnp) = iso.get("noNewPrivs").and_then(|v| v.as_bool()) else {
        return Some(missing("noNewPrivs"));
    };
    let Some(caps) = iso.get("capabilities").and_then(|v| v.as_array()) else {
        return Some(missing("capabilities"));
    };
    if !digest_ok("seccompPolicy") {
        return Some(missing("seccompPolicy"));
    }
    if !digest_ok("profile") {
        return Some(missing("profile"));
    }
    if iso.get("rootless").and_then(|v| v.as_bool()).is_none() {
        return Some(missing("rootless"));
    }
    if network != "none" {
        return Some(Reason::new(
            ReasonCode::IsolationNetworkNotNone,
            format!("isolation claims network {network:?}, not \"none\""),
        ));
    }
    if !nnp || !caps.is_empty() || !namespaces.iter().any(|n| n.as_str() == Some("net")) {
        return Some(Reason::new(
            ReasonCode::IsolationClaimInsufficient,
            "isolation claims lack no_new_privs, an empty capability set or a network namespace",
        ));
    }
    None
}

/// Knobs for [`verify_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Fill [`Verdict::statement`] with the verified statement as a JSON
    /// value (a second parse of the payload; skip it when not needed).
    pub include_statement: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            include_statement: true,
        }
    }
}

fn verify_candidate(
    c: Candidate,
    trusted: &[PublicKey],
    digest: &Sha256Digest,
    req: &VerifyRequest,
    opts: &VerifyOptions,
) -> Verdict {
    let key = match check_signatures(&c.envelope, c.bundle_hint.as_deref(), trusted, PAYLOAD_TYPE) {
        Ok(k) => k,
        Err(r) => return Verdict::fail(vec![r]),
    };
    // From here on only the verified payload bytes are read.
    let payload = c.envelope.payload;
    let statement = match Statement::parse(&payload) {
        Ok(s) => s,
        Err(e) => return Verdict::fail(vec![statement_reason(&e)]),
    };
    let (reasons, subject) = check_policy(&statement, digest, req);
    let builder_id = Some(statement.predicate.run_details.builder.id.clone());
    let verified = reasons.is_empty();
    Verdict {
        verified,
        reasons,
        builder_id,
        slsa_level: verified.then_some(3),
        subject,
        statement: if opts.include_statement {
            serde_json::from_slice(&payload).ok()
        } else {
            None
        },
        policies: Some(crate::verdict::claims_of(&statement)),
        payload: Some(payload),
        keyid: Some(key.keyid().to_owned()),
    }
}

/// Verifies provenance (`.intoto.jsonl`, a DSSE envelope, or a Sigstore
/// bundle, auto-detected) against trusted keys and the consumer's
/// expectations. With several envelopes (jsonl), the first that verifies
/// wins; if none does, the reasons of each are reported, prefixed
/// ([`verify_any`]).
pub fn verify(provenance: &[u8], trusted: &[PublicKey], req: &VerifyRequest) -> Verdict {
    verify_with(provenance, trusted, req, &VerifyOptions::default())
}

/// [`verify`] with options (e.g. without building [`Verdict::statement`]).
pub fn verify_with(
    provenance: &[u8],
    trusted: &[PublicKey],
    req: &VerifyRequest,
    opts: &VerifyOptions,
) -> Verdict {
    verify_any(envelope_verdicts(provenance, trusted, req, opts))
        .expect("envelope_verdicts yields at least one verdict")
}

/// The verdict of each envelope of `provenance`, in order, computed as the
/// iterator is advanced (so [`verify_any`] stops checking signatures at the
/// first envelope that verifies). Input that is not provenance at all (a
/// bad request, no trusted key, malformed or oversize input) yields that
/// one failure. Never empty.
///
/// A caller that adds its own check per envelope (a policy manifest, see
/// `policy::apply`) maps the verdicts before [`verify_any`] picks one.
pub fn envelope_verdicts<'a>(
    provenance: &[u8],
    trusted: &'a [PublicKey],
    req: &'a VerifyRequest,
    opts: &'a VerifyOptions,
) -> impl Iterator<Item = Verdict> + use<'a> {
    let digest = match check_request(req) {
        Ok(d) => d,
        Err(r) => return Verdicts::One(Some(Box::new(Verdict::fail(vec![r])))),
    };
    if trusted.is_empty() {
        return Verdicts::One(Some(Box::new(Verdict::fail1(
            ReasonCode::NoTrustedKeys,
            "no trusted public key was given",
        ))));
    }
    match candidates(provenance) {
        Ok(cands) => Verdicts::Each {
            cands: cands.into_iter(),
            trusted,
            digest,
            req,
            opts,
        },
        Err(r) => Verdicts::One(Some(Box::new(Verdict::fail(vec![r])))),
    }
}

/// The iterator of [`envelope_verdicts`].
enum Verdicts<'a> {
    One(Option<Box<Verdict>>),
    Each {
        cands: std::vec::IntoIter<Candidate>,
        trusted: &'a [PublicKey],
        digest: Sha256Digest,
        req: &'a VerifyRequest,
        opts: &'a VerifyOptions,
    },
}

impl Iterator for Verdicts<'_> {
    type Item = Verdict;

    fn next(&mut self) -> Option<Verdict> {
        match self {
            Verdicts::One(v) => v.take().map(|v| *v),
            Verdicts::Each {
                cands,
                trusted,
                digest,
                req,
                opts,
            } => cands
                .next()
                .map(|c| verify_candidate(c, trusted, digest, req, opts)),
        }
    }
}

/// The one "try each envelope" rule, for every source of envelopes (the
/// lines of a `.intoto.jsonl` file, the attestations the service stores for
/// a digest): the first verdict that verifies wins (later ones are not
/// computed); when none does, the failure lists every envelope's reasons,
/// each prefixed `envelope N: ` (a lone envelope's reasons unprefixed).
/// `None` when there was no envelope at all.
///
/// Generic over how a verdict is held (`Verdict`, or the service's shared
/// `Arc<Verdict>`) so a winning verdict is returned as it came.
pub fn verify_any<V>(verdicts: impl IntoIterator<Item = V>) -> Option<V>
where
    V: std::borrow::Borrow<Verdict> + From<Verdict>,
{
    let mut failed: Vec<V> = Vec::new();
    for v in verdicts {
        if v.borrow().verified {
            return Some(v);
        }
        failed.push(v);
    }
    if failed.len() <= 1 {
        return failed.pop();
    }
    let reasons = failed
        .iter()
        .enumerate()
        .flat_map(|(i, v)| {
            v.borrow()
                .reasons
                .iter()
                .map(move |r| Reason::new(r.code, format!("envelope {}: {}", i + 1, r.message)))
        })
        .collect();
    Some(V::from(Verdict::fail(reasons)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one "try each envelope" rule: the first verified verdict wins
    /// as it came (later ones are not computed), otherwise every
    /// envelope's reasons, prefixed; a lone failure is returned unchanged.
    #[test]
    fn verify_any_takes_the_first_verified_else_every_reason() {
        let bad = |code, m: &str| Verdict::fail1(code, m);
        let good = || Verdict {
            verified: true,
            slsa_level: Some(3),
            builder_id: Some("b".into()),
            ..Verdict::fail(Vec::new())
        };
        assert_eq!(verify_any(Vec::<Verdict>::new()), None);
        let one = verify_any([bad(ReasonCode::UntrustedKey, "no key")]).unwrap();
        assert_eq!(
            one.reasons,
            vec![Reason::new(ReasonCode::UntrustedKey, "no key")]
        );

        let mut computed = 0;
        let won = verify_any(
            [
                bad(ReasonCode::SourceUriMismatch, "a"),
                good(),
                bad(ReasonCode::UntrustedKey, "c"),
            ]
            .into_iter()
            .inspect(|_| computed += 1),
        )
        .unwrap();
        assert!(won.verified);
        assert_eq!(won.builder_id.as_deref(), Some("b"));
        assert_eq!(computed, 2, "nothing after the winner is computed");

        let all = verify_any([
            bad(ReasonCode::SourceUriMismatch, "a"),
            Verdict::fail(vec![
                Reason::new(ReasonCode::SourceTagMismatch, "b1"),
                Reason::new(ReasonCode::BuilderIdMismatch, "b2"),
            ]),
        ])
        .unwrap();
        assert!(!all.verified);
        let listed: Vec<(ReasonCode, &str)> = all
            .reasons
            .iter()
            .map(|r| (r.code, r.message.as_str()))
            .collect();
        assert_eq!(
            listed,
            vec![
                (ReasonCode::SourceUriMismatch, "envelope 1: a"),
                (ReasonCode::SourceTagMismatch, "envelope 2: b1"),
                (ReasonCode::BuilderIdMismatch, "envelope 2: b2"),
            ]
        );
        // Shared verdicts (the service's `Arc<Verdict>`) come back as they were.
        let shared = std::sync::Arc::new(good());
        let back = verify_any([
            std::sync::Arc::new(bad(ReasonCode::UntrustedKey, "x")),
            shared.clone(),
        ])
        .unwrap();
        assert!(std::sync::Arc::ptr_eq(&back, &shared));
    }

    #[test]
    fn codes_are_snake_case_and_match_serde() {
        for c in ReasonCode::ALL {
            assert_eq!(
                serde_json::to_value(c).unwrap(),
                serde_json::Value::String(c.as_str().into())
            );
        }
    }

    #[test]
    fn source_uri_normalization() {
        assert_eq!(
            normalize_source_uri("github.com/o/r"),
            "https://github.com/o/r"
        );
        assert_eq!(
            normalize_source_uri("git+https://github.com/o/r"),
            "https://github.com/o/r"
        );
        assert_eq!(
            normalize_source_uri("https://github.com/o/r"),
            "https://github.com/o/r"
        );
        assert_eq!(
            split_source("git+https://github.com/o/r@refs/tags/v1"),
            (
                "https://github.com/o/r".to_owned(),
                Some("refs/tags/v1".to_owned())
            )
        );
    }

    #[test]
    fn versioned_tags_as_slsa_verifier_matches_them() {
        for (prov, want) in [
            ("v1.2.3", "v1"),
            ("v1.2.3", "v1.2"),
            ("v1.2.3", "v1.2.3"),
            ("v1.2.3-rc.1", "v1.2.3-rc.1"),
        ] {
            assert!(
                versioned_tag_matches(prov, want).is_ok(),
                "{prov} vs {want}"
            );
        }
        for (prov, want) in [
            ("v1.2.3", "v2"),
            ("v1.2.3", "v1.3"),
            ("v1.2.3", "v1.2.4"),
            ("v1.2", "v1.2.3"),
            ("v1.2.3-rc.1", "v1.2.3-rc.2"),
            ("1.2.3", "v1"),
            ("v01.2.3", "v1"),
        ] {
            assert!(
                versioned_tag_matches(prov, want).is_err(),
                "{prov} vs {want}"
            );
        }
        assert!(parse_semver("v1.2-rc1").is_none());
        assert!(parse_semver("v1.2.3.4").is_none());
    }

    #[test]
    fn builder_ids_as_slsa_verifier_matches_them() {
        assert!(builder_matches("https://b/x@v1", "https://b/x"));
        assert!(builder_matches("https://b/x@v1", "https://b/x@v1"));
        assert!(!builder_matches("https://b/x@v1", "https://b/x@v2"));
        assert!(!builder_matches("https://b/y@v1", "https://b/x"));
        assert!(builder_matches("https://b/x", "https://b/x"));
        assert!(!builder_matches("https://b/x", "https://b/x@v1"));
    }

    #[test]
    fn request_validation() {
        let ok = VerifyRequest {
            artifact_digest: format!("sha256:{}", "a".repeat(64)),
            source_uri: "github.com/o/r".into(),
            ..Default::default()
        };
        check_request(&ok).unwrap();
        let cases: Vec<fn(&mut VerifyRequest)> = vec![
            |r| r.artifact_digest = "md5:abc".into(),
            |r| r.source_uri = " ".into(),
            |r| r.source_uri = "github.com/o/r@main".into(),
            |r| {
                r.source_tag = Some("v1".into());
                r.source_versioned_tag = Some("v1".into());
            },
            |r| r.source_versioned_tag = Some("release-1".into()),
            |r| r.builder_id = Some("".into()),
        ];
        for mutate in cases {
            let mut r = ok.clone();
            mutate(&mut r);
            assert_eq!(
                check_request(&r).unwrap_err().code,
                ReasonCode::InvalidRequest,
                "{r:?}"
            );
        }
    }
}
