//! How a metered route answers (`attestation.verify`, `portal.download`):
//! [`admit`] checks the plan first, [`metered`] commits the usage event
//! through the `Meter` (see `metering`) and answers 2xx only once it is
//! committed, or replays the stored response for a retry with the same
//! `Idempotency-Key` ([`REPLAYED`]). [`request_hash`] names a request in the
//! idempotency store.

use super::AppState;
use super::auth::Authed;
use super::extract::IdempotencyKey;
use crate::billing::card::Feature;
use crate::billing::entitlements::CapReservation;
use crate::http::AppError;
use crate::storage::{EVENT_DOWNLOAD, StoredResponse, UsageKey, UsageOutcome, UsageWrite};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

/// Set on a response replayed from the idempotency store.
pub const REPLAYED: &str = "idempotent-replayed";

/// What a metered route checks before its usage commit: `portal.download`
/// needs the plan's `portal_downloads` feature, and a unit is reserved
/// against the plan's monthly hard cap (429 `usage_cap_reached`, not
/// metered). Settle the reservation with the commit's outcome.
pub async fn admit(
    state: &AppState,
    tenant_id: &str,
    event: &'static str,
) -> Result<CapReservation, AppError> {
    let e = &state.billing.entitlements;
    if event == EVENT_DOWNLOAD {
        e.require(tenant_id, Feature::PortalDownloads)
            .await
            .inspect_err(|_| state.metrics.billing_refusal("feature_not_in_plan"))?;
    }
    e.reserve(tenant_id, event).await.inspect_err(|err| {
        if matches!(err, AppError::CapReached { .. }) {
            state.metrics.billing_refusal("usage_cap_reached");
        }
    })
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
    let admitted = admit(state, &who.tenant_id, event).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
