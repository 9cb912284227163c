//! Auditors and signed policies in the service.
//!
//! Auth, deny by default: an auditor key (`clsa_…`) is refused by
//! [`super::auth::Authed`], hence by every endpoint that takes it (usage,
//! keys, attestations, and whatever is added later). Only the endpoints an
//! auditor may use take [`AuditorAuthed`] (the engagement's own endpoints
//! below) or `auth::Principal` (`POST /v1/verify`); both extractors are in
//! `auth`. An auditor key is checked on
//! every request (no cache): unknown → 401 `unauthorized`, revoked → 401
//! `auditor_key_revoked`, past its expiry on the service clock → 401
//! `auditor_key_expired`, another engagement → 403 `engagement_out_of_scope`.
//! Auditors' verifications are not metered (the plan is never billed) and
//! look up stored provenance only in their engagement's frozen set.
//!
//! Routes (auditor keys only): `GET /v1/engagements`,
//! `GET /v1/engagements/{id}`, `GET /v1/engagements/{id}/attestations`,
//! `POST /v1/engagements/{id}/notes`, `GET /v1/engagements/{id}/pack`.
//!
//! Policies: the configured manifest (`policy.manifest`) is verified
//! against the trusted keys at start (a bad one stops the start) and
//! applies to every verification; a request may send its own
//! (`policyManifest`), verified the same way. A manifest whose key is no
//! longer trusted fails verifications (`policy_not_signed`), never lifts
//! the gate. A background task keeps the evidence index, the coverage
//! gauges and `cloister_pack_seconds` current.

use super::auth::AuditorAuthed;
use super::{AppState, TrustedSet};
use crate::evidence::engagement::{self, EngagementError, EngagementView};
use crate::evidence::{index, policies};
use crate::http::AppError;
use crate::storage::evidence::{Engagement, Note};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cloister_attestor_core::policy::{self, VerifiedManifest};
use cloister_attestor_core::verify::Verdict;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/engagements", get(list))
        .route("/v1/engagements/{id}", get(show))
        .route("/v1/engagements/{id}/attestations", get(attestations))
        .route("/v1/engagements/{id}/notes", post(add_note))
        .route("/v1/engagements/{id}/pack", get(pack))
}

// ---------------------------------------------------------------- policy gate

/// The service's evidence state: the configured policy manifest and what
/// the background task has observed.
#[derive(Debug, Default)]
pub struct EvidenceState {
    configured: RwLock<Option<Arc<VerifiedManifest>>>,
    /// Packs already observed in `cloister_pack_seconds`.
    packs_seen: Mutex<HashSet<String>>,
}

/// The manifest a verification is checked against.
#[derive(Debug, Clone)]
pub enum PolicyGate {
    /// No manifest applies.
    Open,
    Manifest(Arc<VerifiedManifest>),
    /// A manifest applies but cannot be trusted now: every verification fails.
    Broken(String),
}

impl PolicyGate {
    /// Applies the gate to a verdict (a copy only when it changes).
    pub fn apply(&self, v: Arc<Verdict>) -> Arc<Verdict> {
        match self {
            PolicyGate::Open => v,
            PolicyGate::Manifest(m) => {
                if v.policies.is_none() {
                    return v;
                }
                let mut out = (*v).clone();
                policy::apply(&mut out, &m.manifest);
                Arc::new(out)
            }
            PolicyGate::Broken(why) => {
                let mut out = (*v).clone();
                policy::refuse(&mut out, why.clone());
                Arc::new(out)
            }
        }
    }
}

impl EvidenceState {
    /// Loads and verifies the configured manifest against the keys the
    /// keyring trusts at `now_ms` on the service clock (at start, before
    /// anything is served).
    pub fn load_configured(
        config: &crate::config::Config,
        keyring: &crate::keyring::Keyring,
        now_ms: i64,
    ) -> Result<Option<VerifiedManifest>, String> {
        let Some(path) = &config.policy.manifest else {
            return Ok(None);
        };
        let now = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000)
            .map_err(|e| e.to_string())?;
        let trusted = keyring.trusted_keys(now).map_err(|e| e.to_string())?;
        let m = policies::load_manifest(path, &trusted).map_err(|e| e.to_string())?;
        tracing::info!(
            keyid = %m.keyid,
            policies = m.manifest.entries().len(),
            "policy manifest verified; verifications require signed policies"
        );
        Ok(Some(m))
    }

    /// Sets the configured manifest.
    pub fn set_configured(&self, m: Option<VerifiedManifest>) {
        *self.configured.write().expect("policy lock") = m.map(Arc::new);
    }

    /// The configured manifest, if any.
    pub fn configured(&self) -> Option<Arc<VerifiedManifest>> {
        self.configured.read().expect("policy lock").clone()
    }

    /// The gate for one request: the manifest it sent (verified now) or the
    /// configured one (its key still trusted).
    pub fn gate(
        &self,
        sent: Option<&RawValue>,
        trusted: &TrustedSet,
    ) -> Result<PolicyGate, AppError> {
        if let Some(raw) = sent {
            return policy::verify(raw.get().as_bytes(), &trusted.keys)
                .map(|m| PolicyGate::Manifest(Arc::new(m)))
                .map_err(|e| {
                    AppError::unprocessable(
                        "invalid_policy_manifest",
                        format!("policyManifest: {e}"),
                    )
                });
        }
        Ok(match self.configured() {
            None => PolicyGate::Open,
            Some(m) if trusted.keys.iter().any(|k| k.keyid() == m.keyid) => PolicyGate::Manifest(m),
            Some(m) => PolicyGate::Broken(format!(
                "the configured policy manifest is signed by key {}, which is no longer trusted",
                m.keyid
            )),
        })
    }
}

/// Catches the evidence index up and refreshes the coverage gauges and the
/// pack-time histogram (the background task runs it; tests call it).
pub async fn refresh(state: &AppState) -> Result<policies::Coverage, crate::storage::StorageError> {
    let storage = state.storage.as_ref();
    index::catch_up(storage).await?;
    let window = state.config.policy.coverage_window_days;
    let since = state.clock.now_ms() - i64::from(window) * 86_400_000;
    let uses = storage.policy_use(since).await?;
    let trusted_ok = state.trusted.get().ok();
    let configured = state.evidence.configured().filter(|m| {
        trusted_ok
            .as_ref()
            .is_some_and(|t| t.keys.iter().any(|k| k.keyid() == m.keyid))
    });
    let coverage = policies::coverage(&uses, configured.as_deref(), window);
    let m = &state.metrics.evidence;
    m.policy_coverage.set(coverage.ratio());
    m.policies_in_use.set(coverage.in_use as i64);
    m.policies_signed.set(coverage.signed as i64);
    // Engagements (issue 20): open, open past expiry, over the note limit.
    let now = state.clock.now_ms();
    let engagements = storage.engagements().await?;
    let open = engagements
        .iter()
        .filter(|e| e.status == crate::storage::evidence::EngagementStatus::Open);
    m.engagements_open.set(open.clone().count() as i64);
    m.engagements_expired
        .set(open.filter(|e| e.expires_at_ms <= now).count() as i64);
    m.engagements_over_note_limit.set(
        engagements
            .iter()
            .filter(|e| e.notes > crate::storage::evidence::MAX_NOTES)
            .count() as i64,
    );
    let timings = storage.pack_timings().await?;
    let mut seen = state.evidence.packs_seen.lock().expect("packs lock");
    for (sha, ms) in timings {
        if seen.insert(sha) {
            m.pack_seconds.observe(ms as f64 / 1000.0);
        }
    }
    Ok(coverage)
}

/// Runs [`refresh`] now and every `every` until shutdown.
pub fn spawn_refresher(
    state: AppState,
    every: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Err(e) = refresh(&state).await {
                tracing::warn!(error = %e, "evidence refresh failed");
            }
        }
    });
}

// ---------------------------------------------------------------- handlers

fn engagement_error(e: EngagementError) -> AppError {
    match e {
        EngagementError::Storage(s) => s.into(),
        EngagementError::NotFound(id) | EngagementError::NoPack(id) => AppError::Missing {
            code: "not_found",
            message: format!("engagement {id} or its pack not found"),
        },
        e @ EngagementError::NoteLimit(_) => AppError::Conflict {
            code: "note_limit",
            message: e.to_string(),
        },
        e @ EngagementError::Closed(_) => AppError::Conflict {
            code: "engagement_closed",
            message: e.to_string(),
        },
        e @ EngagementError::Invalid { .. } => {
            AppError::unprocessable("invalid_request", e.to_string())
        }
        other => AppError::Internal(other.to_string()),
    }
}

/// The caller's engagements (an auditor key: its one).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EngagementsResponse {
    #[schema(value_type = Vec<Object>)]
    pub engagements: Vec<Engagement>,
}

/// The engagement this auditor key belongs to.
#[utoipa::path(get, path = "/v1/engagements", operation_id = "listEngagements", tag = "audit",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The key's engagement", body = EngagementsResponse),
        (status = 401, description = "Missing, unknown, revoked or expired auditor key", body = crate::http::error::ErrorBody),
        (status = 403, description = "Not an auditor key", body = crate::http::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    who: AuditorAuthed,
) -> Result<Json<EngagementsResponse>, AppError> {
    let e = state
        .storage
        .engagement(&who.engagement_id)
        .await?
        .ok_or_else(|| AppError::Internal("auditor key without engagement".into()))?;
    Ok(Json(EngagementsResponse {
        engagements: vec![e],
    }))
}

/// An engagement with its pack.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EngagementResponse {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub view: EngagementView,
    /// The current sign-off pack: sha256, size, time to pack, and the DSSE
    /// envelope over its digest record.
    #[schema(value_type = Option<Object>)]
    pub pack: Option<PackInfo>,
}

/// A pack's recorded facts.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PackInfo {
    pub sha256: String,
    pub size_bytes: i64,
    pub time_to_pack_ms: i64,
    pub created_at: String,
    pub envelope: Box<RawValue>,
}

/// One engagement: frozen set, notes, decisions log, pack.
#[utoipa::path(get, path = "/v1/engagements/{id}", operation_id = "getEngagement", tag = "audit",
    params(("id" = String, Path, description = "Engagement id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The engagement", body = EngagementResponse),
        (status = 401, description = "Missing, unknown, revoked or expired auditor key", body = crate::http::error::ErrorBody),
        (status = 403, description = "Another engagement, or not an auditor key", body = crate::http::error::ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    who: AuditorAuthed,
    Path(id): Path<String>,
) -> Result<Json<EngagementResponse>, AppError> {
    who.check_scope(&id)?;
    let view = engagement::show(state.storage.as_ref(), &id)
        .await
        .map_err(engagement_error)?;
    let pack = match &view.engagement.pack_sha256 {
        Some(sha) => state.storage.pack(sha).await?.map(|p| {
            Ok::<_, AppError>(PackInfo {
                sha256: p.sha256,
                size_bytes: p.size_bytes,
                time_to_pack_ms: p.time_to_pack_ms,
                created_at: crate::clock::dates::rfc3339(p.created_at_ms),
                envelope: RawValue::from_string(p.envelope)
                    .map_err(|e| AppError::Internal(format!("stored envelope: {e}")))?,
            })
        }),
        None => None,
    }
    .transpose()?;
    Ok(Json(EngagementResponse { view, pack }))
}

/// Query of the engagement's attestations: a page by id.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1–500 (default 100).
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub after: Option<String>,
}

/// The frozen attestations.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FrozenResponse {
    /// Oldest first.
    pub attestations: Vec<super::api::attestations::AttestationBody>,
    pub next_cursor: Option<String>,
}

/// The engagement's frozen attestations (envelopes and bundles), by id.
#[utoipa::path(get, path = "/v1/engagements/{id}/attestations", operation_id = "getEngagementAttestations", tag = "audit",
    params(("id" = String, Path, description = "Engagement id"), PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of the frozen set", body = FrozenResponse),
        (status = 400, description = "Bad query", body = crate::http::error::ErrorBody),
        (status = 401, description = "Missing, unknown, revoked or expired auditor key", body = crate::http::error::ErrorBody),
        (status = 403, description = "Another engagement, or not an auditor key", body = crate::http::error::ErrorBody)))]
pub async fn attestations(
    State(state): State<AppState>,
    who: AuditorAuthed,
    Path(id): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<FrozenResponse>, AppError> {
    who.check_scope(&id)?;
    let Query(q) = query.map_err(|e| AppError::bad_request("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(AppError::bad_request(
            "invalid_query",
            "limit must be between 1 and 500",
        ));
    }
    let rows = state.storage.engagement_attestations(&id).await?;
    let mut page: Vec<_> = rows
        .into_iter()
        .filter(|r| q.after.as_deref().is_none_or(|a| r.id.as_str() > a))
        .take(limit as usize + 1)
        .collect();
    let next_cursor = (page.len() > limit as usize).then(|| {
        page.truncate(limit as usize);
        page.last().map(|r| r.id.clone())
    });
    let mut out = Vec::with_capacity(page.len());
    for r in page {
        let raw = |s: String| {
            RawValue::from_string(s).map_err(|e| AppError::Internal(format!("stored json: {e}")))
        };
        out.push(super::api::attestations::AttestationBody {
            created_at: crate::clock::dates::rfc3339(r.created_at_ms),
            envelope: raw(r.envelope)?,
            bundle: raw(r.bundle)?,
            id: r.id,
            keyid: r.keyid,
            builder_id: r.builder_id,
            source_uri: r.source_uri,
            subjects: r.subjects,
        });
    }
    Ok(Json(FrozenResponse {
        attestations: out,
        next_cursor: next_cursor.flatten(),
    }))
}

/// `POST /v1/engagements/{id}/notes` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    /// The note (UTF-8, at most 16 KiB).
    pub note: String,
}

/// Attaches a note (at most 2 per engagement; refused after sign-off).
#[utoipa::path(post, path = "/v1/engagements/{id}/notes", operation_id = "addEngagementNote", tag = "audit",
    params(("id" = String, Path, description = "Engagement id")),
    request_body = NoteBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The note, with its sha256 (also in the decisions log)", body = Object),
        (status = 401, description = "Missing, unknown, revoked or expired auditor key", body = crate::http::error::ErrorBody),
        (status = 403, description = "Another engagement, or not an auditor key", body = crate::http::error::ErrorBody),
        (status = 409, description = "Already two notes (note_limit), or signed off (engagement_closed)", body = crate::http::error::ErrorBody),
        (status = 422, description = "Empty, too long or not text", body = crate::http::error::ErrorBody)))]
pub async fn add_note(
    State(state): State<AppState>,
    who: AuditorAuthed,
    Path(id): Path<String>,
    super::extract::LimitedBody(raw): super::extract::LimitedBody,
) -> Result<(StatusCode, Json<Note>), AppError> {
    who.check_scope(&id)?;
    let body: NoteBody = super::extract::parse_json(&raw)?;
    let e = state
        .storage
        .engagement(&id)
        .await?
        .ok_or_else(|| AppError::Internal("auditor key without engagement".into()))?;
    let note = engagement::add_note(
        state.storage.as_ref(),
        &id,
        &e.auditor,
        &body.note,
        state.clock.now_ms(),
        &format!("auditor:{} (key {})", e.auditor, who.key_id),
    )
    .await
    .map_err(engagement_error)?;
    Ok((StatusCode::CREATED, Json(note)))
}

/// The engagement's sign-off pack (`.tar.gz`); `X-Pack-Sha256` is its digest.
#[utoipa::path(get, path = "/v1/engagements/{id}/pack", operation_id = "getEngagementPack", tag = "audit",
    params(("id" = String, Path, description = "Engagement id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The pack", content_type = "application/gzip"),
        (status = 401, description = "Missing, unknown, revoked or expired auditor key", body = crate::http::error::ErrorBody),
        (status = 403, description = "Another engagement, or not an auditor key", body = crate::http::error::ErrorBody),
        (status = 404, description = "No pack yet", body = crate::http::error::ErrorBody)))]
pub async fn pack(
    State(state): State<AppState>,
    who: AuditorAuthed,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    who.check_scope(&id)?;
    let p = engagement::pack(state.storage.as_ref(), &id)
        .await
        .map_err(engagement_error)?;
    let mut resp = (
        [(CONTENT_TYPE, "application/gzip")],
        p.content.unwrap_or_default(),
    )
        .into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{id}-signoff.tar.gz\"")) {
        h.insert(CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&p.sha256) {
        h.insert("x-pack-sha256", v);
    }
    Ok(resp)
}
