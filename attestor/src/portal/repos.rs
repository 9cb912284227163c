//! Repositories (the home page), a repository's releases, a release, and
//! the release's metered downloads (`.intoto.jsonl`, `.sigstore.json`).
//!
//! Every chip comes from the core's verdict on the stored envelope (through
//! the service's verdict cache, the same memo `POST /v1/verify` uses), with
//! the release's first subject and its own source as the expectations.
//! Downloads are POST forms with the CSRF token (they are metered, so they
//! change state) and are answered only after their `portal.download` event
//! is committed, through the API's `metered`.

use super::release::ReleaseView;
use super::session::Session;
use super::slsa::{self, Chip};
use super::{Area, Chrome, PortalError};
use crate::service::extract::IdempotencyKey;
use crate::service::metered::{metered, request_hash};
use crate::service::{AppState, TrustedSet};
use crate::storage::{AttestationFilter, AttestationRow, EVENT_DOWNLOAD, Page};
use askama::Template;
use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use cloister_attestor_core::verify::{VerifyRequest, normalize_source_uri};
use serde::Deserialize;
use std::sync::Arc;

/// Releases per page of a repository.
pub const RELEASES_PER_PAGE: u32 = 20;

fn trusted(state: &AppState) -> Result<Arc<TrustedSet>, PortalError> {
    state
        .trusted
        .get()
        .map_err(|e| PortalError::Internal(format!("keyring: {e}")))
}

/// The chip of a stored attestation: its envelope verified against its
/// own first subject and source.
pub fn chip_for(state: &AppState, trusted: &TrustedSet, row: &AttestationRow) -> Chip {
    let Some(subject) = row.subjects.first() else {
        return slsa::unverifiable("no_subjects", "the stored attestation has no subjects");
    };
    let req = VerifyRequest {
        artifact_digest: subject.digest.clone(),
        source_uri: row.source_uri.clone(),
        ..VerifyRequest::default()
    };
    let verdict = state
        .verdicts
        .verify(row.envelope.as_bytes(), trusted, &req, false);
    slsa::chip(&verdict)
}

/// One row of the home page.
#[derive(Debug)]
pub struct RepoRow {
    pub repo: String,
    pub href: String,
    pub chip: Chip,
    pub release: String,
    pub release_href: String,
    pub builder_id: String,
    pub signed_at: String,
}

#[derive(Template)]
#[template(path = "portal/home.html")]
struct HomePage {
    chrome: Chrome,
    rows: Vec<RepoRow>,
}

/// `GET /portal/`: one row per source repository with provenance.
pub async fn home(
    State(state): State<AppState>,
    session: Session,
) -> Result<Response, PortalError> {
    let latest = state.storage.latest_per_repository().await?;
    let trusted = trusted(&state)?;
    let rows = latest
        .iter()
        .map(|row| {
            let view = ReleaseView::summary(row);
            RepoRow {
                href: super::repo_href(&row.source_uri),
                chip: chip_for(&state, &trusted, row),
                release_href: format!("/portal/releases/{}", row.id),
                release: view.label,
                builder_id: row.builder_id.clone(),
                signed_at: view.signed_at,
                repo: view.repo,
            }
        })
        .collect();
    super::html(&HomePage {
        chrome: Chrome::new("Repositories", Area::Repositories, &session),
        rows,
    })
}

/// `?uri=…[&before=…]` of a repository page.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoQuery {
    uri: String,
    before: Option<String>,
}

/// One release in a repository's list.
#[derive(Debug)]
pub struct ReleaseRow {
    pub href: String,
    pub label: String,
    pub chip: Chip,
    pub subjects: String,
    pub builder_id: String,
    pub signed_at: String,
}

#[derive(Template)]
#[template(path = "portal/repository.html")]
struct RepositoryPage {
    chrome: Chrome,
    repo: String,
    source_uri: String,
    rows: Vec<ReleaseRow>,
    /// The next (older) page's link.
    older: Option<String>,
}

/// `GET /portal/repo?uri=…`: a repository's releases, newest first.
pub async fn repository(
    State(state): State<AppState>,
    session: Session,
    query: Result<Query<RepoQuery>, QueryRejection>,
) -> Result<Response, PortalError> {
    let Query(q) = query.map_err(|e| PortalError::BadRequest(e.body_text()))?;
    let uri = normalize_source_uri(&q.uri);
    let rows = state
        .storage
        .find_attestations(
            &AttestationFilter::Repo(uri.clone()),
            &Page {
                limit: RELEASES_PER_PAGE,
                before: q.before.clone(),
            },
        )
        .await?;
    if rows.is_empty() && q.before.is_none() {
        return Err(PortalError::NotFound);
    }
    let trusted = trusted(&state)?;
    let older = (rows.len() == RELEASES_PER_PAGE as usize)
        .then(|| rows.last())
        .flatten()
        .map(|r| {
            format!(
                "{}&before={}",
                super::repo_href(&uri),
                super::urlencode(&r.id)
            )
        });
    let list = rows
        .iter()
        .map(|row| {
            let view = ReleaseView::summary(row);
            ReleaseRow {
                href: format!("/portal/releases/{}", row.id),
                chip: chip_for(&state, &trusted, row),
                subjects: row
                    .subjects
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                builder_id: row.builder_id.clone(),
                signed_at: view.signed_at,
                label: view.label,
            }
        })
        .collect();
    let repo = super::display_repo(&uri);
    super::html(&RepositoryPage {
        chrome: Chrome::new(repo.clone(), Area::Repositories, &session),
        repo,
        source_uri: uri,
        rows: list,
        older,
    })
}

#[derive(Template)]
#[template(path = "portal/release.html")]
struct ReleasePage {
    chrome: Chrome,
    r: ReleaseView,
    chip: Chip,
    repo_href: String,
}

async fn load(state: &AppState, id: &str) -> Result<AttestationRow, PortalError> {
    // Ids are UUIDs; anything else cannot exist.
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(PortalError::NotFound);
    }
    state
        .storage
        .get_attestation(id)
        .await?
        .ok_or(PortalError::NotFound)
}

/// `GET /portal/releases/{id}`: one release in full.
pub async fn release(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, PortalError> {
    let row = load(&state, &id).await?;
    let chip = chip_for(&state, &*trusted(&state)?, &row);
    let r = ReleaseView::full(&row);
    super::html(&ReleasePage {
        chrome: Chrome::new(
            format!("{} {}", r.repo, r.label),
            Area::Repositories,
            &session,
        ),
        repo_href: super::repo_href(&row.source_uri),
        chip,
        r,
    })
}

/// A download form's body.
#[derive(Debug, Deserialize)]
pub struct DownloadForm {
    csrf: String,
}

/// Which file of a release.
#[derive(Debug, Clone, Copy)]
enum File {
    Intoto,
    Bundle,
}

async fn download(
    state: AppState,
    session: Session,
    id: String,
    form: Result<Form<DownloadForm>, FormRejection>,
    file: File,
) -> Result<Response, PortalError> {
    let Form(f) = form.map_err(|_| PortalError::Csrf)?;
    session.check_csrf(&f.csrf)?;
    let who = session.principal.authed()?;
    // The API key's rate limit, as for `GET /v1/attestations`.
    state.limiter.check(&who.key_id)?;
    let row = load(&state, &id).await?;
    let stem = ReleaseView::summary(&row).file_stem();
    let (body, name, content_type, what) = match file {
        File::Intoto => (
            format!("{}\n", row.envelope.trim_end()),
            format!("{stem}.intoto.jsonl"),
            "application/jsonl",
            &b"intoto.jsonl"[..],
        ),
        File::Bundle => (
            row.bundle,
            format!("{stem}.sigstore.json"),
            "application/json",
            &b"sigstore.json"[..],
        ),
    };
    let hash = request_hash(&[
        b"POST /portal/releases/{id}/download",
        row.id.as_bytes(),
        what,
    ]);
    let mut resp = metered(
        &state,
        &who,
        EVENT_DOWNLOAD,
        IdempotencyKey(None),
        hash,
        StatusCode::OK,
        body.into(),
    )
    .await?;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
            .map_err(|e| PortalError::Internal(e.to_string()))?,
    );
    Ok(resp)
}

/// `POST /portal/releases/{id}/intoto.jsonl`: the DSSE envelope as a
/// one-line `.intoto.jsonl`; metered as `portal.download`.
pub async fn download_intoto(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    form: Result<Form<DownloadForm>, FormRejection>,
) -> Result<Response, PortalError> {
    download(state, session, id, form, File::Intoto).await
}

/// `POST /portal/releases/{id}/sigstore.json`: the Sigstore bundle;
/// metered as `portal.download`.
pub async fn download_bundle(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    form: Result<Form<DownloadForm>, FormRejection>,
) -> Result<Response, PortalError> {
    download(state, session, id, form, File::Bundle).await
}
