//! Billing over HTTP (tenant-scoped, the normal `Authed` extractor):
//! `GET /v1/invoices` (the caller's issued invoices), `GET
//! /v1/invoices/{file}` where `file` is `NUMBER` or `NUMBER.json` (the
//! signed invoice JSON, exact bytes), `NUMBER.dsse` (its DSSE signature) or
//! `NUMBER.pdf` (the PDF, metered as `portal.download`), and `POST
//! /v1/webhooks/replay` (re-send the caller's dead-lettered messages).
//! Another tenant's invoice is a 404, exactly like one that does not exist.
//!
//! Also here: the construction of the billing service; the delivery
//! worker's and the billing gauges' tasks inside `serve`. The entitlement
//! check every metered route makes before its usage commit is
//! `metered::admit`.

use super::AppState;
use super::auth::Authed;
use super::extract::{IdempotencyKey, LimitedBody, parse_json};
use super::metered::{REPLAYED, admit, json_bytes, request_hash};
use crate::billing::card::Feature;
use crate::billing::entitlements::Entitlements;
use crate::billing::webhooks::worker::{Settings, Worker};
use crate::billing::{Billing, BillingError, BillingService, InvoiceSummary};
use crate::config::Config;
use crate::http::AppError;
use crate::storage::billing::InvoiceStatus;
use crate::storage::{EVENT_DOWNLOAD, Storage, StoredResponse, UsageKey, UsageOutcome, UsageWrite};
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/invoices", get(invoices))
        .route("/v1/invoices/{file}", get(invoice_file))
        .route("/v1/webhooks/replay", post(replay))
}

/// Builds the service's billing parts from a validated config.
pub fn service(
    config: &Config,
    storage: Arc<dyn Storage>,
    clock: Arc<dyn crate::clock::Clock>,
) -> BillingService {
    let card = config
        .billing
        .validate()
        .expect("the billing config was validated when the config was loaded");
    BillingService {
        entitlements: Entitlements::new(
            card.clone(),
            storage.clone(),
            clock,
            Duration::from_millis(config.auth.cache_ttl_ms),
        ),
        api: Billing::new(storage, card, config.billing.clone()),
        wake: Arc::new(tokio::sync::Notify::new()),
    }
}

fn billing_error(e: BillingError) -> AppError {
    match e {
        BillingError::Storage(e) => e.into(),
        other => AppError::Internal(other.to_string()),
    }
}

/// `GET /v1/invoices` response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InvoicesResponse {
    /// Oldest first.
    pub invoices: Vec<InvoiceSummary>,
}

/// The caller's issued invoices (finalized and void).
#[utoipa::path(get, path = "/v1/invoices", tag = "billing",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's invoices", body = InvoicesResponse),
        (status = 401, description = "Missing or invalid API key", body = crate::http::error::ErrorBody),
        (status = 429, description = "Rate limited", body = crate::http::error::ErrorBody)))]
pub async fn invoices(
    State(state): State<AppState>,
    who: Authed,
) -> Result<Json<InvoicesResponse>, AppError> {
    let invoices = state
        .billing
        .api
        .invoices(&who.tenant_id)
        .await
        .map_err(billing_error)?;
    Ok(Json(InvoicesResponse { invoices }))
}

/// One of the caller's invoices: `NUMBER` or `NUMBER.json` (the signed
/// JSON), `NUMBER.dsse` (the DSSE envelope over its sha256), `NUMBER.pdf`
/// (metered as `portal.download`). The `Invoice-Status` header says
/// `finalized` or `void`.
#[utoipa::path(get, path = "/v1/invoices/{file}", tag = "billing",
    params(("file" = String, Path, description = "NUMBER, NUMBER.json, NUMBER.dsse or NUMBER.pdf"),
           ("Idempotency-Key" = Option<String>, Header, description = "Retry-safe request id (PDF downloads)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The invoice JSON, its signature or its PDF"),
        (status = 401, description = "Missing or invalid API key", body = crate::http::error::ErrorBody),
        (status = 403, description = "The plan does not include portal downloads (PDF)", body = crate::http::error::ErrorBody),
        (status = 404, description = "No such invoice for the caller", body = crate::http::error::ErrorBody),
        (status = 429, description = "Rate limited, or the monthly cap reached (PDF)", body = crate::http::error::ErrorBody),
        (status = 503, description = "Storage unavailable; nothing recorded", body = crate::http::error::ErrorBody)))]
pub async fn invoice_file(
    State(state): State<AppState>,
    who: Authed,
    key: IdempotencyKey,
    Path(file): Path<String>,
) -> Result<Response, AppError> {
    let (number, kind) = if let Some(n) = file.strip_suffix(".pdf") {
        (n, "pdf")
    } else if let Some(n) = file.strip_suffix(".dsse") {
        (n, "dsse")
    } else if let Some(n) = file.strip_suffix(".json") {
        (n, "json")
    } else {
        (file.as_str(), "json")
    };
    let not_found = || AppError::Missing {
        code: "invoice_not_found",
        message: format!("no invoice {number}"),
    };
    if number.is_empty() || number.len() > 64 {
        return Err(not_found());
    }
    let invoice = state
        .billing
        .api
        .invoice(&who.tenant_id, number)
        .await
        .map_err(billing_error)?
        .ok_or_else(not_found)?;
    let status = HeaderValue::from_static(match invoice.status {
        InvoiceStatus::Void => "void",
        _ => "finalized",
    });
    let mut resp = match kind {
        "json" | "dsse" => {
            let body = if kind == "json" {
                invoice.document.clone()
            } else {
                invoice.envelope.clone()
            }
            .ok_or_else(|| {
                AppError::Internal(format!("issued invoice {number} without documents"))
            })?;
            json_bytes(StatusCode::OK, Bytes::from(body), false)
        }
        _ => pdf_download(&state, &who, key, &invoice).await?,
    };
    resp.headers_mut().insert("invoice-status", status);
    Ok(resp)
}

/// The PDF, after its `portal.download` event is committed (a retry with
/// the same Idempotency-Key gets the PDF again, counted once).
async fn pdf_download(
    state: &AppState,
    who: &Authed,
    key: IdempotencyKey,
    invoice: &crate::storage::billing::InvoiceRow,
) -> Result<Response, AppError> {
    let number = invoice.number.clone().unwrap_or_default();
    let admitted = admit(state, &who.tenant_id, EVENT_DOWNLOAD).await?;
    let pdf = state
        .billing
        .api
        .pdf(invoice)
        .await
        .map_err(billing_error)?;
    // The idempotency record keeps a small JSON marker, not the PDF.
    let marker = serde_json::json!({"invoice": number, "pdf": true}).to_string();
    let write = UsageWrite {
        tenant_id: who.tenant_id.clone(),
        event: EVENT_DOWNLOAD,
        units: 1,
        key: match key.0 {
            Some(k) => UsageKey::Client(k),
            None => UsageKey::Generated(uuid::Uuid::now_v7().to_string()),
        },
        request_hash: request_hash(&[b"GET /v1/invoices/pdf", number.as_bytes()]),
        at_ms: state.clock.now_ms(),
        response: StoredResponse {
            status: 200,
            body: Bytes::from(marker),
        },
    };
    let outcome = state
        .meter
        .commit(write)
        .await
        .map_err(|e| AppError::Unavailable(e.to_string()))?;
    admitted.settle(outcome == UsageOutcome::Recorded);
    let replayed = match outcome {
        UsageOutcome::Recorded => false,
        UsageOutcome::Replay(_) => true,
        UsageOutcome::KeyReused => {
            return Err(AppError::unprocessable(
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request within the replay window",
            ));
        }
    };
    let mut resp = (
        StatusCode::OK,
        [(CONTENT_TYPE, HeaderValue::from_static("application/pdf"))],
        pdf,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{number}.pdf\"")) {
        resp.headers_mut().insert(CONTENT_DISPOSITION, v);
    }
    if replayed {
        resp.headers_mut()
            .insert(REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(resp)
}

/// `POST /v1/webhooks/replay` request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    /// RFC 3339 or `YYYY-MM-DD`: messages created at or after this time.
    pub since: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReplayResponse {
    /// Deliveries made pending again.
    pub replayed: u64,
}

/// Re-sends the caller's dead-lettered webhook messages created since a
/// time (to endpoints that are enabled), attempts counted from zero.
#[utoipa::path(post, path = "/v1/webhooks/replay", tag = "billing",
    request_body = ReplayBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Deliveries queued again", body = ReplayResponse),
        (status = 400, description = "Body is not JSON", body = crate::http::error::ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = crate::http::error::ErrorBody),
        (status = 403, description = "The plan does not include webhooks", body = crate::http::error::ErrorBody),
        (status = 422, description = "Bad time, or nothing to replay", body = crate::http::error::ErrorBody),
        (status = 429, description = "Rate limited", body = crate::http::error::ErrorBody)))]
pub async fn replay(
    State(state): State<AppState>,
    who: Authed,
    LimitedBody(raw): LimitedBody,
) -> Result<Json<ReplayResponse>, AppError> {
    let body: ReplayBody = parse_json(&raw)?;
    let since = crate::billing::period::parse_time_ms(&body.since).ok_or_else(|| {
        AppError::unprocessable("invalid_request", "since must be RFC 3339 or YYYY-MM-DD")
    })?;
    state
        .billing
        .entitlements
        .require(&who.tenant_id, Feature::Webhooks)
        .await?;
    let n = state
        .storage
        .billing()
        .replay_dead(Some(&who.tenant_id), since, state.clock.now_ms())
        .await
        .map_err(|e| AppError::Unavailable(e.to_string()))?;
    if n == 0 {
        return Err(AppError::unprocessable(
            "nothing_to_replay",
            format!(
                "no dead-lettered messages created since {} to an enabled endpoint",
                body.since
            ),
        ));
    }
    state.billing.wake.notify_one();
    Ok(Json(ReplayResponse { replayed: n }))
}

/// Starts the webhook delivery worker (when `billing.webhooks.enabled`);
/// the handle ends after `shutdown`, once the batch in flight is recorded.
pub fn spawn_worker(
    state: &AppState,
    shutdown: CancellationToken,
) -> Option<tokio::task::JoinHandle<std::io::Result<()>>> {
    let c = &state.config.billing.webhooks;
    if !c.enabled {
        return None;
    }
    let settings = Settings::from_config(c).expect("validated with the config");
    let worker = Worker::new(
        state.storage.clone(),
        state.clock.clone(),
        state.metrics.clone(),
        settings,
        state.billing.wake.clone(),
    );
    Some(tokio::spawn(async move {
        worker.run(shutdown).await;
        Ok(())
    }))
}

/// Every 15 s: the billing gauges (invoices by status, outbox by state,
/// age of the oldest pending delivery) from storage.
pub fn spawn_gauges(state: AppState, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(15));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            match state.storage.billing().stats().await {
                Ok(s) => state.metrics.billing_stats(&s, state.clock.now_ms()),
                Err(e) => tracing::warn!(error = %e, "billing gauges not refreshed"),
            }
        }
    });
}
