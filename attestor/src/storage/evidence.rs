//! The evidence domain's storage: the evidence index (what each stored
//! attestation's provenance says about tag, policies, builder and runner),
//! audit engagements (frozen attestation sets, the auditor's key, notes,
//! the decisions log) and issued evidence packs. [`EvidenceStore`] is a
//! supertrait of [`super::Storage`]; both backends implement it with the same
//! SQL (`evidence_sql.rs`), migration `0003_evidence.sql`.
//!
//! Invariants:
//! - An engagement's attestation set is written once, in the transaction
//!   that opens it; nothing adds to it later (the frozen tag).
//! - At most two notes per engagement: the `seq` column is checked to be 1
//!   or 2 and is the primary key with the engagement, so neither a race nor
//!   a bug can store a third. Notes are refused once the engagement is
//!   signed off.
//! - A note, a sign-off, a pack and a key revocation each append to the
//!   decisions log in the same transaction (who, when, what, a hash).
//! - Auditor keys live in their own table, never in `api_keys`: the tenant
//!   key lookup (`Storage::authenticate`) cannot find them.

use super::{AttestationRow, StorageError};
use async_trait::async_trait;
use serde::Serialize;

/// What the evidence index knows of one attestation (parsed once from its
/// verified, stored provenance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexRow {
    pub attestation_id: String,
    /// Hex sha256 of the stored envelope's JSON text.
    pub envelope_sha256: String,
    /// The normalized source repository.
    pub source_uri: String,
    /// The built ref (`refs/tags/v1.4.0`), empty when none.
    pub source_ref: String,
    pub builder_id: String,
    /// `runDetails.builder.version["cloister-runner"]`, empty when absent.
    pub runner_version: String,
    /// `externalParameters.profile`, empty when absent.
    pub profile_name: String,
    /// `sha256:<hex>` or empty.
    pub profile_digest: String,
    /// `sha256:<hex>` or empty.
    pub seccomp_digest: String,
    pub created_at_ms: i64,
}

/// One policy digest seen in provenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyUse {
    /// `profile` or `seccomp`.
    pub kind: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// A profile's name as the jobs gave it (empty for seccomp policies).
    pub name: String,
    pub attestations: i64,
    pub last_seen_ms: i64,
}

/// An engagement's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EngagementStatus {
    Open,
    SignedOff,
}

impl EngagementStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EngagementStatus::Open => "open",
            EngagementStatus::SignedOff => "signed_off",
        }
    }

    pub fn parse(s: &str) -> Result<Self, StorageError> {
        match s {
            "open" => Ok(Self::Open),
            "signed_off" => Ok(Self::SignedOff),
            other => Err(StorageError::Corrupt(format!(
                "unknown engagement status {other:?}"
            ))),
        }
    }
}

/// An audit engagement as stored (with counts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Engagement {
    pub id: String,
    /// The tag as given (`v1.4.0`).
    pub tag: String,
    /// The repository filter (normalized), if any.
    pub repo: Option<String>,
    pub auditor: String,
    /// The auditor tenant (plan `Auditor`).
    pub tenant_id: String,
    pub status: EngagementStatus,
    pub opened_at_ms: i64,
    /// When the auditor's key stops working.
    pub expires_at_ms: i64,
    pub closed_at_ms: Option<i64>,
    /// The sign-off pack's sha256 (hex), once built.
    pub pack_sha256: Option<String>,
    pub attestations: i64,
    pub notes: i64,
    /// The auditor key's id (the `clsa_<id>_…` part).
    pub key_id: String,
    pub key_revoked_at_ms: Option<i64>,
    /// The tenant the engagement is for (`audit open --for-tenant`): it
    /// follows the engagement in the portal. `None`: the auditor only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_tenant_id: Option<String>,
}

/// One attestation of an engagement's frozen set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FrozenAttestation {
    pub attestation_id: String,
    pub envelope_sha256: String,
}

/// An auditor's key as stored (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditorKey {
    pub id: String,
    pub engagement_id: String,
    pub tenant_id: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

/// Everything `audit open` writes, in one transaction.
#[derive(Debug, Clone)]
pub struct NewEngagement {
    pub id: String,
    pub tag: String,
    pub repo: Option<String>,
    pub auditor: String,
    /// The auditor tenant to create (plan `Auditor`).
    pub tenant: super::Tenant,
    pub opened_at_ms: i64,
    pub expires_at_ms: i64,
    pub attestations: Vec<FrozenAttestation>,
    pub key_id: String,
    pub key_hash: String,
    /// Who opened it (the decisions log's first entry).
    pub actor: String,
    /// The tenant it is for (an existing, billed tenant), if any.
    pub client_tenant_id: Option<String>,
}

/// An auditor note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Note {
    pub seq: i64,
    pub author: String,
    pub body: String,
    /// Hex sha256 of the body's UTF-8 bytes.
    pub sha256: String,
    pub at_ms: i64,
}

/// What adding a note did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoteOutcome {
    Added(Note),
    /// The engagement already has [`MAX_NOTES`] notes.
    Limit,
    /// The engagement is signed off.
    Closed,
    NotFound,
}

/// Most notes an auditor may attach to one engagement (also a CHECK in the schema).
pub const MAX_NOTES: i64 = 2;

/// One entry of an engagement's decisions log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    pub seq: i64,
    pub at_ms: i64,
    /// Who: `operator:<user>`, `auditor:<name>`.
    pub actor: String,
    /// `opened`, `pack_built`, `note`, `key_revoked`, `signed_off`.
    pub action: String,
    pub detail: String,
    /// The hash the entry vouches for (a note's, a pack's), if any.
    pub sha256: Option<String>,
}

/// A log entry to append (its `seq` is assigned in the transaction).
#[derive(Debug, Clone)]
pub struct LogWrite {
    pub at_ms: i64,
    pub actor: String,
    pub action: &'static str,
    pub detail: String,
    pub sha256: Option<String>,
}

/// A pack's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PackKind {
    Signoff,
    Procurement,
}

impl PackKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PackKind::Signoff => "signoff",
            PackKind::Procurement => "procurement",
        }
    }

    pub fn parse(s: &str) -> Result<Self, StorageError> {
        match s {
            "signoff" => Ok(Self::Signoff),
            "procurement" => Ok(Self::Procurement),
            other => Err(StorageError::Corrupt(format!(
                "unknown pack kind {other:?}"
            ))),
        }
    }
}

/// An issued pack: its hash (signed), what it is for, how long it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackRecord {
    /// Hex sha256 of the whole archive.
    pub sha256: String,
    pub kind: PackKind,
    pub engagement_id: Option<String>,
    /// A procurement pack's recipient (`--for`).
    pub recipient: Option<String>,
    pub size_bytes: i64,
    pub time_to_pack_ms: i64,
    pub created_at_ms: i64,
    /// DSSE envelope (JSON) over the pack's digest record.
    pub envelope: String,
    /// The archive itself (kept for sign-off packs, which are downloaded).
    pub content: Option<Vec<u8>>,
}

/// The evidence domain's storage API (see the module invariants).
#[async_trait]
pub trait EvidenceStore: Send + Sync {
    /// Up to `limit` stored attestations the index has no row for, by id
    /// (subjects left empty).
    async fn unindexed_attestations(&self, limit: u32)
    -> Result<Vec<AttestationRow>, StorageError>;
    async fn insert_index(&self, rows: &[IndexRow]) -> Result<(), StorageError>;
    /// Indexed attestations built from `source_ref`, of `repo` when given, by id.
    async fn indexed_by_ref(
        &self,
        source_ref: &str,
        repo: Option<&str>,
    ) -> Result<Vec<IndexRow>, StorageError>;
    /// The newest indexed attestation of each repository.
    async fn latest_per_repo(&self) -> Result<Vec<IndexRow>, StorageError>;
    /// Index rows of the attestations whose envelope has this sha256.
    async fn indexed_by_envelope(
        &self,
        envelope_sha256: &str,
    ) -> Result<Vec<IndexRow>, StorageError>;
    /// Distinct profile and seccomp digests in provenance created since `since_ms`.
    async fn policy_use(&self, since_ms: i64) -> Result<Vec<PolicyUse>, StorageError>;
    /// Stores attestations signed elsewhere (with their index rows), all or none.
    async fn import_attestations(
        &self,
        rows: &[(AttestationRow, IndexRow)],
    ) -> Result<(), StorageError>;

    /// Creates the auditor tenant, the engagement, its frozen set, the
    /// auditor key and the first log entry, in one transaction.
    async fn open_engagement(&self, e: &NewEngagement) -> Result<(), StorageError>;
    async fn engagement(&self, id: &str) -> Result<Option<Engagement>, StorageError>;
    /// Every engagement, newest first.
    async fn engagements(&self) -> Result<Vec<Engagement>, StorageError>;
    /// The frozen set, by attestation id.
    async fn frozen_attestations(&self, id: &str) -> Result<Vec<FrozenAttestation>, StorageError>;
    /// The frozen set's stored rows (with subjects), by id.
    async fn engagement_attestations(&self, id: &str) -> Result<Vec<AttestationRow>, StorageError>;
    /// Envelopes of the frozen set with a subject of `digest`, newest first.
    async fn engagement_envelopes(
        &self,
        id: &str,
        digest: &str,
        limit: u32,
    ) -> Result<Vec<String>, StorageError>;
    async fn add_note(
        &self,
        id: &str,
        author: &str,
        body: &str,
        sha256: &str,
        at_ms: i64,
        actor: &str,
    ) -> Result<NoteOutcome, StorageError>;
    async fn notes(&self, id: &str) -> Result<Vec<Note>, StorageError>;
    async fn engagement_log(&self, id: &str) -> Result<Vec<LogEntry>, StorageError>;
    /// Moves an open engagement to signed off and logs it; `false` when it
    /// was not open (or does not exist).
    async fn sign_off(&self, id: &str, entry: &LogWrite) -> Result<bool, StorageError>;
    /// Revokes the engagement's auditor key and logs it; `false` when it
    /// was already revoked (or does not exist).
    async fn revoke_auditor_key(&self, id: &str, entry: &LogWrite) -> Result<bool, StorageError>;
    /// The auditor key with this hash, revoked or not.
    async fn auditor_key(&self, key_hash: &str) -> Result<Option<AuditorKey>, StorageError>;

    /// Records an issued pack (and, for a sign-off pack, sets it on its
    /// engagement and logs it with `entry`). Recording the same hash again
    /// is a no-op.
    async fn record_pack(
        &self,
        pack: &PackRecord,
        entry: Option<&LogWrite>,
    ) -> Result<(), StorageError>;
    async fn pack(&self, sha256: &str) -> Result<Option<PackRecord>, StorageError>;
    /// (sha256, time to pack in ms) of every recorded pack.
    async fn pack_timings(&self) -> Result<Vec<(String, i64)>, StorageError>;
}
