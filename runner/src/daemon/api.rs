//! The daemon's HTTP API (axum), served on the Unix socket and optionally on
//! TCP behind a bearer token:
//!
//! - `GET  /healthz`
//! - `GET  /readyz` → 200 or 503 with each check (`daemon::readiness`)
//! - `GET  /metrics` → Prometheus text (`job::metrics`)
//! - `POST /v1/jobs` (a job spec) → 201 the job record
//! - `GET  /v1/jobs?limit=N` → newest first
//! - `GET  /v1/jobs/{id}`
//! - `GET  /v1/jobs/{id}/logs?follow=true` → the log as text, streamed until the job ends
//! - `POST /v1/jobs/{id}/cancel`
//! - `POST /v1/jobs/{id}/attest` → a job that failed waiting for the attestor, attested now
//! - `GET  /v1/jobs/{id}/artifacts/{name}` → an artifact or its `.intoto.jsonl` / `.sigstore.json`
//!
//! Errors are JSON `{code, message}` with a stable `code`; 5xx bodies say
//! "internal error" and the cause is logged.

use super::scheduler::{Scheduler, SchedulerError};
use crate::job::spec::JobSpec;
use crate::job::store::JobState;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState(pub Arc<Scheduler>);

/// The one HTTP error type.
#[derive(Debug)]
pub struct AppError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl AppError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AppError {
            status,
            code,
            message: message.into(),
        }
    }
    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        AppError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.code, "message": self.message });
        (self.status, Json(body)).into_response()
    }
}

impl From<SchedulerError> for AppError {
    fn from(e: SchedulerError) -> Self {
        match e {
            SchedulerError::QueueFull(_) => {
                AppError::new(StatusCode::SERVICE_UNAVAILABLE, "queue_full", e.to_string())
            }
            SchedulerError::Draining => {
                AppError::new(StatusCode::SERVICE_UNAVAILABLE, "draining", e.to_string())
            }
            SchedulerError::NotFound(_) => {
                AppError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            SchedulerError::Finished { .. } => {
                AppError::new(StatusCode::CONFLICT, "finished", e.to_string())
            }
            SchedulerError::NotAttestable(_) => {
                AppError::new(StatusCode::CONFLICT, "not_attestable", e.to_string())
            }
            SchedulerError::Attestor(_) => AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "attestor_unavailable",
                e.to_string(),
            ),
            SchedulerError::Store(e) => AppError::internal(e),
        }
    }
}

/// The routes (without authentication).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/jobs", post(submit).get(list))
        .route("/v1/jobs/{id}", get(show))
        .route("/v1/jobs/{id}/logs", get(logs))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .route("/v1/jobs/{id}/attest", post(attest))
        .route("/v1/jobs/{id}/artifacts/{name}", get(artifact))
        .with_state(state)
}

/// The routes behind `Authorization: Bearer <token>` (for TCP).
pub fn router_with_token(state: AppState, token: String) -> Router {
    let expected: Arc<[u8; 32]> = Arc::new(Sha256::digest(token.as_bytes()).into());
    router(state).layer(middleware::from_fn(move |req: Request, next: Next| {
        let expected = expected.clone();
        async move {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(|t| <[u8; 32]>::from(Sha256::digest(t.trim().as_bytes())));
            // Comparing digests: the comparison's timing says nothing about the token.
            if given.as_ref() != Some(&*expected) {
                let mut resp = AppError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "a valid bearer token is required",
                )
                .into_response();
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    "Bearer".parse().expect("static header"),
                );
                return resp;
            }
            next.run(req).await
        }
    }))
}

async fn healthz(State(AppState(s)): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": if s.is_draining() { "draining" } else { "ok" } }))
}

async fn readyz(State(AppState(s)): State<AppState>) -> Response {
    let checks = super::readiness::checks(&s).await;
    let ready = checks.iter().all(|c| c.ok);
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": checks,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics(State(AppState(s)): State<AppState>) -> Result<Response, AppError> {
    let text = s.metrics_text().await.map_err(AppError::internal)?;
    Ok((
        // OpenMetrics text (prometheus-client's `info` metrics and `# EOF`
        // are not the classic text format).
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

async fn attest(
    State(AppState(s)): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    Ok(Json(s.attest_again(&id).await?).into_response())
}

async fn submit(State(AppState(s)): State<AppState>, body: Bytes) -> Result<Response, AppError> {
    let spec = JobSpec::from_json(&body).map_err(|e| {
        AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_spec",
            e.to_string(),
        )
    })?;
    // A toolchain this runner does not have is the client's mistake (422),
    // not a job that fails later.
    for name in &spec.toolchains {
        if s.toolchains().get(name).is_none() {
            let configured: Vec<&str> = s.toolchains().names().collect();
            return Err(AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_spec",
                format!(
                    "invalid job spec: toolchain {name:?} is not configured on this runner (configured: {})",
                    if configured.is_empty() {
                        "none".to_string()
                    } else {
                        configured.join(", ")
                    }
                ),
            ));
        }
    }
    let record = s.submit(spec).await?;
    Ok((StatusCode::CREATED, Json(record)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<u32>,
}

async fn list(
    State(AppState(s)): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, AppError> {
    let mut jobs = s
        .store
        .list(q.limit.unwrap_or(50).min(1000))
        .await
        .map_err(AppError::internal)?;
    let positions = s.queue_positions();
    for job in &mut jobs {
        job.queue_position = positions.get(&job.id).copied();
    }
    Ok(Json(jobs).into_response())
}

async fn show(
    State(AppState(s)): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    match s.store.get(&id).await.map_err(AppError::internal)? {
        Some(mut job) => {
            job.queue_position = s.queue_positions().get(&job.id).copied();
            Ok(Json(job).into_response())
        }
        None => Err(SchedulerError::NotFound(id).into()),
    }
}

async fn cancel(
    State(AppState(s)): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    Ok(Json(s.cancel(&id).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    #[serde(default)]
    follow: bool,
}

async fn logs(
    State(AppState(s)): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> Result<Response, AppError> {
    if s.store
        .get(&id)
        .await
        .map_err(AppError::internal)?
        .is_none()
    {
        return Err(SchedulerError::NotFound(id).into());
    }
    let path = crate::job::log::log_path(&s.config.state_dir, &id);
    let text = |b: Body| ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], b).into_response();
    if !q.follow {
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(AppError::internal(e)),
        };
        return Ok(text(Body::from(bytes)));
    }
    // Follow: send what is there, then poll for more until the job has ended
    // and everything written before its end was sent.
    struct Tail {
        s: Arc<Scheduler>,
        id: String,
        path: std::path::PathBuf,
        offset: u64,
        rx: tokio::sync::watch::Receiver<u64>,
    }
    let tail = Tail {
        rx: s.subscribe(),
        s,
        id,
        path,
        offset: 0,
    };
    let stream = futures_util::stream::unfold(tail, |mut t| async move {
        loop {
            let ended = match t.s.store.get(&t.id).await {
                // A queued job during drain will not start in this daemon.
                Ok(Some(job)) => {
                    job.state.is_terminal() || t.s.is_draining() && job.state == JobState::Queued
                }
                Ok(None) | Err(_) => true,
            };
            let chunk = read_from(&t.path, t.offset).await;
            if !chunk.is_empty() {
                t.offset += chunk.len() as u64;
                return Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), t));
            }
            if ended {
                return None;
            }
            let _ =
                tokio::time::timeout(std::time::Duration::from_millis(200), t.rx.changed()).await;
        }
    });
    Ok(text(Body::from_stream(stream)))
}

async fn read_from(path: &std::path::Path, offset: u64) -> Vec<u8> {
    let Ok(mut f) = tokio::fs::File::open(path).await else {
        return Vec::new();
    };
    if f.seek(std::io::SeekFrom::Start(offset)).await.is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    let _ = (&mut f).take(1 << 20).read_to_end(&mut buf).await;
    // Send whole lines only, so a follower never sees half a line twice.
    match buf.iter().rposition(|&b| b == b'\n') {
        Some(pos) => buf.truncate(pos + 1),
        None => buf.clear(),
    }
    buf
}

/// One of a succeeded job's files: an artifact (by its subject name) or its
/// provenance or bundle; any other name is a 404, so nothing else under the
/// state directory can be read this way.
async fn artifact(
    State(AppState(s)): State<AppState>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let job = s.store.get(&id).await.map_err(AppError::internal)?;
    let Some(job) = job else {
        return Err(SchedulerError::NotFound(id).into());
    };
    let file = job.result.as_ref().and_then(|r| {
        r.artifacts.iter().find_map(|a| {
            [&a.path, &a.provenance, &a.bundle]
                .into_iter()
                .find(|p| {
                    std::path::Path::new(p.as_str())
                        .file_name()
                        .is_some_and(|n| n == name.as_str())
                })
                .map(|p| (p.clone(), *p == a.path))
        })
    });
    let Some((path, is_artifact)) = file else {
        return Err(AppError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("job {id} has no file {name:?}"),
        ));
    };
    // Streamed from the open file (its size and mode taken from it too): an
    // artifact of any size costs the daemon one buffer, not its length.
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(AppError::internal)?;
    let meta = file.metadata().await.map_err(AppError::internal)?;
    use std::os::unix::fs::PermissionsExt;
    let executable = is_artifact && meta.permissions().mode() & 0o100 != 0;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, meta.len().to_string()),
            (
                header::HeaderName::from_static("x-cloister-executable"),
                executable.to_string(),
            ),
        ],
        Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024)),
    )
        .into_response())
}
