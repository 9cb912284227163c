//! The audit tracker: the engagements a principal may follow, and one
//! engagement in full.
//!
//! Who sees what: a tenant, the engagements opened for it (`audit open
//! --for-tenant`); an auditor, the one engagement its key belongs to.
//! Anything else, including another tenant's engagement reached by its
//! URL, is a 404 exactly like an engagement that does not exist.
//!
//! An engagement page shows the frozen tag, the state (opened → evidence
//! ready → notes → signed off, or expired / key revoked), the time left on
//! the auditor's key, the sign-off pack's sha256 and its download, the
//! auditor's notes and the decisions log. The auditor adds a note with a
//! CSRF-protected form, through `evidence::engagement::add_note` (the
//! same function and limits as `POST /v1/engagements/{id}/notes`: at most
//! two, none after sign-off). Everything comes from
//! `evidence::engagement`; the portal only decides visibility and words.

use super::session::{Principal, Session};
use super::{Area, Chrome, PortalError};
use crate::evidence::engagement::{self, EngagementError};
use crate::service::AppState;
use crate::storage::evidence::{Engagement, EngagementStatus, MAX_NOTES};
use askama::Template;
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

/// Frozen attestations listed on an engagement page (the pack has all).
pub const FROZEN_SHOWN: usize = 100;

/// Where an engagement stands, in the order the tracker draws it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Opened; no pack recorded yet.
    Opened,
    /// The sign-off pack is built and can be downloaded.
    EvidenceReady,
    /// The auditor has attached notes.
    Notes,
    SignedOff,
    /// Open, but the auditor's key has expired.
    Expired,
    /// Open, but the auditor's key was revoked.
    Revoked,
}

impl Stage {
    /// The stage of `e` at `now_ms`.
    pub fn of(e: &Engagement, now_ms: i64) -> Self {
        if e.status == EngagementStatus::SignedOff {
            Stage::SignedOff
        } else if e.key_revoked_at_ms.is_some() {
            Stage::Revoked
        } else if now_ms >= e.expires_at_ms {
            Stage::Expired
        } else if e.notes > 0 {
            Stage::Notes
        } else if e.pack_sha256.is_some() {
            Stage::EvidenceReady
        } else {
            Stage::Opened
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Stage::Opened => "Opened",
            Stage::EvidenceReady => "Evidence ready",
            Stage::Notes => "Notes",
            Stage::SignedOff => "Signed off",
            Stage::Expired => "Expired",
            Stage::Revoked => "Key revoked",
        }
    }

    /// The chip's class (the label says it in words too).
    pub fn class(self) -> &'static str {
        match self {
            Stage::SignedOff => "chip-l3",
            Stage::EvidenceReady | Stage::Notes => "chip-l2",
            Stage::Opened => "chip-l1",
            Stage::Expired | Stage::Revoked => "chip-none",
        }
    }

    /// Position on the track opened → evidence ready → notes → signed
    /// off / expired (0-based).
    fn step(self) -> usize {
        match self {
            Stage::Opened => 0,
            Stage::EvidenceReady => 1,
            Stage::Notes => 2,
            Stage::SignedOff | Stage::Expired | Stage::Revoked => 3,
        }
    }
}

/// One step of the drawn track.
#[derive(Debug)]
pub struct Step {
    pub label: &'static str,
    pub done: bool,
    pub current: bool,
}

fn track(stage: Stage) -> Vec<Step> {
    let last = match stage {
        Stage::Expired | Stage::Revoked => stage.label(),
        _ => "Signed off",
    };
    ["Opened", "Evidence ready", "Notes", last]
        .into_iter()
        .enumerate()
        .map(|(i, label)| Step {
            label,
            done: i < stage.step(),
            current: i == stage.step(),
        })
        .collect()
}

/// `6 days 23 hours`, `5 hours 3 minutes`, `4 minutes`, `less than a
/// minute` (rounded down: never more time than is left).
pub fn countdown(ms_left: i64) -> String {
    let mins = ms_left.max(0) / 60_000;
    let (d, h, m) = (mins / 1440, mins / 60 % 24, mins % 60);
    let unit = |n: i64, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    if d > 0 {
        if h > 0 {
            format!("{} {}", unit(d, "day"), unit(h, "hour"))
        } else {
            unit(d, "day")
        }
    } else if h > 0 {
        if m > 0 {
            format!("{} {}", unit(h, "hour"), unit(m, "minute"))
        } else {
            unit(h, "hour")
        }
    } else if m > 0 {
        unit(m, "minute")
    } else {
        "less than a minute".to_owned()
    }
}

/// What the key's expiry says at `now_ms`.
fn expiry(e: &Engagement, now_ms: i64) -> String {
    if let Some(at) = e.key_revoked_at_ms {
        format!("revoked at {}", super::display_time(at))
    } else if now_ms >= e.expires_at_ms {
        format!("expired at {}", super::display_time(e.expires_at_ms))
    } else {
        format!(
            "expires in {} ({})",
            countdown(e.expires_at_ms - now_ms),
            super::display_time(e.expires_at_ms)
        )
    }
}

/// Whether `principal` may see `e`.
pub fn may_see(principal: &Principal, e: &Engagement) -> bool {
    match principal {
        Principal::Tenant { tenant_id, .. } => e.client_tenant_id.as_deref() == Some(tenant_id),
        Principal::Auditor { engagement_id, .. } => *engagement_id == e.id,
    }
}

/// Whether `id` could be an engagement id (`eng_` + 32 hex digits).
fn plausible(id: &str) -> bool {
    id.strip_prefix("eng_")
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The engagement `id` if this session may see it; 404 otherwise.
async fn visible(state: &AppState, session: &Session, id: &str) -> Result<Engagement, PortalError> {
    if !plausible(id) {
        return Err(PortalError::NotFound);
    }
    state
        .storage
        .engagement(id)
        .await?
        .filter(|e| may_see(&session.principal, e))
        .ok_or(PortalError::NotFound)
}

fn engagement_error(e: EngagementError) -> PortalError {
    match e {
        EngagementError::Storage(s) => s.into(),
        EngagementError::NotFound(_) | EngagementError::NoPack(_) => PortalError::NotFound,
        e @ (EngagementError::NoteLimit(_) | EngagementError::Closed(_)) => {
            PortalError::Conflict(e.to_string())
        }
        e @ EngagementError::Invalid { .. } => PortalError::BadRequest(e.to_string()),
        other => PortalError::Internal(other.to_string()),
    }
}

/// One engagement in the list.
#[derive(Debug)]
pub struct EngagementRow {
    pub id: String,
    pub href: String,
    pub tag: String,
    pub repo: Option<String>,
    pub auditor: String,
    pub stage: Stage,
    pub expiry: String,
    pub pack_sha256: Option<String>,
    pub attestations: i64,
    pub notes: i64,
}

impl EngagementRow {
    fn of(e: &Engagement, now_ms: i64) -> Self {
        Self {
            id: e.id.clone(),
            href: format!("/portal/audit/{}", e.id),
            tag: e.tag.clone(),
            repo: e.repo.as_deref().map(super::display_repo),
            auditor: e.auditor.clone(),
            stage: Stage::of(e, now_ms),
            expiry: expiry(e, now_ms),
            pack_sha256: e.pack_sha256.clone(),
            attestations: e.attestations,
            notes: e.notes,
        }
    }
}

#[derive(Template)]
#[template(path = "portal/audit_list.html")]
struct ListPage {
    chrome: Chrome,
    rows: Vec<EngagementRow>,
    auditor: bool,
}

/// `GET /portal/audit`: the engagements this session may follow, newest
/// first.
pub async fn list(
    State(state): State<AppState>,
    session: Session,
) -> Result<Response, PortalError> {
    let now = state.clock.now_ms();
    let rows = engagement::list(state.storage.as_ref())
        .await
        .map_err(engagement_error)?
        .iter()
        .filter(|e| may_see(&session.principal, e))
        .map(|e| EngagementRow::of(e, now))
        .collect();
    super::html(&ListPage {
        chrome: Chrome::new("Audit engagements", Area::Audit, &session),
        auditor: session.principal.is_auditor(),
        rows,
    })
}

/// A note as shown.
#[derive(Debug)]
pub struct NoteRow {
    pub seq: i64,
    pub author: String,
    pub body: String,
    pub sha256: String,
    pub at: String,
}

/// A decisions-log entry as shown.
#[derive(Debug)]
pub struct LogRow {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub detail: String,
    pub sha256: Option<String>,
}

/// A frozen attestation as shown.
#[derive(Debug)]
pub struct FrozenRow {
    pub href: String,
    pub id: String,
    pub envelope_sha256: String,
}

#[derive(Template)]
#[template(path = "portal/audit.html")]
struct EngagementPage {
    chrome: Chrome,
    e: EngagementRow,
    track: Vec<Step>,
    opened: String,
    closed: Option<String>,
    frozen: Vec<FrozenRow>,
    frozen_more: usize,
    notes: Vec<NoteRow>,
    log: Vec<LogRow>,
    /// The note form is shown (the engagement's auditor, open, key valid,
    /// fewer than two notes).
    can_note: bool,
    max_notes: i64,
    note_error: Option<String>,
    note_draft: String,
}

async fn render(
    state: &AppState,
    session: &Session,
    e: Engagement,
    status: StatusCode,
    note_error: Option<String>,
    note_draft: String,
) -> Result<Response, PortalError> {
    let now = state.clock.now_ms();
    let view = engagement::show(state.storage.as_ref(), &e.id)
        .await
        .map_err(engagement_error)?;
    let row = EngagementRow::of(&view.engagement, now);
    let can_note = session.principal.is_auditor()
        && row.stage != Stage::SignedOff
        && row.stage != Stage::Expired
        && row.stage != Stage::Revoked
        && view.engagement.notes < MAX_NOTES;
    let frozen_more = view.frozen.len().saturating_sub(FROZEN_SHOWN);
    super::html_status(
        status,
        &EngagementPage {
            chrome: Chrome::new(
                format!("Audit of {}", view.engagement.tag),
                Area::Audit,
                session,
            ),
            track: track(row.stage),
            opened: super::display_time(view.engagement.opened_at_ms),
            closed: view.engagement.closed_at_ms.map(super::display_time),
            frozen: view
                .frozen
                .iter()
                .take(FROZEN_SHOWN)
                .map(|f| FrozenRow {
                    href: format!("/portal/releases/{}", f.attestation_id),
                    id: f.attestation_id.clone(),
                    envelope_sha256: f.envelope_sha256.clone(),
                })
                .collect(),
            frozen_more,
            notes: view
                .notes
                .iter()
                .map(|n| NoteRow {
                    seq: n.seq,
                    author: n.author.clone(),
                    body: n.body.clone(),
                    sha256: n.sha256.clone(),
                    at: super::display_time(n.at_ms),
                })
                .collect(),
            log: view
                .log
                .iter()
                .map(|l| LogRow {
                    seq: l.seq,
                    at: super::display_time(l.at_ms),
                    actor: l.actor.clone(),
                    action: l.action.replace('_', " "),
                    detail: l.detail.clone(),
                    sha256: l.sha256.clone(),
                })
                .collect(),
            can_note,
            max_notes: MAX_NOTES,
            note_error,
            note_draft,
            e: row,
        },
    )
}

/// `GET /portal/audit/{id}`: one engagement.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, PortalError> {
    let e = visible(&state, &session, &id).await?;
    render(&state, &session, e, StatusCode::OK, None, String::new()).await
}

/// `GET /portal/audit/{id}/pack`: the current sign-off pack (`.tar.gz`),
/// with `X-Pack-Sha256`, as `GET /v1/engagements/{id}/pack` serves it.
pub async fn pack(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, PortalError> {
    state.limiter.check(session.principal.key_id())?;
    let e = visible(&state, &session, &id).await?;
    let p = engagement::pack(state.storage.as_ref(), &e.id)
        .await
        .map_err(engagement_error)?;
    let mut resp = (
        [(header::CONTENT_TYPE, "application/gzip")],
        p.content.unwrap_or_default(),
    )
        .into_response();
    let h = resp.headers_mut();
    let v = |s: String| HeaderValue::from_str(&s).map_err(|e| PortalError::Internal(e.to_string()));
    h.insert(
        header::CONTENT_DISPOSITION,
        v(format!("attachment; filename=\"{}-signoff.tar.gz\"", e.id))?,
    );
    h.insert("x-pack-sha256", v(p.sha256)?);
    Ok(resp)
}

/// The note form's body.
#[derive(Debug, Deserialize)]
pub struct NoteForm {
    csrf: String,
    note: String,
}

/// `POST /portal/audit/{id}/notes`: the engagement's auditor attaches a
/// note; refusals (a third note, a signed-off engagement, an empty or too
/// long note) show on the page with the text kept.
pub async fn add_note(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    form: Result<Form<NoteForm>, FormRejection>,
) -> Result<Response, PortalError> {
    let Form(f) = form.map_err(|_| PortalError::Csrf)?;
    session.check_csrf(&f.csrf)?;
    let e = visible(&state, &session, &id).await?;
    let Principal::Auditor { key_id, .. } = &session.principal else {
        return Err(PortalError::Forbidden(
            "only the engagement's auditor adds notes".into(),
        ));
    };
    state.limiter.check(key_id)?;
    let body = f.note.replace("\r\n", "\n");
    let added = engagement::add_note(
        state.storage.as_ref(),
        &e.id,
        &e.auditor,
        &body,
        state.clock.now_ms(),
        &format!("auditor:{} (key {key_id})", e.auditor),
    )
    .await;
    match added {
        Ok(_) => Ok(Redirect::to(&format!("/portal/audit/{}#notes", e.id)).into_response()),
        Err(err) => {
            let err = engagement_error(err);
            let status = err.status();
            match err {
                PortalError::Conflict(m) | PortalError::BadRequest(m) => {
                    render(&state, &session, e, status, Some(capital(&m)), body).await
                }
                other => Err(other),
            }
        }
    }
}

fn capital(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => format!("{}{}.", f.to_uppercase(), c.as_str()),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engagement() -> Engagement {
        Engagement {
            id: "eng_1".into(),
            tag: "v1.4.0".into(),
            repo: None,
            auditor: "Ada".into(),
            tenant_id: "tn_a".into(),
            status: EngagementStatus::Open,
            opened_at_ms: 0,
            expires_at_ms: 1_000_000,
            closed_at_ms: None,
            pack_sha256: None,
            attestations: 3,
            notes: 0,
            key_id: "k".into(),
            key_revoked_at_ms: None,
            client_tenant_id: Some("tn_client".into()),
        }
    }

    #[test]
    fn stages_follow_the_engagement() {
        let mut e = engagement();
        assert_eq!(Stage::of(&e, 0), Stage::Opened);
        e.pack_sha256 = Some("ab".into());
        assert_eq!(Stage::of(&e, 0), Stage::EvidenceReady);
        e.notes = 1;
        assert_eq!(Stage::of(&e, 0), Stage::Notes);
        assert_eq!(Stage::of(&e, 1_000_000), Stage::Expired);
        e.key_revoked_at_ms = Some(5);
        assert_eq!(Stage::of(&e, 10), Stage::Revoked);
        e.status = EngagementStatus::SignedOff;
        assert_eq!(Stage::of(&e, 2_000_000), Stage::SignedOff);
        let t = track(Stage::Notes);
        assert_eq!(
            t.iter().map(|s| (s.done, s.current)).collect::<Vec<_>>(),
            vec![(true, false), (true, false), (false, true), (false, false)]
        );
        assert_eq!(track(Stage::Expired)[3].label, "Expired");
        assert!(track(Stage::Expired)[3].current);
    }

    #[test]
    fn countdowns_round_down() {
        let m = 60_000;
        assert_eq!(countdown(7 * 1440 * m), "7 days");
        assert_eq!(countdown(7 * 1440 * m - 1), "6 days 23 hours");
        assert_eq!(countdown(61 * m + 59_999), "1 hour 1 minute");
        assert_eq!(countdown(120 * m), "2 hours");
        assert_eq!(countdown(4 * m), "4 minutes");
        assert_eq!(countdown(59_999), "less than a minute");
        assert_eq!(countdown(-5), "less than a minute");
    }

    #[test]
    fn only_the_client_tenant_and_the_engagements_auditor_see_it() {
        let e = engagement();
        let tenant = |id: &str| Principal::Tenant {
            tenant_id: id.into(),
            tenant_name: "n".into(),
            key_id: "k".into(),
        };
        let auditor = |eng: &str| Principal::Auditor {
            tenant_id: "tn_a".into(),
            auditor: "Ada".into(),
            key_id: "k".into(),
            engagement_id: eng.into(),
            expires_at_ms: 1,
        };
        assert!(may_see(&tenant("tn_client"), &e));
        assert!(!may_see(&tenant("tn_other"), &e));
        assert!(may_see(&auditor("eng_1"), &e));
        assert!(!may_see(&auditor("eng_2"), &e));
        // No client: the auditor only.
        let own = Engagement {
            client_tenant_id: None,
            ..e
        };
        assert!(!may_see(&tenant("tn_client"), &own));
        assert!(!may_see(&tenant(""), &own));
        assert!(plausible(&format!("eng_{}", "a".repeat(32))));
        assert!(!plausible("eng_1"));
        assert!(!plausible(&format!("../{}", "a".repeat(32))));
    }
}
