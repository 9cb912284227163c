//! `GET /v1/attestations`: stored envelopes and bundles by subject digest,
//! repository or builder (metered as `portal.download`).

use crate::clock::dates::rfc3339;
use crate::http::AppError;
use crate::service::AppState;
use crate::service::auth::Authed;
use crate::service::extract::{IdempotencyKey, query_error};
use crate::service::metered::{metered, request_hash};
use crate::storage::{AttestationFilter, EVENT_DOWNLOAD, Page, SubjectRow};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use cloister_attestor_core::verify::normalize_source_uri;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// `sha256:` followed by 64 lower-case hex digits (the core's parser).
pub fn is_sha256_digest(s: &str) -> bool {
    s.parse::<cloister_attestor_core::digest::Sha256Digest>()
        .is_ok()
}

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
        (status = 400, description = "Bad query", body = crate::http::error::ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = crate::http::error::ErrorBody),
        (status = 422, description = "Idempotency-Key reused for another request", body = crate::http::error::ErrorBody),
        (status = 429, description = "Rate limited", body = crate::http::error::ErrorBody),
        (status = 503, description = "Storage unavailable; nothing recorded", body = crate::http::error::ErrorBody)))]
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
}
