//! The consumer API (every route needs `Authorization: Bearer KEY`; auditor
//! keys are refused everywhere but `POST /v1/verify`, see `audit`):
//! `POST /v1/verify`, `GET /v1/attestations`, `GET /v1/usage`, `GET /v1/keys`,
//! with their wire types (camelCase JSON, unknown request fields rejected).
//!
//! Metered routes (`verify`: `attestation.verify`; `attestations`:
//! `portal.download`) answer 2xx only after their usage event is committed
//! (see `metering`); a retry with the same `Idempotency-Key` within the window
//! gets the stored response with `Idempotent-Replayed: true` and is not
//! counted again. A tenant only ever sees its own usage and idempotency
//! records; attestations are the operator's public provenance and are
//! visible to every tenant.

use super::audit::{AuditorAuthed, Principal};
use super::auth::Authed;
use super::{AppError, AppState};
use crate::storage::{
    AttestationFilter, EVENT_DOWNLOAD, EVENT_VERIFY, Page, StoredResponse, SubjectRow, UsageKey,
    UsageOutcome, UsageWrite,
};
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use cloister_attestor_core::statement::ResourceDescriptor;
use cloister_attestor_core::verify::{
    Reason, Verdict, VerifyRequest, check_request, normalize_source_uri, verify_any,
};
use http_body_util::BodyExt as _;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/verify", axum::routing::post(verify))
        .route("/v1/keys", get(keys))
        .route("/v1/attestations", get(attestations))
        .route("/v1/usage", get(usage))
}

/// The header naming a retry-safe request.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set on a response replayed from the idempotency store.
pub const REPLAYED: &str = "idempotent-replayed";

/// The request's `Idempotency-Key`, if any: 1–255 visible ASCII characters.
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        let Some(value) = parts.headers.get(IDEMPOTENCY_KEY) else {
            return Ok(Self(None));
        };
        let bad = || {
            AppError::bad_request(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
        };
        let s = value.to_str().map_err(|_| bad())?;
        if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(bad());
        }
        Ok(Self(Some(s.to_owned())))
    }
}

/// The raw request body, refused with 413 beyond `limits.max_body_bytes`.
#[derive(Debug)]
pub struct LimitedBody(pub Bytes);

impl FromRequest<AppState> for LimitedBody {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, AppError> {
        let limit = state.config.limits.max_body_bytes;
        let too_large = AppError::PayloadTooLarge { limit };
        if let Some(len) = req.headers().get(axum::http::header::CONTENT_LENGTH)
            && len
                .to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .is_some_and(|n| n > limit as u64)
        {
            return Err(too_large);
        }
        let limited = http_body_util::Limited::new(req.into_body(), limit);
        match limited.collect().await {
            Ok(collected) => Ok(Self(collected.to_bytes())),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large),
            Err(e) => Err(AppError::bad_request(
                "invalid_body",
                format!("cannot read the request body: {e}"),
            )),
        }
    }
}

/// Parses a JSON body into `T`: 400 `invalid_json` when it is not JSON at
/// all, 422 `invalid_request` when fields are missing, unknown or mistyped.
pub fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, AppError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    match T::deserialize(&mut de).and_then(|v| de.end().map(|()| v)) {
        Ok(v) => Ok(v),
        Err(e) if e.is_syntax() || e.is_eof() || e.is_io() => Err(AppError::bad_request(
            "invalid_json",
            format!("request body is not valid JSON: {e}"),
        )),
        Err(e) => Err(AppError::unprocessable(
            "invalid_request",
            format!("invalid request: {e}"),
        )),
    }
}

fn query_error(e: QueryRejection) -> AppError {
    AppError::bad_request("invalid_query", e.body_text())
}

/// `sha256:` followed by 64 lower-case hex digits (the core's parser).
pub fn is_sha256_digest(s: &str) -> bool {
    s.parse::<cloister_attestor_core::digest::Sha256Digest>()
        .is_ok()
}

/// RFC 3339 (UTC, milliseconds) of a Unix-millisecond time.
pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A JSON response from bytes already serialized.
pub fn json_bytes(status: StatusCode, body: Bytes, replayed: bool) -> Response {
    let mut resp = (status, [(CONTENT_TYPE, "application/json")], body).into_response();
    if replayed {
        resp.headers_mut()
            .insert(REPLAYED, HeaderValue::from_static("true"));
    }
    resp
}

/// Records the usage event for a computed response, then answers: the
/// computed response when counted now, the stored one for a replay.
pub async fn metered(
    state: &AppState,
    who: &Authed,
    event: &'static str,
    key: IdempotencyKey,
    request_hash: String,
    status: StatusCode,
    body: Bytes,
) -> Result<Response, AppError> {
    // The plan's entitlements (feature, monthly hard cap) are checked first:
    // a refused request is not metered.
    let admitted = super::billing::admit(state, &who.tenant_id, event).await?;
    // The stored copy shares the response's buffer (no copy).
    let (key, stored) = match key.0 {
        Some(k) => (UsageKey::Client(k), body.clone()),
        None => (
            UsageKey::Generated(uuid::Uuid::now_v7().to_string()),
            Bytes::new(),
        ),
    };
    let write = UsageWrite {
        tenant_id: who.tenant_id.clone(),
        event,
        units: 1,
        key,
        request_hash,
        at_ms: state.clock.now_ms(),
        response: StoredResponse {
            status: status.as_u16(),
            body: stored,
        },
    };
    let outcome = state
        .meter
        .commit(write)
        .await
        .map_err(|e| AppError::Unavailable(e.to_string()))?;
    admitted.settle(outcome == UsageOutcome::Recorded);
    match outcome {
        UsageOutcome::Recorded => Ok(json_bytes(status, body, false)),
        UsageOutcome::Replay(s) => Ok(json_bytes(
            StatusCode::from_u16(s.status).unwrap_or(StatusCode::OK),
            s.body,
            true,
        )),
        UsageOutcome::KeyReused => Err(AppError::unprocessable(
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different request within the replay window",
        )),
    }
}

/// SHA-256 hex of a request's identifying bytes.
pub fn request_hash(parts: &[&[u8]]) -> String {
    hex::encode(super::framed_sha256(parts.iter().copied()))
}

// ---------------------------------------------------------------- verify

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
        (status = 400, description = "Body is not JSON, or a bad Idempotency-Key", body = super::error::ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = super::error::ErrorBody),
        (status = 413, description = "Body over the configured limit", body = super::error::ErrorBody),
        (status = 422, description = "Missing, unknown or invalid fields; or an Idempotency-Key reused for another request", body = super::error::ErrorBody),
        (status = 429, description = "Rate limited", body = super::error::ErrorBody),
        (status = 503, description = "Storage unavailable; nothing recorded, retry", body = super::error::ErrorBody)))]
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
    let out = verify_json(&state, auditor, &raw).await?;
    match who {
        // Auditors are never billed: nothing is metered for them.
        Principal::Auditor(_) => Ok(json_bytes(StatusCode::OK, out, false)),
        Principal::Tenant(who) => {
            let hash = request_hash(&[b"POST /v1/verify", &raw]);
            metered(&state, &who, EVENT_VERIFY, key, hash, StatusCode::OK, out).await
        }
    }
}

/// The verdict of a `POST /v1/verify` body, as the response's JSON (before
/// metering). The portal's Verify page calls this too, then meters the same
/// way (`metered`, `attestation.verify`, the same request hash). An auditor
/// (`auditor`) looks up stored envelopes only in its engagement's frozen set.
pub async fn verify_json(
    state: &AppState,
    auditor: Option<&AuditorAuthed>,
    raw: &[u8],
) -> Result<Bytes, AppError> {
    // One pass over the body: the fields, and the provenance as a borrowed
    // slice of exactly the bytes sent (the core parses it strictly, once).
    let body = parse_json::<VerifyBody<'_>>(raw)?;
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
        Some(p) => Some(
            gate.apply(
                state
                    .verdicts
                    .verify(p.get().as_bytes(), &trusted, &req, include),
            ),
        ),
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
        .get_or_create(&super::metrics::VerifyLabels { outcome, reason })
        .inc();
}

// ---------------------------------------------------------------- keys

/// A trusted public key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyBody {
    /// Hex SHA-256 of the SPKI DER.
    pub keyid: String,
    /// `ecdsa-p256` or `ed25519`.
    pub algorithm: String,
    /// PEM (SubjectPublicKeyInfo).
    pub public_key: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeysResponse {
    pub keys: Vec<KeyBody>,
}

/// The public keys this attestor's signatures verify with (active and
/// rotated-but-unexpired), for offline verification.
#[utoipa::path(get, path = "/v1/keys", tag = "verification",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Trusted public keys", body = KeysResponse),
        (status = 401, description = "Missing or invalid API key", body = super::error::ErrorBody),
        (status = 429, description = "Rate limited", body = super::error::ErrorBody)))]
pub async fn keys(
    State(state): State<AppState>,
    _who: Authed,
) -> Result<Json<KeysResponse>, AppError> {
    let trusted = state
        .trusted
        .get()
        .map_err(|e| AppError::Internal(format!("keyring: {e}")))?;
    Ok(Json(KeysResponse {
        keys: trusted
            .keys
            .iter()
            .map(|k| KeyBody {
                keyid: k.keyid().to_owned(),
                algorithm: k.algorithm().as_str().to_owned(),
                public_key: k.to_pem(),
            })
            .collect(),
    }))
}

// ---------------------------------------------------------------- attestations

/// Query of `GET /v1/attestations`: exactly one of `subject`, `repo`, `builder`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AttestationsQuery {
    /// `sha256:<hex>` of an artifact.
    pub subject: Option<String>,
    /// Source repository URI, as in the provenance.
    pub repo: Option<String>,
    /// Builder id.
    pub builder: Option<String>,
    /// Page size, 1–100 (default 20).
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub before: Option<String>,
}

/// One stored attestation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttestationBody {
    pub id: String,
    /// RFC 3339.
    pub created_at: String,
    /// Key that signed it (hex SHA-256 of the public key's SPKI DER).
    pub keyid: String,
    pub builder_id: String,
    pub source_uri: String,
    #[schema(value_type = Vec<SubjectBody>)]
    pub subjects: Vec<SubjectRow>,
    /// The DSSE envelope exactly as signed.
    #[schema(value_type = Object)]
    pub envelope: Box<RawValue>,
    /// The Sigstore bundle (v0.3).
    #[schema(value_type = Object)]
    pub bundle: Box<RawValue>,
}

/// A subject of an attestation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SubjectBody {
    pub name: String,
    /// `sha256:<hex>`.
    pub digest: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttestationsResponse {
    /// Newest first.
    pub attestations: Vec<AttestationBody>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Stored envelopes and bundles by subject digest, repository or builder.
/// Metered as `portal.download`.
#[utoipa::path(get, path = "/v1/attestations", tag = "attestations",
    params(AttestationsQuery, ("Idempotency-Key" = Option<String>, Header, description = "Retry-safe request id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Matching attestations", body = AttestationsResponse),
        (status = 400, description = "Bad query", body = super::error::ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = super::error::ErrorBody),
        (status = 422, description = "Idempotency-Key reused for another request", body = super::error::ErrorBody),
        (status = 429, description = "Rate limited", body = super::error::ErrorBody),
        (status = 503, description = "Storage unavailable; nothing recorded", body = super::error::ErrorBody)))]
pub async fn attestations(
    State(state): State<AppState>,
    who: Authed,
    key: IdempotencyKey,
    query: Result<Query<AttestationsQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    let Query(q) = query.map_err(query_error)?;
    let filter = match (&q.subject, &q.repo, &q.builder) {
        (Some(s), None, None) => {
            if !is_sha256_digest(s) {
                return Err(AppError::bad_request(
                    "invalid_query",
                    "subject must be sha256:<64 lower-case hex digits>",
                ));
            }
            AttestationFilter::Subject(s.clone())
        }
        (None, Some(r), None) => AttestationFilter::Repo(normalize_source_uri(r)),
        (None, None, Some(b)) => AttestationFilter::Builder(b.clone()),
        _ => {
            return Err(AppError::bad_request(
                "invalid_query",
                "give exactly one of subject, repo or builder",
            ));
        }
    };
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(AppError::bad_request(
            "invalid_query",
            "limit must be between 1 and 100",
        ));
    }
    let rows = state
        .storage
        .find_attestations(
            &filter,
            &Page {
                limit,
                before: q.before.clone(),
            },
        )
        .await?;
    let next_cursor = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| r.id.clone()))
        .flatten();
    let mut attestations = Vec::with_capacity(rows.len());
    for r in rows {
        let raw = |s: String| {
            RawValue::from_string(s).map_err(|e| AppError::Internal(format!("stored json: {e}")))
        };
        attestations.push(AttestationBody {
            created_at: rfc3339(r.created_at_ms),
            envelope: raw(r.envelope)?,
            bundle: raw(r.bundle)?,
            id: r.id,
            keyid: r.keyid,
            builder_id: r.builder_id,
            source_uri: r.source_uri,
            subjects: r.subjects,
        });
    }
    let body = Bytes::from(
        serde_json::to_vec(&AttestationsResponse {
            attestations,
            next_cursor,
        })
        .map_err(|e| AppError::Internal(e.to_string()))?,
    );
    let hash = request_hash(&[b"GET /v1/attestations", format!("{q:?}").as_bytes()]);
    metered(
        &state,
        &who,
        EVENT_DOWNLOAD,
        key,
        hash,
        StatusCode::OK,
        body,
    )
    .await
}

// ---------------------------------------------------------------- usage

/// Query of `GET /v1/usage`: a half-open period `[from, to)`. Each bound is
/// RFC 3339 or a date (`2026-04-01`, midnight UTC); the default is the
/// current calendar month (UTC).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    pub from: Option<String>,
    pub to: Option<String>,
}

/// A tenant's usage in a period.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageResponse {
    /// The tenant id (the caller's own).
    pub tenant: String,
    /// RFC 3339, inclusive.
    pub from: String,
    /// RFC 3339, exclusive.
    pub to: String,
    /// Units per event name; `attestation.verify` and `portal.download` are
    /// always present.
    pub events: BTreeMap<String, i64>,
}

/// Parses a period bound: RFC 3339 or `YYYY-MM-DD` (midnight UTC).
pub fn parse_time_ms(s: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    let t = if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        t
    } else {
        let d =
            time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
        d.midnight().assume_utc()
    };
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// `[start, end)` of the calendar month (UTC) containing `ms`, or of
/// `YYYY-MM` when given.
pub fn month_bounds(ms: i64, period: Option<&str>) -> Option<(i64, i64)> {
    let first = match period {
        Some(p) => {
            let (y, m) = p.split_once('-')?;
            if y.len() != 4 || m.len() != 2 {
                return None;
            }
            let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
            time::Date::from_calendar_date(y.parse().ok()?, month, 1).ok()?
        }
        None => {
            let now =
                time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
            time::Date::from_calendar_date(now.year(), now.month(), 1).ok()?
        }
    };
    let next = if first.month() == time::Month::December {
        time::Date::from_calendar_date(first.year() + 1, time::Month::January, 1).ok()?
    } else {
        time::Date::from_calendar_date(first.year(), first.month().next(), 1).ok()?
    };
    let ms_of = |d: time::Date| {
        i64::try_from(d.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000).ok()
    };
    Some((ms_of(first)?, ms_of(next)?))
}

/// Known event names, always reported (0 when none).
pub const EVENTS: [&str; 2] = [EVENT_VERIFY, EVENT_DOWNLOAD];

/// The caller's own usage counts.
#[utoipa::path(get, path = "/v1/usage", tag = "usage",
    params(UsageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Units per event in the period", body = UsageResponse),
        (status = 400, description = "Bad query", body = super::error::ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = super::error::ErrorBody),
        (status = 429, description = "Rate limited", body = super::error::ErrorBody)))]
pub async fn usage(
    State(state): State<AppState>,
    who: Authed,
    query: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Json<UsageResponse>, AppError> {
    let Query(q) = query.map_err(query_error)?;
    let (default_from, default_to) = month_bounds(state.clock.now_ms(), None)
        .ok_or_else(|| AppError::Internal("clock out of range".into()))?;
    let bound = |v: &Option<String>, default: i64, name: &str| match v {
        None => Ok(default),
        Some(s) => parse_time_ms(s).ok_or_else(|| {
            AppError::bad_request(
                "invalid_query",
                format!("{name} must be RFC 3339 or YYYY-MM-DD"),
            )
        }),
    };
    let from = bound(&q.from, default_from, "from")?;
    let to = bound(&q.to, default_to, "to")?;
    if from >= to {
        return Err(AppError::bad_request(
            "invalid_query",
            "from must be before to",
        ));
    }
    let mut events: BTreeMap<String, i64> = EVENTS.iter().map(|e| (e.to_string(), 0)).collect();
    events.extend(state.storage.usage_counts(&who.tenant_id, from, to).await?);
    Ok(Json(UsageResponse {
        tenant: who.tenant_id,
        from: rfc3339(from),
        to: rfc3339(to),
        events,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_checked_strictly() {
        let h = "a".repeat(64);
        assert!(is_sha256_digest(&format!("sha256:{h}")));
        assert!(!is_sha256_digest(&format!("sha256:{}", "A".repeat(64))));
        assert!(!is_sha256_digest(&format!("sha512:{h}")));
        assert!(!is_sha256_digest("sha256:abc"));
    }

    /// The stored request hash keeps its format (idempotency records
    /// written before a restart or an upgrade are compared with it): each
    /// part framed by its u64 big-endian length (value from Python's
    /// hashlib over the same framing).
    #[test]
    fn request_hash_format_is_fixed() {
        assert_eq!(
            request_hash(&[b"POST /v1/verify", b"{}"]),
            "fe0d545a6b03b2ef557c2b7469fcb754de2cdf5d06df94fbfe4c71dd7ee5d812"
        );
        assert_ne!(request_hash(&[b"ab", b"c"]), request_hash(&[b"a", b"bc"]));
    }

    #[test]
    fn periods_and_bounds() {
        let (a, b) = month_bounds(0, Some("2026-04")).unwrap();
        assert_eq!(rfc3339(a), "2026-04-01T00:00:00Z");
        assert_eq!(rfc3339(b), "2026-05-01T00:00:00Z");
        let (a, b) = month_bounds(0, Some("2025-12")).unwrap();
        assert_eq!(rfc3339(a), "2025-12-01T00:00:00Z");
        assert_eq!(rfc3339(b), "2026-01-01T00:00:00Z");
        assert!(month_bounds(0, Some("2026-13")).is_none());
        assert!(month_bounds(0, Some("26-01")).is_none());
        assert_eq!(parse_time_ms("1970-01-02"), Some(86_400_000));
        assert_eq!(parse_time_ms("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_time_ms("yesterday"), None);
    }

    #[test]
    fn json_errors_are_400_and_shape_errors_422() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct T {
            #[allow(dead_code)]
            a: u32,
        }
        let code = |b: &[u8]| match parse_json::<T>(b) {
            Err(e) => (e.status().as_u16(), e.code()),
            Ok(_) => (200, "ok"),
        };
        assert_eq!(code(b"{\"a\": 1}"), (200, "ok"));
        assert_eq!(code(b"{\"a\": 1"), (400, "invalid_json"));
        assert_eq!(code(b"not json"), (400, "invalid_json"));
        assert_eq!(code(b"{\"a\": 1} trailing"), (400, "invalid_json"));
        assert_eq!(code(b"{\"a\": \"x\"}"), (422, "invalid_request"));
        assert_eq!(code(b"{\"b\": 1}"), (422, "invalid_request"));
        assert_eq!(code(b"{}"), (422, "invalid_request"));
    }
}
