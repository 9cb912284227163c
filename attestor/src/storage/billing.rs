//! Billing storage: plan history, closes, rating, invoices, documents and
//! the webhook outbox, behind one trait ([`BillingStore`]) with a backend
//! for SQLite (`billing_sqlite.rs`) and one for PostgreSQL
//! (`billing_postgres.rs`). Reach it through [`super::Storage::billing`].
//!
//! Invariants both backends keep (the schema's triggers enforce the ones
//! about immutability, so they hold for any SQL, not only this code):
//! - A close ([`CloseRow`]) records the highest usage event id when it was
//!   taken (`watermark`), read while no usage batch can commit (SQLite: the
//!   write lock; PostgreSQL: `LOCK TABLE usage_events IN SHARE MODE`). An
//!   event committed later and dated before the close's end is marked late
//!   by a trigger (`usage_late`) and rated on the next invoice.
//! - [`BillingStore::rate`] is one aggregate statement per tenant and close:
//!   index range sums, no row leaves the database.
//! - An invoice is born a draft; [`BillingStore::finalize`] assigns its
//!   number from the series counter, writes its documents and the webhook
//!   outbox rows in one transaction: numbers are gapless (a failed or killed
//!   finalization rolls the counter back with everything else) and unique.
//! - A finalized invoice changes only to void; its PDF is stored once.
//! - Each outbox row has at most one claimant: a lease (owner, until) taken
//!   atomically (PostgreSQL: `FOR UPDATE SKIP LOCKED`), and results are
//!   recorded only by the lease's owner.

use super::{StorageError, Tenant};
use async_trait::async_trait;
use serde::Serialize;

/// Errors of the billing storage.
#[derive(Debug, thiserror::Error)]
pub enum BillingStoreError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The schema refused a change to something immutable.
    #[error("refused by storage: {0}")]
    Immutable(String),
    #[error("{0} not found")]
    NotFound(String),
    /// A state change that does not apply (e.g. voiding a draft).
    #[error("{0}")]
    Refused(String),
    /// The document builder failed during finalization (nothing was written).
    #[error("building the invoice documents failed: {0}")]
    Build(String),
}

impl From<sqlx::Error> for BillingStoreError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(d) = &e {
            let m = d.message();
            if let Some(i) = m.find("immutable: ") {
                return BillingStoreError::Immutable(m[i + "immutable: ".len()..].to_owned());
            }
        }
        BillingStoreError::Storage(StorageError::Database(e))
    }
}

/// One entry of a tenant's plan history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanChange {
    pub plan: String,
    pub effective_at_ms: i64,
    pub recorded_at_ms: i64,
}

/// A closed (tenant, period).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CloseRow {
    pub id: i64,
    pub tenant_id: String,
    /// `YYYY-MM`.
    pub period: String,
    /// The invoice period: from the previous close's end (or the month's
    /// start for a tenant's first close) to `end_ms`.
    pub start_ms: i64,
    /// The month's end, or the moment of an early close.
    pub end_ms: i64,
    pub prev_end_ms: Option<i64>,
    pub prev_watermark: i64,
    pub watermark: i64,
    pub early: bool,
    pub closed_at_ms: i64,
}

/// What a close asks for one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseSpec {
    pub tenant_id: String,
    /// `YYYY-MM`.
    pub period: String,
    pub month_start_ms: i64,
    pub end_ms: i64,
    pub early: bool,
}

/// What taking a close did for one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseOpened {
    /// Taken now.
    New(CloseRow),
    /// This period was closed before (a rerun, or another closer).
    Existing(CloseRow),
    /// Not closed, with the reason (e.g. a later period is already closed).
    Refused { tenant_id: String, reason: String },
}

/// A tagged half-open time range `[from_ms, to_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TimeRange {
    pub tag: i64,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// One tenant's rating over one close.
#[derive(Debug, Clone)]
pub struct RatingQuery<'a> {
    pub tenant_id: &'a str,
    pub watermark: i64,
    pub prev_watermark: i64,
    /// Ranges of the close whose events are summed per event kind (tags
    /// chosen by the caller; they must not overlap).
    pub ranges: &'a [TimeRange],
    /// The plan segments (tag = segment index), covering all time: late
    /// events are grouped by the segment they fall in.
    pub segments: &'a [TimeRange],
}

/// Which part of the rating statement a row comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RatedPart {
    /// Units of one event kind in one of the query's ranges (tag = range).
    Range,
    /// Late events of this close: marked late, id in `(prev_watermark,
    /// watermark]` (tag = segment).
    Late,
    /// Events marked late after this close's watermark that fall in one of
    /// its ranges: they belong to the next close, and are subtracted from
    /// the range sums (tag = range).
    After,
}

/// One row of the rating statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatedRow {
    pub part: RatedPart,
    pub tag: i64,
    pub event: String,
    pub units: i64,
    /// Events counted (`Late` and `After` rows only; 0 for `Range`).
    pub events: i64,
    /// Time of the first and last event.
    pub first_ms: i64,
    pub last_ms: i64,
}

/// An invoice's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InvoiceStatus {
    Draft,
    Finalized,
    Void,
}

impl InvoiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Draft => "draft",
            InvoiceStatus::Finalized => "finalized",
            InvoiceStatus::Void => "void",
        }
    }

    pub fn parse(s: &str) -> Result<Self, StorageError> {
        match s {
            "draft" => Ok(Self::Draft),
            "finalized" => Ok(Self::Finalized),
            "void" => Ok(Self::Void),
            other => Err(StorageError::Corrupt(format!("invoice status {other:?}"))),
        }
    }
}

/// A stored invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceRow {
    pub id: String,
    pub tenant_id: String,
    pub close_id: i64,
    pub period: String,
    pub status: InvoiceStatus,
    /// The rated draft (`billing::rating::Draft` as JSON).
    pub draft: String,
    pub total_micros: i64,
    pub created_at_ms: i64,
    pub number: Option<String>,
    pub finalized_at_ms: Option<i64>,
    /// The canonical invoice JSON, exactly as signed.
    pub document: Option<String>,
    /// Hex sha256 of `document`.
    pub sha256: Option<String>,
    /// The DSSE envelope over the document's digest.
    pub envelope: Option<String>,
    pub voided_at_ms: Option<i64>,
    pub void_reason: Option<String>,
}

/// A draft to store.
#[derive(Debug, Clone)]
pub struct NewDraft {
    pub id: String,
    pub tenant_id: String,
    pub close_id: i64,
    pub period: String,
    pub draft: String,
    pub total_micros: i64,
    pub created_at_ms: i64,
}

/// What storing a draft did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DraftOutcome {
    /// The close's draft (new, or the existing draft brought up to date): its id.
    Draft(String),
    /// The close already has an issued invoice.
    Issued(Box<InvoiceRow>),
}

/// What the document builder gets inside the finalization transaction.
#[derive(Debug)]
pub struct FinalizeInput<'a> {
    pub number: &'a str,
    pub finalized_at_ms: i64,
    /// The customer as it is now (copied into the document).
    pub tenant: &'a Tenant,
    pub invoice: &'a InvoiceRow,
    /// Enabled webhook endpoints of the tenant.
    pub endpoints: usize,
}

/// A webhook message to write with the finalization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// `msg_…`: the `webhook-id` of every attempt.
    pub id: String,
    pub event_type: String,
    pub payload: String,
    /// When the first attempt is due (the schedule's first delay).
    pub first_attempt_at_ms: i64,
}

/// What the builder returns: the documents, and optionally a message.
#[derive(Debug, Clone)]
pub struct FinalDocs {
    pub document: String,
    pub sha256: String,
    pub envelope: String,
    pub message: Option<NewMessage>,
}

/// Builds the documents once the number is known (inside the transaction).
pub type BuildDocs<'a> = dyn Fn(&FinalizeInput<'_>) -> Result<FinalDocs, String> + Send + Sync + 'a;

/// What finalization did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinalizeOutcome {
    /// Finalized now; `deliveries` outbox rows were written.
    Finalized {
        invoice: InvoiceRow,
        deliveries: u64,
    },
    /// It was issued before (by another closer): nothing changed.
    AlreadyIssued(InvoiceRow),
}

/// Which invoices to list.
#[derive(Debug, Clone, Default)]
pub struct InvoiceFilter<'a> {
    pub tenant_id: Option<&'a str>,
    pub period: Option<&'a str>,
    pub include_drafts: bool,
}

/// A webhook endpoint.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointRow {
    pub id: String,
    pub tenant_id: String,
    pub url: String,
    /// `whsec_…`; never logged, never serialized.
    #[serde(skip)]
    pub secret: String,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl std::fmt::Debug for EndpointRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointRow")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// A delivery claimed by a worker.
#[derive(Clone, PartialEq, Eq)]
pub struct Claimed {
    pub outbox_id: i64,
    pub message_id: String,
    pub endpoint_id: String,
    pub tenant_id: String,
    pub url: String,
    pub secret: String,
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: i64,
}

impl std::fmt::Debug for Claimed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claimed")
            .field("outbox_id", &self.outbox_id)
            .field("message_id", &self.message_id)
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// What happens to an outbox row after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Delivered,
    Retry {
        at_ms: i64,
    },
    /// The last attempt failed: dead letter.
    Dead,
    /// 410 Gone: the endpoint is disabled and its pending rows dead-lettered.
    DisableEndpoint,
}

/// The outcome of one attempt, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    pub outbox_id: i64,
    pub endpoint_id: String,
    /// 1-based.
    pub attempt: i64,
    pub attempted_at_ms: i64,
    pub duration_ms: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub next: Next,
}

/// An outbox row with its message's facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxRow {
    pub outbox_id: i64,
    pub message_id: String,
    pub event_type: String,
    pub endpoint_id: String,
    pub url: String,
    pub tenant_id: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at_ms: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub delivered_at_ms: Option<i64>,
    pub dead_at_ms: Option<i64>,
}

/// Which outbox rows to list.
#[derive(Debug, Clone, Default)]
pub struct OutboxFilter<'a> {
    pub tenant_id: Option<&'a str>,
    /// `pending`, `delivered` or `dead`.
    pub state: Option<&'a str>,
    /// Messages created at or after this time.
    pub since_ms: Option<i64>,
    pub limit: u32,
}

/// One attempt in the delivery log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryLogRow {
    pub outbox_id: i64,
    pub message_id: String,
    pub endpoint_id: String,
    pub attempt: i64,
    pub attempted_at_ms: i64,
    pub duration_ms: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub worker: String,
}

/// Counts for the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BillingStats {
    pub invoices_draft: i64,
    pub invoices_finalized: i64,
    pub invoices_void: i64,
    pub outbox_pending: i64,
    pub outbox_delivered: i64,
    pub outbox_dead: i64,
    /// Creation time of the oldest pending outbox row.
    pub oldest_pending_ms: Option<i64>,
}

/// The billing storage API.
#[async_trait]
pub trait BillingStore: Send + Sync {
    /// A tenant's plan history, oldest first.
    async fn plan_history(&self, tenant_id: &str) -> Result<Vec<PlanChange>, BillingStoreError>;
    /// Every tenant's plan history (one query for a whole close).
    async fn plan_histories(
        &self,
    ) -> Result<std::collections::BTreeMap<String, Vec<PlanChange>>, BillingStoreError>;
    /// Sets the tenant's plan and records the change at `at_ms` (one transaction).
    async fn change_plan(
        &self,
        tenant_id: &str,
        plan: &str,
        at_ms: i64,
    ) -> Result<(), BillingStoreError>;

    /// The highest usage event id committed so far.
    async fn usage_watermark(&self) -> Result<i64, BillingStoreError>;
    /// Takes the closes (see the module invariants), in one transaction.
    async fn open_closes(
        &self,
        specs: &[CloseSpec],
        at_ms: i64,
    ) -> Result<Vec<CloseOpened>, BillingStoreError>;
    /// Closes of a period (all tenants, or one).
    async fn closes(
        &self,
        period: &str,
        tenant_id: Option<&str>,
    ) -> Result<Vec<CloseRow>, BillingStoreError>;
    /// A tenant's latest close.
    async fn last_close(&self, tenant_id: &str) -> Result<Option<CloseRow>, BillingStoreError>;

    /// The rating statement (see [`RatedPart`]).
    async fn rate(&self, q: &RatingQuery<'_>) -> Result<Vec<RatedRow>, BillingStoreError>;

    /// Stores a close's draft: inserts it, or updates the close's existing
    /// draft, or reports the close's issued invoice.
    async fn upsert_draft(&self, d: &NewDraft) -> Result<DraftOutcome, BillingStoreError>;
    /// Finalizes a draft: number `{series}{seq:06}` from the series
    /// counter, documents from `build`, outbox rows for the tenant's
    /// enabled endpoints when `build` returns a message.
    async fn finalize(
        &self,
        invoice_id: &str,
        series: &str,
        at_ms: i64,
        build: &BuildDocs<'_>,
    ) -> Result<FinalizeOutcome, BillingStoreError>;
    /// Voids an issued invoice.
    async fn void_invoice(
        &self,
        number: &str,
        reason: &str,
        at_ms: i64,
    ) -> Result<InvoiceRow, BillingStoreError>;
    async fn invoices(&self, f: &InvoiceFilter<'_>) -> Result<Vec<InvoiceRow>, BillingStoreError>;
    async fn invoice_by_number(
        &self,
        number: &str,
    ) -> Result<Option<InvoiceRow>, BillingStoreError>;
    /// The close's invoice that is not void, if any.
    async fn live_invoice(&self, close_id: i64) -> Result<Option<InvoiceRow>, BillingStoreError>;
    /// Stores an issued invoice's PDF (once; a second store of the same
    /// invoice keeps the first).
    async fn store_pdf(
        &self,
        invoice_id: &str,
        pdf: &[u8],
        sha256: &str,
    ) -> Result<(), BillingStoreError>;
    async fn pdf(&self, invoice_id: &str) -> Result<Option<Vec<u8>>, BillingStoreError>;

    async fn add_endpoint(&self, e: &EndpointRow) -> Result<(), BillingStoreError>;
    async fn endpoints(
        &self,
        tenant_id: Option<&str>,
    ) -> Result<Vec<EndpointRow>, BillingStoreError>;
    /// Enables or disables an endpoint; disabling dead-letters its pending rows.
    async fn set_endpoint_enabled(
        &self,
        id: &str,
        enabled: bool,
        reason: Option<&str>,
        at_ms: i64,
    ) -> Result<EndpointRow, BillingStoreError>;
    /// Claims up to `limit` due deliveries for `owner` until `now_ms + lease_ms`.
    async fn claim_deliveries(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<Claimed>, BillingStoreError>;
    /// Records attempts (only rows still leased by `owner`), in one transaction.
    async fn complete_deliveries(
        &self,
        owner: &str,
        results: &[AttemptResult],
        now_ms: i64,
    ) -> Result<u64, BillingStoreError>;
    async fn outbox(&self, f: &OutboxFilter<'_>) -> Result<Vec<OutboxRow>, BillingStoreError>;
    /// Makes dead-lettered rows (messages created at or after `since_ms`,
    /// endpoint enabled) pending again, attempts from zero; returns how many.
    async fn replay_dead(
        &self,
        tenant_id: Option<&str>,
        since_ms: i64,
        now_ms: i64,
    ) -> Result<u64, BillingStoreError>;
    async fn delivery_log(
        &self,
        tenant_id: Option<&str>,
        message_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeliveryLogRow>, BillingStoreError>;
    async fn stats(&self) -> Result<BillingStats, BillingStoreError>;
}

// ------------------------------------------------------------------ shared by both backends

/// Decides one tenant's close from its latest close (`last`) and the
/// watermark: the new row's fields, or why it is refused.
pub fn plan_close(
    spec: &CloseSpec,
    last: Option<&CloseRow>,
    watermark: i64,
    at_ms: i64,
) -> Result<CloseRow, String> {
    let (start_ms, prev_end_ms, prev_watermark) = match last {
        Some(l) => {
            if l.period.as_str() >= spec.period.as_str() {
                return Err(format!(
                    "period {} is not after the tenant's last closed period {}",
                    spec.period, l.period
                ));
            }
            (l.end_ms, Some(l.end_ms), l.watermark)
        }
        None => (spec.month_start_ms, None, 0),
    };
    if start_ms > spec.end_ms {
        return Err(format!(
            "the previous close ended after the end of {}",
            spec.period
        ));
    }
    Ok(CloseRow {
        id: 0,
        tenant_id: spec.tenant_id.clone(),
        period: spec.period.clone(),
        start_ms,
        end_ms: spec.end_ms,
        prev_end_ms,
        prev_watermark,
        watermark: watermark.max(prev_watermark),
        early: spec.early,
        closed_at_ms: at_ms,
    })
}

/// JSON of tagged ranges for the rating statement: `[{"tag","a","b"}]`.
pub(crate) fn ranges_json(ranges: &[TimeRange]) -> String {
    let v: Vec<serde_json::Value> = ranges
        .iter()
        .map(|r| serde_json::json!({"tag": r.tag, "a": r.from_ms, "b": r.to_ms}))
        .collect();
    serde_json::Value::Array(v).to_string()
}

/// The columns an outbox row takes after an attempt, as JSON for one
/// set-based update: `[{"id","state","attempts","next","status","error","delivered","dead"}]`.
pub(crate) fn completion_json(results: &[AttemptResult], now_ms: i64) -> String {
    let v: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            let (state, next, delivered, dead) = match r.next {
                Next::Delivered => ("delivered", now_ms, Some(now_ms), None),
                Next::Retry { at_ms } => ("pending", at_ms, None, None),
                Next::Dead | Next::DisableEndpoint => ("dead", now_ms, None, Some(now_ms)),
            };
            serde_json::json!({
                "id": r.outbox_id,
                "state": state,
                "attempts": r.attempt,
                "next": next,
                "status": r.status_code,
                "error": r.error,
                "delivered": delivered,
                "dead": dead,
            })
        })
        .collect();
    serde_json::Value::Array(v).to_string()
}

/// The delivery-log rows of a batch, as JSON: `[{"o","n","at","d","s","e"}]`.
pub(crate) fn attempts_json(results: &[AttemptResult]) -> String {
    let v: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            serde_json::json!({
                "o": r.outbox_id,
                "n": r.attempt,
                "at": r.attempted_at_ms,
                "d": r.duration_ms,
                "s": r.status_code,
                "e": r.error,
            })
        })
        .collect();
    serde_json::Value::Array(v).to_string()
}

/// Bounds of a row type both backends decode with the mappers below.
pub(crate) trait BillingRow {
    fn i64_(&self, c: &str) -> Result<i64, StorageError>;
    fn opt_i64(&self, c: &str) -> Result<Option<i64>, StorageError>;
    fn string(&self, c: &str) -> Result<String, StorageError>;
    fn opt_string(&self, c: &str) -> Result<Option<String>, StorageError>;
}

impl<R> BillingRow for R
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    fn i64_(&self, c: &str) -> Result<i64, StorageError> {
        Ok(self.try_get(c)?)
    }
    fn opt_i64(&self, c: &str) -> Result<Option<i64>, StorageError> {
        Ok(self.try_get(c)?)
    }
    fn string(&self, c: &str) -> Result<String, StorageError> {
        Ok(self.try_get(c)?)
    }
    fn opt_string(&self, c: &str) -> Result<Option<String>, StorageError> {
        Ok(self.try_get(c)?)
    }
}

/// Columns of `billing_closes` (all of them).
pub(crate) const CLOSE_COLUMNS: &str = "id, tenant_id, period, start_ms, end_ms, prev_end_ms, \
     prev_watermark, watermark, early, closed_at_ms";

pub(crate) fn close_from<R: BillingRow>(r: &R) -> Result<CloseRow, StorageError> {
    Ok(CloseRow {
        id: r.i64_("id")?,
        tenant_id: r.string("tenant_id")?,
        period: r.string("period")?,
        start_ms: r.i64_("start_ms")?,
        end_ms: r.i64_("end_ms")?,
        prev_end_ms: r.opt_i64("prev_end_ms")?,
        prev_watermark: r.i64_("prev_watermark")?,
        watermark: r.i64_("watermark")?,
        early: r.i64_("early")? != 0,
        closed_at_ms: r.i64_("closed_at_ms")?,
    })
}

/// Columns of `invoices` (all of them).
pub(crate) const INVOICE_COLUMNS: &str = "id, tenant_id, close_id, period, status, draft, \
     total_micros, created_at_ms, number, finalized_at_ms, document, sha256, envelope, \
     voided_at_ms, void_reason";

pub(crate) fn invoice_from<R: BillingRow>(r: &R) -> Result<InvoiceRow, StorageError> {
    Ok(InvoiceRow {
        id: r.string("id")?,
        tenant_id: r.string("tenant_id")?,
        close_id: r.i64_("close_id")?,
        period: r.string("period")?,
        status: InvoiceStatus::parse(&r.string("status")?)?,
        draft: r.string("draft")?,
        total_micros: r.i64_("total_micros")?,
        created_at_ms: r.i64_("created_at_ms")?,
        number: r.opt_string("number")?,
        finalized_at_ms: r.opt_i64("finalized_at_ms")?,
        document: r.opt_string("document")?,
        sha256: r.opt_string("sha256")?,
        envelope: r.opt_string("envelope")?,
        voided_at_ms: r.opt_i64("voided_at_ms")?,
        void_reason: r.opt_string("void_reason")?,
    })
}

pub(crate) const ENDPOINT_COLUMNS: &str =
    "id, tenant_id, url, secret, enabled, disabled_reason, created_at_ms, updated_at_ms";

pub(crate) fn endpoint_from<R: BillingRow>(r: &R) -> Result<EndpointRow, StorageError> {
    Ok(EndpointRow {
        id: r.string("id")?,
        tenant_id: r.string("tenant_id")?,
        url: r.string("url")?,
        secret: r.string("secret")?,
        enabled: r.i64_("enabled")? != 0,
        disabled_reason: r.opt_string("disabled_reason")?,
        created_at_ms: r.i64_("created_at_ms")?,
        updated_at_ms: r.i64_("updated_at_ms")?,
    })
}

/// `o.*` outbox columns with the message's type and the endpoint's URL.
pub(crate) const OUTBOX_SELECT: &str = "SELECT o.id AS outbox_id, o.message_id, m.event_type, \
     o.endpoint_id, e.url, o.tenant_id, o.state, o.attempts, o.next_attempt_at_ms, o.last_status, \
     o.last_error, o.created_at_ms, o.delivered_at_ms, o.dead_at_ms \
     FROM webhook_outbox AS o JOIN webhook_messages AS m ON m.id = o.message_id \
     JOIN webhook_endpoints AS e ON e.id = o.endpoint_id";

pub(crate) fn outbox_from<R: BillingRow>(r: &R) -> Result<OutboxRow, StorageError> {
    Ok(OutboxRow {
        outbox_id: r.i64_("outbox_id")?,
        message_id: r.string("message_id")?,
        event_type: r.string("event_type")?,
        endpoint_id: r.string("endpoint_id")?,
        url: r.string("url")?,
        tenant_id: r.string("tenant_id")?,
        state: r.string("state")?,
        attempts: r.i64_("attempts")?,
        next_attempt_at_ms: r.i64_("next_attempt_at_ms")?,
        last_status: r.opt_i64("last_status")?,
        last_error: r.opt_string("last_error")?,
        created_at_ms: r.i64_("created_at_ms")?,
        delivered_at_ms: r.opt_i64("delivered_at_ms")?,
        dead_at_ms: r.opt_i64("dead_at_ms")?,
    })
}

pub(crate) fn claimed_from<R: BillingRow>(r: &R) -> Result<Claimed, StorageError> {
    Ok(Claimed {
        outbox_id: r.i64_("id")?,
        message_id: r.string("message_id")?,
        endpoint_id: r.string("endpoint_id")?,
        tenant_id: r.string("tenant_id")?,
        url: r.string("url")?,
        secret: r.string("secret")?,
        payload: r.string("payload")?,
        attempts: r.i64_("attempts")?,
    })
}

pub(crate) fn log_from<R: BillingRow>(r: &R) -> Result<DeliveryLogRow, StorageError> {
    Ok(DeliveryLogRow {
        outbox_id: r.i64_("outbox_id")?,
        message_id: r.string("message_id")?,
        endpoint_id: r.string("endpoint_id")?,
        attempt: r.i64_("attempt")?,
        attempted_at_ms: r.i64_("attempted_at_ms")?,
        duration_ms: r.i64_("duration_ms")?,
        status_code: r.opt_i64("status_code")?,
        error: r.opt_string("error")?,
        worker: r.string("worker")?,
    })
}

pub(crate) fn rated_from<R: BillingRow>(r: &R) -> Result<Option<RatedRow>, StorageError> {
    let Some(units) = r.opt_i64("units")? else {
        return Ok(None);
    };
    let part = match r.string("part")?.as_str() {
        "r" => RatedPart::Range,
        "l" => RatedPart::Late,
        "a" => RatedPart::After,
        other => return Err(StorageError::Corrupt(format!("rating part {other:?}"))),
    };
    Ok(Some(RatedRow {
        part,
        tag: r.i64_("tag")?,
        event: r.string("event")?,
        units,
        events: r.i64_("events")?,
        first_ms: r.opt_i64("first_ms")?.unwrap_or(0),
        last_ms: r.opt_i64("last_ms")?.unwrap_or(0),
    }))
}

/// Whether `invoice` may be voided (only an issued, not yet void invoice).
pub(crate) fn check_voidable(invoice: &InvoiceRow, asked: &str) -> Result<(), BillingStoreError> {
    match invoice.status {
        InvoiceStatus::Finalized => Ok(()),
        InvoiceStatus::Draft => Err(BillingStoreError::Refused(format!(
            "invoice {asked} is a draft: only an issued invoice can be voided"
        ))),
        InvoiceStatus::Void => Err(BillingStoreError::Refused(format!(
            "invoice {asked} is already void"
        ))),
    }
}

pub(crate) fn stats_from<R: BillingRow>(r: &R) -> Result<BillingStats, BillingStoreError> {
    Ok(BillingStats {
        invoices_draft: r.i64_("draft")?,
        invoices_finalized: r.i64_("finalized")?,
        invoices_void: r.i64_("void")?,
        outbox_pending: r.i64_("pending")?,
        outbox_delivered: r.i64_("delivered")?,
        outbox_dead: r.i64_("dead")?,
        oldest_pending_ms: r.opt_i64("oldest")?,
    })
}

/// Groups `(tenant_id, plan, effective_at_ms, recorded_at_ms)` rows, ordered
/// by tenant and time, into histories.
pub(crate) fn histories_from<R: BillingRow>(
    rows: &[R],
) -> Result<std::collections::BTreeMap<String, Vec<PlanChange>>, BillingStoreError> {
    let mut out: std::collections::BTreeMap<String, Vec<PlanChange>> = Default::default();
    for r in rows {
        out.entry(r.string("tenant_id")?)
            .or_default()
            .push(PlanChange {
                plan: r.string("plan")?,
                effective_at_ms: r.i64_("effective_at_ms")?,
                recorded_at_ms: r.i64_("recorded_at_ms")?,
            });
    }
    Ok(out)
}
