//! Operations endpoints: `/healthz` (the process answers), `/readyz` (the
//! storage answers a round trip) and `/metrics` (Prometheus text); the
//! OpenAPI document at `/v1/openapi.json` is served by `openapi`, which
//! lists these. None needs an API key and none reveals tenant data.

use super::AppState;
use crate::http::AppError;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// `ok` or `ready`.
    pub status: &'static str,
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is serving", body = Status)))]
pub async fn healthz() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// Readiness: the storage answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Storage reachable", body = Status),
        (status = 503, description = "Storage unreachable", body = crate::http::error::ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Status>, AppError> {
    state.storage.ping().await?;
    Ok(Json(Status { status: "ready" }))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text format", content_type = "application/openmetrics-text")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        // prometheus-client writes OpenMetrics text (`info` metrics, `# EOF`),
        // which Prometheus' classic text parser refuses: say what it is.
        [(CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
}
