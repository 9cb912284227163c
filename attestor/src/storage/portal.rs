//! What the trust portal (`crate::portal`) stores and reads beyond the
//! [`Storage`](super::Storage) basics: server-side sessions, the newest
//! attestation of every source repository, single attestations by id and a
//! tenant's usage per day. Both backends implement [`PortalStorage`] in
//! their own `portal` submodule (`sqlite/portal.rs`, `postgres/portal.rs`).
//!
//! Invariants:
//! - A session is stored by the SHA-256 of its token only; the token itself
//!   lives in the browser's cookie and is never written anywhere else.
//! - [`PortalStorage::find_session`] returns nothing for an expired session
//!   (times from the caller's clock); whether the key behind it still holds
//!   is reported, not decided, here (the portal refuses the session).
//! - Usage is always read for one tenant, given by the caller from the
//!   session, never from a request parameter.

use super::{AttestationRow, StorageError};
use async_trait::async_trait;

/// Who a session belongs to, as stored: `kind` names the principal type.
pub const SESSION_KIND_TENANT: &str = "tenant";
/// An auditor signed in with its engagement's expiring key (`clsa_…`):
/// `tenant_id` is the auditor tenant, `key_id` the auditor key's id.
pub const SESSION_KIND_AUDITOR: &str = "auditor";

/// A session to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    /// Hex SHA-256 of the session token.
    pub token_hash: String,
    /// [`SESSION_KIND_TENANT`] or [`SESSION_KIND_AUDITOR`].
    pub kind: &'static str,
    pub tenant_id: String,
    /// The key the principal signed in with.
    pub key_id: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
}

/// A live (unexpired) session with what the portal shows of its tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub kind: String,
    pub tenant_id: String,
    pub tenant_name: String,
    pub key_id: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    /// Whether `key_id` is an API key of this tenant that is not revoked
    /// (meaningful for tenant sessions).
    pub api_key_live: bool,
    /// For an auditor session: its key as stored now (`None` for tenant
    /// sessions, or when no auditor key of this tenant has `key_id`).
    pub auditor: Option<AuditorSessionKey>,
}

/// An auditor session's key and engagement, read with the session (the
/// portal refuses the session once the key is revoked or expired).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditorSessionKey {
    pub engagement_id: String,
    /// The auditor's name on the engagement.
    pub auditor: String,
    pub expires_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

/// The columns `find_session` reads for an auditor session (both backends
/// join `auditor_keys` and `engagements` the same way).
pub const AUDITOR_SESSION_COLUMNS: &str = "ak.engagement_id AS ak_engagement_id, \
e.auditor AS ak_auditor, ak.expires_at_ms AS ak_expires_at_ms, ak.revoked_at_ms AS ak_revoked_at_ms";

/// The joins behind [`AUDITOR_SESSION_COLUMNS`] (only for `kind = 'auditor'`).
pub const AUDITOR_SESSION_JOINS: &str = "LEFT JOIN auditor_keys ak ON s.kind = 'auditor' \
AND ak.id = s.key_id AND ak.tenant_id = s.tenant_id \
LEFT JOIN engagements e ON e.id = ak.engagement_id";

/// Units of one event on one day of a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyUsage {
    /// Days since the start of the period (0 = the first day).
    pub day: i64,
    pub event: String,
    pub units: i64,
}

/// The portal's queries (see the module invariants).
#[async_trait]
pub trait PortalStorage: Send + Sync {
    async fn create_session(&self, session: &NewSession) -> Result<(), StorageError>;
    /// The session with this token hash, unless it expired at `now_ms`.
    async fn find_session(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<SessionRow>, StorageError>;
    /// Deletes one session (sign-out); whether it existed.
    async fn delete_session(&self, token_hash: &str) -> Result<bool, StorageError>;
    /// Deletes every session of a tenant (revocation by the operator).
    async fn delete_tenant_sessions(&self, tenant_id: &str) -> Result<u64, StorageError>;
    /// Deletes sessions expired at `now_ms`.
    async fn purge_sessions(&self, now_ms: i64) -> Result<u64, StorageError>;

    /// The newest attestation (by id: UUIDv7, creation order) of every
    /// source repository, with subjects, ordered by source URI. The bundle
    /// is left empty (a list shows none; `get_attestation` has it).
    async fn latest_per_repository(&self) -> Result<Vec<AttestationRow>, StorageError>;
    /// One attestation with its subjects.
    async fn get_attestation(&self, id: &str) -> Result<Option<AttestationRow>, StorageError>;
    /// A tenant's units per (day, event) in `[from_ms, to_ms)`, days counted
    /// from `from_ms` in whole 24-hour steps, ordered by day then event.
    async fn usage_by_day(
        &self,
        tenant_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<DailyUsage>, StorageError>;
}
