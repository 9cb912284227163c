//! Closing a period: `cloister-attestor billing close`. For each tenant:
//! take the close (watermark and bounds, one transaction for all tenants of
//! the run), rate it (one aggregate statement), store the draft, finalize
//! it (number, documents, signature, webhook outbox: one transaction); then
//! the run's PDFs are rendered on every core and stored.
//!
//! Safe to rerun and to run concurrently: a period closed before is
//! reported, not closed again; a close whose run died before its invoice was
//! issued is completed by the next run; two closers finalizing one draft
//! issue it once (the second finds it issued). A failure for one tenant is
//! reported and the others go on.

use super::card::{Feature, PriceCard};
use super::config::BillingConfig;
use super::document::{self, InvoiceDocument};
use super::period::{Period, rfc3339};
use super::rating::{self, Draft};
use super::webhooks::INVOICE_CREATED;
use crate::storage::billing::{
    BillingStoreError, CloseOpened, CloseRow, CloseSpec, DraftOutcome, FinalDocs, FinalizeInput,
    FinalizeOutcome, InvoiceRow, InvoiceStatus, NewDraft, NewMessage,
};
use crate::storage::{Storage, StorageError};
use cloister_attestor_core::keys::Signer;
use serde::Serialize;

/// Errors that stop a whole close (per-tenant failures are in the report).
#[derive(Debug, thiserror::Error)]
pub enum CloseError {
    #[error("period {period} has not ended (it ends {ends}); give --early to close it now")]
    NotEnded { period: String, ends: String },
    #[error("period {0} has not started")]
    NotStarted(String),
    #[error("no tenant {0:?}")]
    NoTenant(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Billing(#[from] BillingStoreError),
    #[error("invalid webhook schedule: {0}")]
    Schedule(String),
}

/// What to close.
#[derive(Debug, Clone)]
pub struct CloseOptions {
    pub period: Period,
    /// One tenant (id or name); all when absent.
    pub tenant: Option<String>,
    pub dry_run: bool,
    /// Close a period that has not ended: it ends now.
    pub early: bool,
}

/// What happened to one tenant.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum Outcome {
    /// Issued now.
    Issued {
        number: String,
        total_micros: i64,
        /// Webhook deliveries queued.
        deliveries: u64,
    },
    /// Issued earlier (by an earlier run or another closer).
    Existing {
        number: String,
        total_micros: i64,
        status: InvoiceStatus,
    },
    /// Closed, nothing to invoice (no usage, no minimum, or a plan that is
    /// not billed).
    NoInvoice,
    /// `--dry-run`: what would be invoiced.
    WouldIssue { draft: Draft },
    /// `--dry-run` on a period closed before: nothing would change.
    AlreadyClosed,
    /// Not closed, with the reason.
    Refused { reason: String },
    /// Closed, but the invoice could not be issued; a rerun retries.
    Failed { error: String },
}

/// One tenant's line of the report.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantReport {
    pub tenant_id: String,
    pub tenant: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CloseReport {
    pub period: String,
    pub start: String,
    pub end: String,
    pub early: bool,
    pub dry_run: bool,
    pub tenants: Vec<TenantReport>,
}

impl CloseReport {
    /// Whether any tenant failed.
    pub fn failed(&self) -> bool {
        self.tenants
            .iter()
            .any(|t| matches!(t.outcome, Outcome::Failed { .. }))
    }
}

type Histories = std::collections::BTreeMap<String, Vec<crate::storage::billing::PlanChange>>;

/// What the closer needs.
pub struct Closer<'a> {
    pub storage: &'a dyn Storage,
    pub card: &'a PriceCard,
    pub config: &'a BillingConfig,
    pub signer: &'a dyn Signer,
}

impl std::fmt::Debug for Closer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Closer").finish_non_exhaustive()
    }
}

/// The invoice number series for an issue time: `PREFIX-YYYY-`.
pub fn series(prefix: &str, issued_at_ms: i64) -> String {
    let year = Period::of_ms(issued_at_ms).map(|p| p.year).unwrap_or(1970);
    format!("{prefix}-{year}-")
}

impl Closer<'_> {
    /// Runs a close at `now_ms`; `progress(done, total)` after each tenant.
    pub async fn run(
        &self,
        opts: &CloseOptions,
        now_ms: i64,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<CloseReport, CloseError> {
        let (start, month_end) = opts.period.bounds();
        if now_ms < start {
            return Err(CloseError::NotStarted(opts.period.to_string()));
        }
        let end = if now_ms >= month_end {
            month_end
        } else if opts.early {
            now_ms
        } else {
            return Err(CloseError::NotEnded {
                period: opts.period.to_string(),
                ends: rfc3339(month_end),
            });
        };
        let tenants = match &opts.tenant {
            Some(t) => vec![
                self.storage
                    .find_tenant(t)
                    .await?
                    .ok_or_else(|| CloseError::NoTenant(t.clone()))?,
            ],
            None => self.storage.list_tenants().await?,
        };
        let mut report = CloseReport {
            period: opts.period.to_string(),
            start: rfc3339(start),
            end: rfc3339(end),
            early: end < month_end,
            dry_run: opts.dry_run,
            tenants: Vec::with_capacity(tenants.len()),
        };
        let specs: Vec<CloseSpec> = tenants
            .iter()
            .map(|t| CloseSpec {
                tenant_id: t.id.clone(),
                period: opts.period.to_string(),
                month_start_ms: start,
                end_ms: end,
                early: end < month_end,
            })
            .collect();
        let total = tenants.len();
        if opts.dry_run {
            let watermark = self.storage.billing().usage_watermark().await?;
            let histories = self.storage.billing().plan_histories().await?;
            for (i, (t, spec)) in tenants.iter().zip(&specs).enumerate() {
                let outcome = self.dry_run_one(spec, watermark, now_ms, &histories).await;
                report.tenants.push(TenantReport {
                    tenant_id: t.id.clone(),
                    tenant: t.name.clone(),
                    outcome,
                });
                progress(i + 1, total);
            }
            return Ok(report);
        }
        let opened = self.storage.billing().open_closes(&specs, now_ms).await?;
        let histories = self.storage.billing().plan_histories().await?;
        let mut issued = Vec::new();
        for (i, (t, o)) in tenants.iter().zip(opened).enumerate() {
            let outcome = match o {
                CloseOpened::Refused { reason, .. } => Outcome::Refused { reason },
                CloseOpened::New(c) | CloseOpened::Existing(c) => {
                    match self.invoice(&c, now_ms, &histories).await {
                        Ok((o, invoice)) => {
                            issued.extend(invoice);
                            o
                        }
                        Err(e) => {
                            tracing::error!(tenant = %t.id, period = %c.period, error = %e, "invoice not issued");
                            Outcome::Failed {
                                error: e.to_string(),
                            }
                        }
                    }
                }
            };
            report.tenants.push(TenantReport {
                tenant_id: t.id.clone(),
                tenant: t.name.clone(),
                outcome,
            });
            progress(i + 1, total);
        }
        self.store_pdfs(issued).await;
        Ok(report)
    }

    /// Renders the PDFs of the invoices issued by this run, on every core,
    /// and stores them. A PDF not stored now (an error is logged) is
    /// rendered on its first download: the same bytes.
    async fn store_pdfs(&self, issued: Vec<InvoiceRow>) {
        let par = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut todo = issued.into_iter();
        let mut set = tokio::task::JoinSet::new();
        loop {
            while set.len() < par {
                let Some(inv) = todo.next() else { break };
                set.spawn_blocking(move || {
                    let pdf = render_pdf(&inv);
                    (inv, pdf)
                });
            }
            let Some(done) = set.join_next().await else {
                break;
            };
            let (inv, pdf) = match done {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "a PDF rendering task failed");
                    continue;
                }
            };
            let stored = match pdf {
                Ok(pdf) => self
                    .storage
                    .billing()
                    .store_pdf(&inv.id, &pdf, &document::sha256_hex(&pdf))
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            if let Err(e) = stored {
                tracing::warn!(invoice = ?inv.number, error = %e, "PDF not stored yet");
            }
        }
    }

    async fn dry_run_one(
        &self,
        spec: &CloseSpec,
        watermark: i64,
        now_ms: i64,
        histories: &Histories,
    ) -> Outcome {
        let store = self.storage.billing();
        let result = async {
            if let Some(c) = store
                .closes(&spec.period, Some(&spec.tenant_id))
                .await?
                .into_iter()
                .next()
            {
                return Ok(match store.live_invoice(c.id).await? {
                    Some(inv) => existing(&inv),
                    None => Outcome::AlreadyClosed,
                });
            }
            let last = store.last_close(&spec.tenant_id).await?;
            let close =
                match crate::storage::billing::plan_close(spec, last.as_ref(), watermark, now_ms) {
                    Ok(c) => c,
                    Err(reason) => return Ok(Outcome::Refused { reason }),
                };
            let draft = self.rate(&close, histories).await?;
            Ok::<_, CloseError>(if draft.is_invoiceable() {
                Outcome::WouldIssue { draft }
            } else {
                Outcome::NoInvoice
            })
        }
        .await;
        result.unwrap_or_else(|e| Outcome::Failed {
            error: e.to_string(),
        })
    }

    /// Rates one close (one aggregate statement), with the histories read
    /// for the run.
    async fn rate(&self, close: &CloseRow, histories: &Histories) -> Result<Draft, CloseError> {
        let history = histories
            .get(&close.tenant_id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        rate_close_with(self.storage, self.card, close, history).await
    }

    /// Brings one close to an issued invoice (or reports why not); the
    /// invoice when this call issued it.
    async fn invoice(
        &self,
        close: &CloseRow,
        now_ms: i64,
        histories: &Histories,
    ) -> Result<(Outcome, Option<InvoiceRow>), CloseError> {
        let store = self.storage.billing();
        if let Some(inv) = store.live_invoice(close.id).await?
            && inv.status != InvoiceStatus::Draft
        {
            return Ok((existing(&inv), None));
        }
        let draft = self.rate(close, histories).await?;
        if !draft.is_invoiceable() {
            return Ok((Outcome::NoInvoice, None));
        }
        let draft_json = serde_json::to_string(&draft)
            .map_err(|e| StorageError::Corrupt(format!("draft: {e}")))?;
        let id = match store
            .upsert_draft(&NewDraft {
                id: format!("inv_{}", uuid::Uuid::now_v7().simple()),
                tenant_id: close.tenant_id.clone(),
                close_id: close.id,
                period: close.period.clone(),
                draft: draft_json,
                total_micros: draft.total_micros,
                created_at_ms: now_ms,
            })
            .await?
        {
            DraftOutcome::Draft(id) => id,
            DraftOutcome::Issued(inv) => return Ok((existing(&inv), None)),
        };
        let schedule = self
            .config
            .webhooks
            .schedule_ms()
            .map_err(CloseError::Schedule)?;
        let first_delay = schedule.first().copied().unwrap_or(0);
        let build = |input: &FinalizeInput<'_>| -> Result<FinalDocs, String> {
            build_docs(self.card, self.config, self.signer, input, first_delay)
        };
        match store
            .finalize(
                &id,
                &series(&self.config.number_prefix, now_ms),
                now_ms,
                &build,
            )
            .await?
        {
            FinalizeOutcome::AlreadyIssued(inv) => Ok((existing(&inv), None)),
            FinalizeOutcome::Finalized {
                invoice,
                deliveries,
            } => Ok((
                Outcome::Issued {
                    number: invoice.number.clone().unwrap_or_default(),
                    total_micros: invoice.total_micros,
                    deliveries,
                },
                Some(invoice),
            )),
        }
    }
}

fn existing(inv: &InvoiceRow) -> Outcome {
    Outcome::Existing {
        number: inv.number.clone().unwrap_or_else(|| inv.id.clone()),
        total_micros: inv.total_micros,
        status: inv.status,
    }
}

/// Rates one close: its plan segments, one aggregate statement, lines.
pub async fn rate_close(
    storage: &dyn Storage,
    card: &PriceCard,
    close: &CloseRow,
) -> Result<Draft, CloseError> {
    let history = storage.billing().plan_history(&close.tenant_id).await?;
    rate_close_with(storage, card, close, &history).await
}

/// [`rate_close`] with the tenant's plan history at hand (a close reads
/// every history in one query).
pub async fn rate_close_with(
    storage: &dyn Storage,
    card: &PriceCard,
    close: &CloseRow,
    history: &[crate::storage::billing::PlanChange],
) -> Result<Draft, CloseError> {
    let store = storage.billing();
    let segs = rating::segments(history);
    let plan = rating::plan_query(close, &segs);
    let rows = store.rate(&plan.query(close)).await?;
    rating::draft(close, &segs, &rows, card).map_err(|e| {
        CloseError::Billing(BillingStoreError::Refused(format!(
            "rating {} for {}: {e}",
            close.period, close.tenant_id
        )))
    })
}

/// The documents of an invoice being finalized (runs inside the
/// finalization transaction).
fn build_docs(
    card: &PriceCard,
    config: &BillingConfig,
    signer: &dyn Signer,
    input: &FinalizeInput<'_>,
    first_delay_ms: i64,
) -> Result<FinalDocs, String> {
    let draft: Draft = serde_json::from_str(&input.invoice.draft).map_err(|e| e.to_string())?;
    let doc = InvoiceDocument::build(
        &draft,
        input.number,
        input.finalized_at_ms,
        &config.seller,
        input.tenant,
    );
    let canonical = doc.canonical().map_err(|e| e.to_string())?;
    let sha256 = document::sha256_hex(canonical.as_bytes());
    let envelope = document::sign(input.number, canonical.as_bytes(), signer)
        .map_err(|e| e.to_string())?
        .to_json();
    let wants_webhooks = card.plan(input.tenant.plan).has(Feature::Webhooks);
    let message = (wants_webhooks && input.endpoints > 0)
        .then(|| invoice_created(&doc, &sha256, input.finalized_at_ms, first_delay_ms));
    Ok(FinalDocs {
        document: canonical,
        sha256,
        envelope,
        message,
    })
}

/// The `invoice.created` message for an issued invoice.
pub fn invoice_created(
    doc: &InvoiceDocument,
    sha256: &str,
    at_ms: i64,
    first_delay_ms: i64,
) -> NewMessage {
    let payload = serde_json::json!({
        "type": INVOICE_CREATED,
        "timestamp": rfc3339(at_ms),
        "data": {
            "number": doc.number,
            "tenantId": doc.customer.tenant_id,
            "period": doc.period.label,
            "periodStart": doc.period.start,
            "periodEnd": doc.period.end,
            "issuedAt": doc.issued_at,
            "currency": doc.currency,
            "totalMicros": doc.total_micros,
            "sha256": sha256,
            "invoiceUrl": format!("/v1/invoices/{}", doc.number),
            "pdfUrl": format!("/v1/invoices/{}.pdf", doc.number),
        }
    });
    NewMessage {
        id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
        event_type: INVOICE_CREATED.to_owned(),
        payload: document::canonical_json(&payload),
        first_attempt_at_ms: at_ms.saturating_add(first_delay_ms),
    }
}

/// Renders an issued invoice's PDF from its document.
pub fn render_pdf(invoice: &InvoiceRow) -> Result<Vec<u8>, String> {
    let canonical = invoice
        .document
        .as_deref()
        .ok_or_else(|| "the invoice has no document (a draft)".to_owned())?;
    let doc = InvoiceDocument::parse_canonical(canonical.as_bytes()).map_err(|e| e.to_string())?;
    super::pdf::render(&doc, canonical.as_bytes()).map_err(|e| e.to_string())
}

/// Renders and stores an issued invoice's PDF; returns it.
pub async fn store_pdf(storage: &dyn Storage, invoice: &InvoiceRow) -> Result<Vec<u8>, String> {
    let pdf = render_pdf(invoice)?;
    storage
        .billing()
        .store_pdf(&invoice.id, &pdf, &document::sha256_hex(&pdf))
        .await
        .map_err(|e| e.to_string())?;
    Ok(pdf)
}
