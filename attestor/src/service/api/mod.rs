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
//!
//! One module a resource: `verify`, `keys`, `attestations`, `usage`. The
//! extractors they share are in `service::extract`, the metering of a
//! response in `service::metered`, times on the wire in `clock::dates`.

use super::AppState;
use axum::Router;
use axum::routing::{get, post};

pub mod attestations;
pub mod keys;
pub mod usage;
pub mod verify;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/verify", post(verify::verify))
        .route("/v1/keys", get(keys::keys))
        .route("/v1/attestations", get(attestations::attestations))
        .route("/v1/usage", get(usage::usage))
}
