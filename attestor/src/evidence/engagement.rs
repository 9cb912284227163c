//! Audit engagements as typed functions: the CLI (`audit …`), the HTTP
//! service (`service::audit`) and the portal's audit tracker call these,
//! never the storage directly.
//!
//! `open` freezes a tag (the exact attestations stored for it at that
//! moment, by envelope sha256; later ones never enter), creates the
//! auditor's tenant (plan `Auditor`, never billed) and an engagement-scoped
//! key (`clsa_…`, shown once, expiring, revocable), and builds the sign-off
//! pack. `sign_off` closes the engagement and builds the final pack, which
//! carries the notes and the decisions log.

use super::pack::PackError;
use super::{Context, index, policies, signoff};
use crate::storage::evidence::{
    Engagement, EngagementStatus, FrozenAttestation, LogEntry, LogWrite, MAX_NOTES, NewEngagement,
    Note, NoteOutcome, PackKind, PackRecord,
};
use crate::storage::{Plan, Storage, StorageError, Tenant};
use base64::Engine as _;
use cloister_attestor_core::digest::Sha256Digest;
use cloister_attestor_core::verify::normalize_source_uri;
use serde::Serialize;
use std::time::Instant;

/// Prefix of every auditor key (tenant keys are `clst_`).
pub const AUDITOR_KEY_PREFIX: &str = "clsa_";
/// Longest note body, in bytes.
pub const MAX_NOTE_BYTES: usize = 16 * 1024;
/// Longest key validity.
pub const MAX_VALIDITY_MS: i64 = 366 * 86_400_000;

/// Errors of engagement operations (their messages are the CLI's and the
/// HTTP API's).
#[derive(Debug, thiserror::Error)]
pub enum EngagementError {
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("building the pack: {0}")]
    Pack(#[from] PackError),
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
    #[error("no attestation of tag {tag}{repo} is in the store; nothing to audit")]
    NoAttestations { tag: String, repo: String },
    #[error("no engagement {0}")]
    NotFound(String),
    #[error(
        "engagement {0} already has {MAX_NOTES} notes; an auditor may attach at most {MAX_NOTES}"
    )]
    NoteLimit(String),
    #[error("engagement {0} is signed off and takes no more notes")]
    Closed(String),
    #[error("engagement {0} is already signed off")]
    AlreadySignedOff(String),
    #[error("the auditor key of engagement {0} is already revoked")]
    AlreadyRevoked(String),
    #[error("engagement {0} has no pack yet")]
    NoPack(String),
    #[error("no randomness from the operating system: {0}")]
    Random(#[from] getrandom::Error),
}

fn invalid(what: &'static str, why: impl Into<String>) -> EngagementError {
    EngagementError::Invalid {
        what,
        why: why.into(),
    }
}

/// What `audit open` asks for.
#[derive(Debug, Clone)]
pub struct OpenRequest {
    /// The tag (`v1.4.0`; `refs/tags/v1.4.0` is accepted too).
    pub tag: String,
    /// Only attestations of this repository (any form `verify` accepts).
    pub repo: Option<String>,
    pub auditor: String,
    /// How long the auditor's key works.
    pub valid_for_ms: i64,
    /// Who opens it, for the decisions log (`operator:<user>`).
    pub actor: String,
    /// The tenant (id or name) the engagement is for: it follows the
    /// engagement in the portal's audit tracker. `None`: the auditor only.
    pub client_tenant: Option<String>,
}

/// A built pack, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PackSummary {
    pub sha256: String,
    pub size_bytes: i64,
    pub time_to_pack_ms: i64,
    /// DSSE (JSON) over the pack's digest record.
    pub envelope: String,
}

/// What `open` returns; `key` is shown once and never stored.
#[derive(Debug, Clone)]
pub struct Opened {
    pub engagement: Engagement,
    pub key: String,
    pub pack: PackSummary,
}

/// Everything about one engagement.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EngagementView {
    pub engagement: Engagement,
    pub frozen: Vec<FrozenAttestation>,
    pub notes: Vec<Note>,
    pub log: Vec<LogEntry>,
}

fn check_text(what: &'static str, s: &str, max: usize) -> Result<(), EngagementError> {
    if s.trim().is_empty() {
        return Err(invalid(what, "it is empty"));
    }
    if s.len() > max {
        return Err(invalid(what, format!("longer than {max} bytes")));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(invalid(what, "it contains control characters"));
    }
    Ok(())
}

/// The tag without `refs/tags/`, checked.
pub fn normalize_tag(tag: &str) -> Result<String, EngagementError> {
    let t = tag.strip_prefix("refs/tags/").unwrap_or(tag);
    if t.is_empty()
        || t.len() > 255
        || t.chars().any(|c| c.is_whitespace() || c.is_control())
        || t.contains("..")
    {
        return Err(invalid(
            "tag",
            format!("{tag:?} is not a git tag name (1-255 characters, no spaces)"),
        ));
    }
    Ok(t.to_owned())
}

/// A new auditor key: its id and the secret (`clsa_<id>_<256 bits>`).
pub fn generate_auditor_key() -> Result<(String, String), EngagementError> {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    getrandom::fill(&mut id)?;
    getrandom::fill(&mut secret)?;
    let id = hex::encode(id);
    let key = format!(
        "{AUDITOR_KEY_PREFIX}{id}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    Ok((id, key))
}

/// Policy signature coverage now (the evidence index caught up first).
pub async fn coverage(ctx: &Context) -> Result<policies::Coverage, StorageError> {
    index::catch_up(ctx.storage.as_ref()).await?;
    let since = ctx.now_ms - i64::from(ctx.policy_window_days) * 86_400_000;
    let uses = ctx.storage.policy_use(since).await?;
    Ok(policies::coverage(
        &uses,
        ctx.policy.manifest(),
        ctx.policy_window_days,
    ))
}

/// Opens an engagement: freeze, tenant, key, pack.
pub async fn open(ctx: &Context, req: &OpenRequest) -> Result<Opened, EngagementError> {
    let started = Instant::now();
    let tag = normalize_tag(&req.tag)?;
    check_text("auditor name", &req.auditor, 128)?;
    if req.valid_for_ms <= 0 || req.valid_for_ms > MAX_VALIDITY_MS {
        return Err(invalid("key validity", "must be between 1 ms and 366 days"));
    }
    let repo = req.repo.as_deref().map(normalize_source_uri);
    let storage = ctx.storage.as_ref();
    let client_tenant_id = match &req.client_tenant {
        None => None,
        Some(t) => {
            let found = storage
                .find_tenant(t)
                .await?
                .ok_or_else(|| invalid("tenant", format!("no tenant {t:?}")))?;
            if !found.plan.billed() {
                return Err(invalid(
                    "tenant",
                    format!("{t:?} is an auditor tenant; an engagement is for a customer tenant"),
                ));
            }
            Some(found.id)
        }
    };
    index::catch_up(storage).await?;
    let frozen = storage
        .indexed_by_ref(&format!("refs/tags/{tag}"), repo.as_deref())
        .await?;
    if frozen.is_empty() {
        return Err(EngagementError::NoAttestations {
            tag,
            repo: repo.map(|r| format!(" of {r}")).unwrap_or_default(),
        });
    }
    let id = format!("eng_{}", uuid::Uuid::now_v7().simple());
    let (key_id, key) = generate_auditor_key()?;
    let new = NewEngagement {
        id: id.clone(),
        tag,
        repo,
        auditor: req.auditor.trim().to_owned(),
        tenant: Tenant {
            id: format!("tn_{}", uuid::Uuid::now_v7().simple()),
            name: format!("audit-{id}"),
            plan: Plan::Auditor,
            created_at_ms: ctx.now_ms,
        },
        opened_at_ms: ctx.now_ms,
        expires_at_ms: ctx.now_ms.saturating_add(req.valid_for_ms),
        attestations: frozen
            .iter()
            .map(|r| FrozenAttestation {
                attestation_id: r.attestation_id.clone(),
                envelope_sha256: r.envelope_sha256.clone(),
            })
            .collect(),
        key_id,
        key_hash: crate::api_key::hash_key(&key),
        actor: req.actor.clone(),
        client_tenant_id,
    };
    storage.open_engagement(&new).await?;
    let pack = build_pack(ctx, &id, started, &req.actor).await?;
    let engagement = storage
        .engagement(&id)
        .await?
        .ok_or_else(|| EngagementError::NotFound(id.clone()))?;
    Ok(Opened {
        engagement,
        key,
        pack,
    })
}

/// Builds (or rebuilds) an engagement's sign-off pack from its frozen set
/// and records it; the engagement then serves this pack.
pub async fn build_pack(
    ctx: &Context,
    id: &str,
    started: Instant,
    actor: &str,
) -> Result<PackSummary, EngagementError> {
    let storage = ctx.storage.as_ref();
    let engagement = storage
        .engagement(id)
        .await?
        .ok_or_else(|| EngagementError::NotFound(id.to_owned()))?;
    let rows = storage.engagement_attestations(id).await?;
    let frozen = storage.frozen_attestations(id).await?;
    // The stored rows must still be the frozen envelopes.
    for (row, f) in rows.iter().zip(&frozen) {
        if row.id != f.attestation_id
            || Sha256Digest::of(row.envelope.as_bytes()).hex() != f.envelope_sha256
        {
            return Err(EngagementError::Storage(StorageError::Corrupt(format!(
                "attestation {} no longer matches the envelope frozen for engagement {id}",
                f.attestation_id
            ))));
        }
    }
    if rows.len() != frozen.len() {
        return Err(EngagementError::Storage(StorageError::Corrupt(format!(
            "engagement {id} froze {} attestations, {} are stored",
            frozen.len(),
            rows.len()
        ))));
    }
    let mut index_rows = Vec::with_capacity(rows.len());
    let ixs = storage
        .indexed_by_ref(&format!("refs/tags/{}", engagement.tag), None)
        .await?;
    let wanted: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    for ix in ixs {
        if wanted.contains(ix.attestation_id.as_str()) {
            index_rows.push(ix);
        }
    }
    let data = signoff::SignoffData {
        coverage: coverage(ctx).await?,
        notes: storage.notes(id).await?,
        log: storage.engagement_log(id).await?,
        engagement,
        rows,
        index: index_rows,
    };
    let built = signoff::build(ctx, &data, started)?;
    let record = PackRecord {
        sha256: built.sha256.clone(),
        kind: PackKind::Signoff,
        engagement_id: Some(id.to_owned()),
        recipient: None,
        size_bytes: built.bytes.len() as i64,
        time_to_pack_ms: built.time_to_pack_ms,
        created_at_ms: ctx.now_ms,
        envelope: built.digest_envelope.clone(),
        content: Some(built.bytes),
    };
    let entry = LogWrite {
        at_ms: ctx.now_ms,
        actor: actor.to_owned(),
        action: "pack_built",
        detail: format!(
            "sign-off pack of {} attestation(s), {} bytes, built in {} ms",
            data.rows.len(),
            record.size_bytes,
            record.time_to_pack_ms
        ),
        sha256: Some(record.sha256.clone()),
    };
    storage.record_pack(&record, Some(&entry)).await?;
    Ok(PackSummary {
        sha256: record.sha256,
        size_bytes: record.size_bytes,
        time_to_pack_ms: record.time_to_pack_ms,
        envelope: record.envelope,
    })
}

/// Every engagement, newest first.
pub async fn list(storage: &dyn Storage) -> Result<Vec<Engagement>, EngagementError> {
    Ok(storage.engagements().await?)
}

/// One engagement with its frozen set, notes and decisions log.
pub async fn show(storage: &dyn Storage, id: &str) -> Result<EngagementView, EngagementError> {
    let engagement = storage
        .engagement(id)
        .await?
        .ok_or_else(|| EngagementError::NotFound(id.to_owned()))?;
    Ok(EngagementView {
        engagement,
        frozen: storage.frozen_attestations(id).await?,
        notes: storage.notes(id).await?,
        log: storage.engagement_log(id).await?,
    })
}

/// Attaches a note (at most [`MAX_NOTES`] per engagement, none after sign-off).
pub async fn add_note(
    storage: &dyn Storage,
    id: &str,
    author: &str,
    body: &str,
    at_ms: i64,
    actor: &str,
) -> Result<Note, EngagementError> {
    check_text("note", body, MAX_NOTE_BYTES)?;
    let sha256 = Sha256Digest::of(body.as_bytes()).hex();
    match storage
        .add_note(id, author, body, &sha256, at_ms, actor)
        .await?
    {
        NoteOutcome::Added(n) => Ok(n),
        NoteOutcome::Limit => Err(EngagementError::NoteLimit(id.to_owned())),
        NoteOutcome::Closed => Err(EngagementError::Closed(id.to_owned())),
        NoteOutcome::NotFound => Err(EngagementError::NotFound(id.to_owned())),
    }
}

/// Closes an engagement and builds its final pack (with the notes and the
/// decisions log, sign-off included).
pub async fn sign_off(
    ctx: &Context,
    id: &str,
    actor: &str,
) -> Result<(Engagement, PackSummary), EngagementError> {
    let started = Instant::now();
    let storage = ctx.storage.as_ref();
    let e = storage
        .engagement(id)
        .await?
        .ok_or_else(|| EngagementError::NotFound(id.to_owned()))?;
    let notes = storage.notes(id).await?;
    let digest_of_notes = Sha256Digest::of(
        notes
            .iter()
            .map(|n| n.sha256.as_str())
            .collect::<Vec<_>>()
            .join("\n")
            .as_bytes(),
    )
    .hex();
    let entry = LogWrite {
        at_ms: ctx.now_ms,
        actor: actor.to_owned(),
        action: "signed_off",
        detail: format!(
            "signed off with {} note(s); the hash is over the notes' hashes, one per line",
            notes.len()
        ),
        sha256: Some(digest_of_notes),
    };
    if e.status != EngagementStatus::Open || !storage.sign_off(id, &entry).await? {
        return Err(EngagementError::AlreadySignedOff(id.to_owned()));
    }
    let pack = build_pack(ctx, id, started, actor).await?;
    let e = storage
        .engagement(id)
        .await?
        .ok_or_else(|| EngagementError::NotFound(id.to_owned()))?;
    Ok((e, pack))
}

/// Revokes the engagement's auditor key (effective on the next request).
pub async fn revoke(
    storage: &dyn Storage,
    id: &str,
    actor: &str,
    at_ms: i64,
) -> Result<(), EngagementError> {
    if storage.engagement(id).await?.is_none() {
        return Err(EngagementError::NotFound(id.to_owned()));
    }
    let entry = LogWrite {
        at_ms,
        actor: actor.to_owned(),
        action: "key_revoked",
        detail: "the auditor key was revoked".into(),
        sha256: None,
    };
    if !storage.revoke_auditor_key(id, &entry).await? {
        return Err(EngagementError::AlreadyRevoked(id.to_owned()));
    }
    Ok(())
}

/// The engagement's current pack (archive bytes included).
pub async fn pack(storage: &dyn Storage, id: &str) -> Result<PackRecord, EngagementError> {
    let e = storage
        .engagement(id)
        .await?
        .ok_or_else(|| EngagementError::NotFound(id.to_owned()))?;
    let sha = e
        .pack_sha256
        .ok_or_else(|| EngagementError::NoPack(id.to_owned()))?;
    storage
        .pack(&sha)
        .await?
        .filter(|p| p.content.is_some())
        .ok_or_else(|| EngagementError::NoPack(id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_keys() {
        assert_eq!(normalize_tag("refs/tags/v1.4.0").unwrap(), "v1.4.0");
        assert_eq!(normalize_tag("v1.4.0").unwrap(), "v1.4.0");
        for bad in ["", "v 1", "a..b", "refs/tags/"] {
            assert!(normalize_tag(bad).is_err(), "{bad:?}");
        }
        let (id, key) = generate_auditor_key().unwrap();
        assert!(key.starts_with(&format!("{AUDITOR_KEY_PREFIX}{id}_")));
        assert_eq!(key.len(), AUDITOR_KEY_PREFIX.len() + 16 + 1 + 43);
        assert!(check_text("note", "ok\nline two", 100).is_ok());
        assert!(check_text("note", "  ", 100).is_err());
        assert!(check_text("note", "bell\u{7}", 100).is_err());
        assert!(check_text("note", "long", 3).is_err());
    }
}
