//! `GET /v1/usage`: the caller's own metered usage in a period.

use crate::clock::dates::{month_bounds, parse_time_ms, rfc3339};
use crate::http::AppError;
use crate::service::AppState;
use crate::service::auth::Authed;
use crate::service::extract::query_error;
use crate::storage::{EVENT_DOWNLOAD, EVENT_VERIFY};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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

/// Known event names, always reported (0 when none).
pub const EVENTS: [&str; 2] = [EVENT_VERIFY, EVENT_DOWNLOAD];

/// The caller's own usage counts.
#[utoipa::path(get, path = "/v1/usage", tag = "usage",
    params(UsageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Units per event in the period", body = UsageResponse),
        (status = 400, description = "Bad query", body = crate::http::error::ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = crate::http::error::ErrorBody),
        (status = 429, description = "Rate limited", body = crate::http::error::ErrorBody)))]
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
