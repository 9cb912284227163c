//! `POST /v1/verify` and its wire types; [`verify_json`] is shared with the
//! portal's Verify page.

use crate::http::AppError;
use crate::service::AppState;
use crate::service::auth::{AuditorAuthed, Principal};
use crate::service::extract::{IdempotencyKey, LimitedBody, parse_json};
use crate::service::framed_sha256;
use crate::service::metered::{json_bytes, metered};
use crate::storage::EVENT_VERIFY;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use cloister_attestor_core::statement::ResourceDescriptor;
use cloister_attestor_core::verify::{Reason, Verdict, VerifyRequest, check_request, verify_any};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::sync::Arc;

/// `POST /v1/verify` request. The expectations are those of
/// `cloister-attestor verify` (and slsa-verifier's `verify-artifact`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyBody<'a> {
    /// `sha256:<64 hex>` of the artifact.
    pub artifact_digest: String,
    /// Expected source repository (`github.com/o/r`, `https://…`, `git+https://…`).
    pub source_uri: String,
    pub source_tag: Option<String>,
    /// Semver tag (`v1`, `v1.2`, `v1.2.3`): every component given must match.
    pub source_versioned_tag: Option<String>,
    pub source_branch: Option<String>,
    /// `name` (any version) or `name@version`.
    pub builder_id: Option<String>,
    /// A DSSE envelope or a Sigstore bundle (v0.3) as a JSON object; when
    /// absent the attestation store is searched by `artifactDigest`.
    // Borrowed from the request body: the exact bytes the client sent,
    // neither copied nor re-serialized.
    #[serde(borrow, default)]
    #[schema(value_type = Option<Object>)]
    pub provenance: Option<&'a RawValue>,
    /// Return the verified in-toto statement as `provenance`.
    #[serde(default)]
    pub include_provenance: bool,
    /// A signed policy manifest (DSSE envelope, `policy sign`) to require
    /// the provenance's sandbox profile and seccomp policy to be in; the
    /// service's configured manifest applies when absent.
    #[serde(borrow, default)]
    #[schema(value_type = Option<Object>)]
    pub policy_manifest: Option<&'a RawValue>,
}

impl<'a> VerifyBody<'a> {
    /// The fields the shared verification takes, the provenance as sent
    /// (if any) and `includeProvenance`.
    pub fn split(self) -> (VerifyRequest, Option<&'a RawValue>, bool) {
        let req = VerifyRequest {
            artifact_digest: self.artifact_digest,
            source_uri: self.source_uri,
            source_tag: self.source_tag,
            source_versioned_tag: self.source_versioned_tag,
            source_branch: self.source_branch,
            builder_id: self.builder_id,
        };
        (req, self.provenance, self.include_provenance)
    }
}

/// One reason a verification failed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReasonBody<'a> {
    /// Stable snake_case code (cookbook/verification-reasons.md).
    pub code: &'a str,
    pub message: &'a str,
}

// Serialized straight from the core's verdict (borrowed, nothing converted
// to intermediate JSON).
/// The verdict; `verified: false` is still a 200. The one verdict body:
/// `POST /v1/verify` answers it and `cloister-attestor verify --json`
/// prints it (with `statement` under `--print-provenance`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResponse<'a> {
    pub verified: bool,
    /// Empty when verified. When several envelopes were tried (the lines
    /// of a `.intoto.jsonl`, the stored attestations of a digest) and none
    /// verified: every envelope's reasons, each message prefixed
    /// `envelope N: `.
    pub reasons: Vec<ReasonBody<'a>>,
    /// `runDetails.builder.id` of the verified provenance.
    pub builder_id: Option<&'a str>,
    /// 3 (SLSA Build L3) when verified.
    pub slsa_level: Option<u8>,
    /// The subject that matched the artifact.
    #[schema(value_type = Option<Object>)]
    pub subject: Option<&'a ResourceDescriptor>,
    /// The verified statement, when `includeProvenance` was set.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub provenance: Option<&'a serde_json::Value>,
    /// The verified statement in the CLI's output (`verify --json
    /// --print-provenance`); never in an HTTP response.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    pub statement: Option<&'a serde_json::Value>,
}

impl<'a> VerifyResponse<'a> {
    /// The body of a core verdict, without the statement.
    pub fn of(v: &'a Verdict) -> Self {
        Self {
            verified: v.verified,
            reasons: v.reasons.iter().map(reason_body).collect(),
            builder_id: v.builder_id.as_deref(),
            slsa_level: v.slsa_level,
            subject: v.subject.as_ref(),
            provenance: None,
            statement: None,
        }
    }
}

/// Service-only reason: nothing in the store has the artifact as a subject.
pub const PROVENANCE_NOT_FOUND: &str = "provenance_not_found";
/// How many stored attestations of one digest are tried, newest first.
pub const STORE_CANDIDATES: u32 = 20;

fn reason_body(r: &Reason) -> ReasonBody<'_> {
    ReasonBody {
        code: r.code.as_str(),
        message: &r.message,
    }
}

/// Verifies provenance for an artifact. Metered as `attestation.verify`.
#[utoipa::path(post, path = "/v1/verify", tag = "verification",
    request_body = VerifyBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry-safe request id: a retry within 24 h returns the stored result and is not counted again")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The verdict (verified or not)", body = VerifyResponse),
        (status = 400, description = "Body is not JSON, or a bad Idempotency-Key", body = crate::http::error::ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = crate::http::error::ErrorBody),
        (status = 413, description = "Body over the configured limit", body = crate::http::error::ErrorBody),
        (status = 422, description = "Missing, unknown or invalid fields; or an Idempotency-Key reused for another request", body = crate::http::error::ErrorBody),
        (status = 429, description = "Rate limited", body = crate::http::error::ErrorBody),
        (status = 503, description = "Storage unavailable; nothing recorded, retry", body = crate::http::error::ErrorBody)))]
pub async fn verify(
    State(state): State<AppState>,
    who: Principal,
    key: IdempotencyKey,
    LimitedBody(raw): LimitedBody,
) -> Result<Response, AppError> {
    let auditor = match &who {
        Principal::Auditor(a) => Some(a),
        Principal::Tenant(_) => None,
    };
    let sent = SentBody::new(&raw);
    let out = verify_json(&state, auditor, &sent).await?;
    match who {
        // Auditors are never billed: nothing is metered for them.
        Principal::Auditor(_) => Ok(json_bytes(StatusCode::OK, out, false)),
        Principal::Tenant(who) => {
            let hash = sent.request_hash();
            metered(&state, &who, EVENT_VERIFY, key, hash, StatusCode::OK, out).await
        }
    }
}

/// A `POST /v1/verify` body and its digest, hashed once: the digest is the
/// request hash the metering stores (`request_hash` of the route and the
/// body) and names the body's verdict in the verdict cache.
pub struct SentBody<'a> {
    raw: &'a [u8],
    digest: [u8; 32],
}

impl<'a> SentBody<'a> {
    pub fn new(raw: &'a [u8]) -> Self {
        Self {
            raw,
            digest: framed_sha256([&b"POST /v1/verify"[..], raw]),
        }
    }

    /// The same string as `request_hash(&[b"POST /v1/verify", raw])`.
    pub fn request_hash(&self) -> String {
        hex::encode(self.digest)
    }
}

/// The verdict of a `POST /v1/verify` body, as the response's JSON (before
/// metering). The portal's Verify page calls this too, then meters the same
/// way (`metered`, `attestation.verify`, the same request hash). An auditor
/// (`auditor`) looks up stored envelopes only in its engagement's frozen set.
pub async fn verify_json(
    state: &AppState,
    auditor: Option<&AuditorAuthed>,
    sent: &SentBody<'_>,
) -> Result<Bytes, AppError> {
    // One pass over the body: the fields, and the provenance as a borrowed
    // slice of exactly the bytes sent (the core parses it strictly, once).
    let body = parse_json::<VerifyBody<'_>>(sent.raw)?;
    let sent_manifest = body.policy_manifest;
    let (req, provenance, include) = body.split();
    if let Err(reason) = check_request(&req) {
        return Err(AppError::unprocessable("invalid_request", reason.message));
    }
    if let Some(p) = provenance
        && !p.get().trim_start().starts_with('{')
    {
        return Err(AppError::unprocessable(
            "invalid_request",
            "provenance must be a JSON object (a DSSE envelope or a Sigstore bundle)",
        ));
    }
    let trusted = state
        .trusted
        .get()
        .map_err(|e| AppError::Internal(format!("keyring: {e}")))?;
    // The signed policy manifest that applies, if any (`audit`).
    let gate = state.evidence.gate(sent_manifest, &trusted)?;
    // The statement as JSON is built only when the caller asked for it.
    let verdict: Option<Arc<Verdict>> = match provenance {
        // Everything the verdict depends on but the keys came in this
        // body: its digest names the verdict.
        Some(p) => Some(gate.apply(state.verdicts.verify_sent(
            &sent.digest,
            p.get().as_bytes(),
            &trusted,
            &req,
            include,
        ))),
        None => {
            // An auditor looks only in its engagement's frozen set.
            let envelopes = match auditor {
                None => {
                    state
                        .storage
                        .find_envelopes(&req.artifact_digest, STORE_CANDIDATES)
                        .await?
                }
                Some(a) => {
                    state
                        .storage
                        .engagement_envelopes(
                            &a.engagement_id,
                            &req.artifact_digest,
                            STORE_CANDIDATES,
                        )
                        .await?
                }
            };
            // The core's rule for several envelopes: the first that
            // verifies (policy gate included) wins, else every one's reasons.
            verify_any(envelopes.iter().map(|envelope| {
                gate.apply(
                    state
                        .verdicts
                        .verify(envelope.as_bytes(), &trusted, &req, include),
                )
            }))
        }
    };
    let not_found;
    let response = match &verdict {
        Some(v) => {
            let outcome = if v.verified { "verified" } else { "failed" };
            if v.verified {
                count_outcome(state, outcome, "none");
            }
            for r in &v.reasons {
                count_outcome(state, outcome, r.code.as_str());
            }
            VerifyResponse {
                provenance: if include && v.verified {
                    v.statement.as_ref()
                } else {
                    None
                },
                ..VerifyResponse::of(v)
            }
        }
        None => {
            count_outcome(state, "failed", PROVENANCE_NOT_FOUND);
            not_found = format!(
                "no stored attestation has {} as a subject; send the provenance",
                req.artifact_digest
            );
            VerifyResponse {
                verified: false,
                reasons: vec![ReasonBody {
                    code: PROVENANCE_NOT_FOUND,
                    message: &not_found,
                }],
                builder_id: None,
                slsa_level: None,
                subject: None,
                provenance: None,
                statement: None,
            }
        }
    };
    let out = serde_json::to_vec(&response).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(Bytes::from(out))
}

fn count_outcome(state: &AppState, outcome: &'static str, reason: &'static str) {
    state
        .metrics
        .verify_outcomes
        .get_or_create(&crate::metrics::VerifyLabels { outcome, reason })
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored request hash of a verify call is what it was before the
    /// digest was shared with the verdict cache (idempotency records written
    /// earlier still compare equal).
    #[test]
    fn sent_body_hash_is_the_request_hash() {
        let raw = br#"{"artifactDigest":"sha256:00","sourceUri":"x"}"#;
        assert_eq!(
            SentBody::new(raw).request_hash(),
            crate::service::metered::request_hash(&[b"POST /v1/verify", raw])
        );
    }
}
