//! Storage behind one trait, [`Storage`], with two sqlx backends: SQLite (the
//! embedded default: WAL, `synchronous=FULL`) and PostgreSQL (stateless
//! attestors behind a load balancer). Each backend owns its versioned
//! migrations under `attestor/migrations/<backend>/`.
//!
//! What it stores: tenants, API keys (hashes only), signed attestations with
//! their subjects, usage events, and the idempotency records that make
//! metering exactly-once.
//!
//! Invariants both backends keep:
//! - [`Storage::commit_usage`] writes a whole batch in one transaction and
//!   returns only after it is durable; an idempotency key already recorded
//!   within the window is never counted again (the `(tenant, event, key)`
//!   primary key of `idempotency` enforces it, also across processes).
//! - Times are integer milliseconds since the Unix epoch, given by the caller
//!   (the service's clock), never read from the database's clock.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

pub mod billing;
mod billing_postgres;
mod billing_sqlite;
pub mod evidence;
mod evidence_sql;
pub mod files;
pub mod portal;
pub mod postgres;
pub mod sqlite;

/// Errors from either backend.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("invalid database url: {0}")]
    Url(String),
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// A tenant's price plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Plan {
    #[value(name = "Starter")]
    Starter,
    #[value(name = "Pro")]
    Pro,
    #[value(name = "Enterprise")]
    Enterprise,
    /// An auditor's tenant, created by `audit open` (never by `tenants
    /// create`) and never billed.
    #[value(skip)]
    Auditor,
}

impl Plan {
    /// Every plan, `Auditor` included (clap's value list skips it).
    pub const ALL: [Plan; 4] = [Plan::Starter, Plan::Pro, Plan::Enterprise, Plan::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Starter => "Starter",
            Plan::Pro => "Pro",
            Plan::Enterprise => "Enterprise",
            Plan::Auditor => "Auditor",
        }
    }

    /// Whether usage under this plan is billed (`Auditor` is not).
    pub fn billed(self) -> bool {
        !matches!(self, Plan::Auditor)
    }

    pub fn parse(s: &str) -> Result<Self, StorageError> {
        match s {
            "Starter" => Ok(Plan::Starter),
            "Pro" => Ok(Plan::Pro),
            "Enterprise" => Ok(Plan::Enterprise),
            "Auditor" => Ok(Plan::Auditor),
            other => Err(StorageError::Corrupt(format!("unknown plan {other:?}"))),
        }
    }
}

/// A tenant of the verification API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub plan: Plan,
    pub created_at_ms: i64,
}

/// An API key's stored facts (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyInfo {
    pub id: String,
    pub tenant_id: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

/// Who a valid, unrevoked key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOwner {
    pub key_id: String,
    pub tenant_id: String,
}

/// One subject of a stored attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectRow {
    pub name: String,
    /// `sha256:<hex>`.
    pub digest: String,
}

/// A signed attestation as stored: the DSSE envelope and the bundle are kept
/// as the exact JSON text that was signed and returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationRow {
    pub id: String,
    pub created_at_ms: i64,
    pub keyid: String,
    pub builder_id: String,
    pub source_uri: String,
    pub subjects: Vec<SubjectRow>,
    pub envelope: String,
    pub bundle: String,
}

/// A signing request's identity: the runner's job (`invocation_id`) on
/// one builder, and the SHA-256 of the build record (canonical JSON as the
/// service re-serializes it) that was signed for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignRequest {
    pub builder_id: String,
    pub invocation_id: String,
    pub record_sha256: String,
}

/// How to look attestations up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttestationFilter {
    /// `sha256:<hex>` of a subject.
    Subject(String),
    /// The source repository URI.
    Repo(String),
    /// The builder id.
    Builder(String),
}

/// A page request: newest first, strictly older than `before` (an id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub limit: u32,
    pub before: Option<String>,
}

/// A usage event name.
pub const EVENT_VERIFY: &str = "attestation.verify";
/// A usage event name.
pub const EVENT_DOWNLOAD: &str = "portal.download";

/// Where a usage event's idempotency key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageKey {
    /// The request's `Idempotency-Key`: deduplicated within the window.
    Client(String),
    /// A generated unique id for a request without the header.
    Generated(String),
}

impl UsageKey {
    pub fn as_str(&self) -> &str {
        match self {
            UsageKey::Client(k) | UsageKey::Generated(k) => k,
        }
    }
}

/// A response kept so that a retry gets the same answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    /// Shared with the response sent (no copy per request).
    pub body: bytes::Bytes,
}

/// One metered request to commit.
#[derive(Debug, Clone)]
pub struct UsageWrite {
    pub tenant_id: String,
    pub event: &'static str,
    pub units: i64,
    pub key: UsageKey,
    /// Hash of the request, to tell a retry from a reuse of the key.
    pub request_hash: String,
    pub at_ms: i64,
    pub response: StoredResponse,
}

/// What committing one [`UsageWrite`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageOutcome {
    /// Counted now; answer with the computed response.
    Recorded,
    /// The key was recorded within the window for the same request: not
    /// counted again; answer with the stored response.
    Replay(StoredResponse),
    /// The key was recorded within the window for a different request.
    KeyReused,
}

/// Usage counts per event name.
pub type UsageCounts = BTreeMap<String, i64>;

/// The storage API the service and the operator CLIs use.
#[async_trait]
pub trait Storage: evidence::EvidenceStore + portal::PortalStorage + Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;
    /// Round trip to the database (readiness).
    async fn ping(&self) -> Result<(), StorageError>;
    /// Closes the pool after in-flight work.
    async fn close(&self);
    /// How many [`Storage::commit_usage`] transactions may usefully run at
    /// once (SQLite has one writer: 1).
    fn commit_concurrency(&self) -> usize {
        1
    }
    /// Most events [`Storage::commit_usage`] takes at once.
    fn max_batch(&self) -> usize {
        usize::MAX
    }

    async fn create_tenant(&self, tenant: &Tenant) -> Result<(), StorageError>;
    /// By id or by name.
    async fn find_tenant(&self, id_or_name: &str) -> Result<Option<Tenant>, StorageError>;
    async fn list_tenants(&self) -> Result<Vec<Tenant>, StorageError>;

    async fn insert_api_key(&self, info: &ApiKeyInfo, key_hash: &str) -> Result<(), StorageError>;
    /// Marks a key revoked; `NotFound` if there is no such key.
    async fn revoke_api_key(&self, key_id: &str, at_ms: i64) -> Result<(), StorageError>;
    async fn list_api_keys(&self, tenant_id: &str) -> Result<Vec<ApiKeyInfo>, StorageError>;
    /// The owner of an unrevoked key with this hash.
    async fn authenticate(&self, key_hash: &str) -> Result<Option<KeyOwner>, StorageError>;

    async fn insert_attestation(&self, row: &AttestationRow) -> Result<(), StorageError>;
    /// Stores a signed attestation together with the signing request it
    /// answers (one per builder and invocation, see [`SignRequest`]), in
    /// one transaction. `Conflict` when that invocation was signed already
    /// (a concurrent duplicate): nothing of `row` is stored then.
    async fn insert_signed(
        &self,
        row: &AttestationRow,
        request: &SignRequest,
    ) -> Result<(), StorageError>;
    /// The attestation signed for a builder's invocation, with the SHA-256
    /// of the record it was signed for.
    async fn find_signed(
        &self,
        builder_id: &str,
        invocation_id: &str,
    ) -> Result<Option<(String, AttestationRow)>, StorageError>;
    async fn find_attestations(
        &self,
        filter: &AttestationFilter,
        page: &Page,
    ) -> Result<Vec<AttestationRow>, StorageError>;
    /// The envelopes (only) of the newest `limit` attestations with a
    /// subject of this digest, newest first: what `POST /v1/verify` without
    /// provenance checks, without the bundles and subjects it does not need.
    async fn find_envelopes(&self, digest: &str, limit: u32) -> Result<Vec<String>, StorageError>;

    /// Commits a batch of usage events in one durable transaction (see the
    /// module invariants). Records older than `replay_since_ms` no longer
    /// replay: their key counts again. Outcomes are in input order.
    async fn commit_usage(
        &self,
        batch: &[UsageWrite],
        replay_since_ms: i64,
    ) -> Result<Vec<UsageOutcome>, StorageError>;
    /// Events of a tenant with `from_ms <= time < to_ms`, summed per event.
    async fn usage_counts(
        &self,
        tenant_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<UsageCounts, StorageError>;
    /// Deletes idempotency records older than `before_ms` (their results are
    /// no longer replayed anyway); the usage events stay.
    async fn purge_idempotency(&self, before_ms: i64) -> Result<u64, StorageError>;

    /// The billing tables (plan history, closes, invoices, webhooks).
    fn billing(&self) -> &dyn billing::BillingStore;
}

/// Opens (creating if needed) and migrates the storage named by `url`.
pub async fn open(url: &str) -> Result<Arc<dyn Storage>, StorageError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStorage::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStorage::open(url, None).await?))
    } else {
        Err(StorageError::Url(
            "expected sqlite:, postgres:// or postgresql://".into(),
        ))
    }
}

/// A usage batch prepared for set-based SQL: duplicates of a client key
/// inside the batch are resolved in memory (the first occurrence goes to the
/// database; later ones replay it or are refused), so each statement sees
/// every `(tenant, event, key)` at most once, in sorted order. The JSON is
/// written once, straight from the writes (no intermediate values).
pub(crate) struct PreparedBatch {
    /// JSON array of the first occurrences of client keys, sorted by key:
    /// `[{"t","e","k","h","s","b","a"}]`.
    pub client_rows: String,
    /// For each input position: `Some(j)` when it duplicates position `j`.
    pub duplicate_of: Vec<Option<usize>>,
}

#[derive(Serialize)]
struct ClientRow<'a> {
    t: &'a str,
    e: &'a str,
    k: &'a str,
    h: &'a str,
    s: u16,
    b: &'a str,
    a: i64,
}

#[derive(Serialize)]
struct EventRow<'a> {
    t: &'a str,
    e: &'a str,
    u: i64,
    k: &'a str,
    a: i64,
}

fn json_err(e: serde_json::Error) -> StorageError {
    StorageError::Corrupt(format!("cannot encode a usage row: {e}"))
}

pub(crate) fn prepare_batch(batch: &[UsageWrite]) -> Result<PreparedBatch, StorageError> {
    let mut first: BTreeMap<(&str, &str, &str), usize> = BTreeMap::new();
    let mut duplicate_of = vec![None; batch.len()];
    for (i, w) in batch.iter().enumerate() {
        if let UsageKey::Client(k) = &w.key {
            match first.get(&(w.tenant_id.as_str(), w.event, k.as_str())) {
                Some(&j) => duplicate_of[i] = Some(j),
                None => {
                    first.insert((w.tenant_id.as_str(), w.event, k.as_str()), i);
                }
            }
        }
    }
    let mut out = Vec::with_capacity(2 + first.len() * 256);
    out.push(b'[');
    for &i in first.values() {
        let w = &batch[i];
        let body = std::str::from_utf8(&w.response.body)
            .map_err(|_| StorageError::Corrupt("response body is not utf-8".into()))?;
        if out.len() > 1 {
            out.push(b',');
        }
        serde_json::to_writer(
            &mut out,
            &ClientRow {
                t: &w.tenant_id,
                e: w.event,
                k: w.key.as_str(),
                h: &w.request_hash,
                s: w.response.status,
                b: body,
                a: w.at_ms,
            },
        )
        .map_err(json_err)?;
    }
    out.push(b']');
    Ok(PreparedBatch {
        client_rows: String::from_utf8(out).map_err(|e| StorageError::Corrupt(e.to_string()))?,
        duplicate_of,
    })
}

#[derive(Serialize)]
struct CandidateRow<'a> {
    t: &'a str,
    e: &'a str,
    u: i64,
    k: &'a str,
    a: i64,
    /// 1: a client key (counted only when it has no live record); 0: generated.
    c: u8,
}

/// JSON array of the events a batch may record: every generated key and
/// the first occurrence of every client key, `[{"t","e","u","k","a","c"}]`
/// (for a backend that decides in SQL which client keys are new).
pub(crate) fn event_candidates(
    batch: &[UsageWrite],
    prepared: &PreparedBatch,
) -> Result<String, StorageError> {
    let mut out = Vec::with_capacity(2 + batch.len() * 128);
    out.push(b'[');
    for (i, w) in batch.iter().enumerate() {
        if prepared.duplicate_of[i].is_some() {
            continue;
        }
        if out.len() > 1 {
            out.push(b',');
        }
        serde_json::to_writer(
            &mut out,
            &CandidateRow {
                t: &w.tenant_id,
                e: w.event,
                u: w.units,
                k: w.key.as_str(),
                a: w.at_ms,
                c: u8::from(matches!(w.key, UsageKey::Client(_))),
            },
        )
        .map_err(json_err)?;
    }
    out.push(b']');
    String::from_utf8(out).map_err(|e| StorageError::Corrupt(e.to_string()))
}

/// JSON array of the usage events to insert: `[{"t","e","u","k","a"}]`.
pub(crate) fn usage_rows(batch: &[UsageWrite], recorded: &[bool]) -> Result<String, StorageError> {
    let mut out = Vec::with_capacity(2 + batch.len() * 128);
    out.push(b'[');
    for (w, _) in batch.iter().zip(recorded).filter(|(_, r)| **r) {
        if out.len() > 1 {
            out.push(b',');
        }
        serde_json::to_writer(
            &mut out,
            &EventRow {
                t: &w.tenant_id,
                e: w.event,
                u: w.units,
                k: w.key.as_str(),
                a: w.at_ms,
            },
        )
        .map_err(json_err)?;
    }
    out.push(b']');
    String::from_utf8(out).map_err(|e| StorageError::Corrupt(e.to_string()))
}

/// A stored idempotency row's request hash and response, as either backend
/// returns it (columns `request_hash`, `status`, `body`).
pub(crate) fn stored_row<R: sqlx::Row>(r: &R) -> Result<(String, StoredResponse), StorageError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Vec<u8>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let status: i64 = r.try_get("status")?;
    Ok((
        r.try_get::<String, _>("request_hash")?,
        StoredResponse {
            status: u16::try_from(status).map_err(|_| StorageError::Corrupt("status".into()))?,
            body: r.try_get::<Vec<u8>, _>("body")?.into(),
        },
    ))
}

/// What the database said about the first occurrences, resolved for every
/// position of the batch. `fresh`: positions whose key was (re)recorded;
/// `stored`: (position → stored hash and response) for the others.
pub(crate) fn resolve_batch(
    batch: &[UsageWrite],
    prepared: &PreparedBatch,
    fresh: &std::collections::BTreeSet<usize>,
    stored: &BTreeMap<usize, (String, StoredResponse)>,
) -> Result<(Vec<UsageOutcome>, Vec<bool>), StorageError> {
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut recorded = Vec::with_capacity(batch.len());
    for (i, w) in batch.iter().enumerate() {
        let outcome = match (&w.key, prepared.duplicate_of[i]) {
            (UsageKey::Generated(_), _) => UsageOutcome::Recorded,
            (UsageKey::Client(_), None) if fresh.contains(&i) => UsageOutcome::Recorded,
            (UsageKey::Client(_), None) => {
                let (hash, resp) = stored
                    .get(&i)
                    .ok_or_else(|| StorageError::Corrupt("idempotency record vanished".into()))?;
                if *hash == w.request_hash {
                    UsageOutcome::Replay(resp.clone())
                } else {
                    UsageOutcome::KeyReused
                }
            }
            (UsageKey::Client(_), Some(j)) => {
                // A duplicate inside the batch: the first occurrence decided.
                let (hash, resp) = if fresh.contains(&j) {
                    (batch[j].request_hash.clone(), batch[j].response.clone())
                } else {
                    stored.get(&j).cloned().ok_or_else(|| {
                        StorageError::Corrupt("idempotency record vanished".into())
                    })?
                };
                if hash == w.request_hash {
                    UsageOutcome::Replay(resp)
                } else {
                    UsageOutcome::KeyReused
                }
            }
        };
        recorded.push(outcome == UsageOutcome::Recorded);
        outcomes.push(outcome);
    }
    Ok((outcomes, recorded))
}

/// A `tenants` row as either backend returns it (columns `id`, `name`,
/// `plan`, `created_at_ms`).
pub(crate) fn tenant_from<R: sqlx::Row>(row: &R) -> Result<Tenant, StorageError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R> + sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Tenant {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        plan: Plan::parse(row.try_get::<&str, _>("plan")?)?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

/// An `api_keys` row as either backend returns it (columns `id`,
/// `tenant_id`, `created_at_ms`, `revoked_at_ms`; never the hash).
pub(crate) fn key_from<R: sqlx::Row>(row: &R) -> Result<ApiKeyInfo, StorageError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(ApiKeyInfo {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        created_at_ms: row.try_get("created_at_ms")?,
        revoked_at_ms: row.try_get("revoked_at_ms")?,
    })
}

/// Whether `e` is a unique-constraint violation, in either backend.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// An `attestations` row as either backend returns it (columns `id`,
/// `created_at_ms`, `keyid`, `builder_id`, `source_uri`, `envelope`,
/// `bundle`), its subjects still empty.
pub(crate) fn attestation_row<R: sqlx::Row>(r: &R) -> Result<AttestationRow, StorageError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(AttestationRow {
        id: r.try_get("id")?,
        created_at_ms: r.try_get("created_at_ms")?,
        keyid: r.try_get("keyid")?,
        builder_id: r.try_get("builder_id")?,
        source_uri: r.try_get("source_uri")?,
        subjects: Vec::new(),
        envelope: r.try_get("envelope")?,
        bundle: r.try_get("bundle")?,
    })
}

/// Gives each attestation its subjects, from the rows (`attestation_id`,
/// `name`, `digest`) of one query over all of them, in the query's order.
pub(crate) fn attach_subjects<R: sqlx::Row>(
    rows: Vec<AttestationRow>,
    subjects: &[R],
) -> Result<Vec<AttestationRow>, StorageError>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let mut by_id: BTreeMap<String, Vec<SubjectRow>> = BTreeMap::new();
    for s in subjects {
        by_id
            .entry(s.try_get("attestation_id")?)
            .or_default()
            .push(SubjectRow {
                name: s.try_get("name")?,
                digest: s.try_get("digest")?,
            });
    }
    Ok(rows
        .into_iter()
        .map(|mut r| {
            r.subjects = by_id.remove(&r.id).unwrap_or_default();
            r
        })
        .collect())
}
