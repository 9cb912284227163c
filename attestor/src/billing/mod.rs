//! Billing: metered usage rated into gapless, signed invoices (JSON + PDF)
//! and `invoice.created` webhooks.
//!
//! Modules: `money` (integer micro-USD, the one rounding rule), `card` (the
//! price card and entitlements as data), `config` (`[billing]`), `period`
//! (calendar months, UTC), `rating` (close → lines; the counting is one
//! aggregate statement in storage), `close` (the `billing close`
//! procedure), `document` (canonical invoice JSON, its DSSE signature),
//! `pdf` (the PDF/A-3b rendering, reproducible), `entitlements` (rate
//! limits, hard caps and features per plan, checked in the service),
//! `webhooks` (Standard Webhooks signing, the delivery worker).
//!
//! [`Billing`] is the typed API other parts of the attestor (the portal)
//! call: a tenant's usage, its plan's card, the projected amount of its open
//! period and its invoices.
//!
//! Architecture invariants: money is `i64` micro-USD everywhere (no float
//! is ever parsed or computed); rounding happens only in
//! `money::round_to_cents`, once per line; an issued invoice is never
//! rewritten (storage refuses it); documents are functions of stored data,
//! with no clock or randomness inside them.

use crate::storage::billing::{InvoiceFilter, InvoiceRow, InvoiceStatus};
use crate::storage::{Plan, Storage, UsageCounts};
use serde::Serialize;
use std::sync::Arc;

pub mod card;
pub mod close;
pub mod config;
pub mod document;
pub mod entitlements;
pub mod money;
pub mod pdf;
pub mod period;
pub mod rating;
pub mod webhooks;

use card::{PlanCard, PriceCard};
use config::BillingConfig;
use period::Period;

/// Errors of the billing API.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Store(#[from] crate::storage::billing::BillingStoreError),
    #[error(transparent)]
    Close(#[from] close::CloseError),
    #[error("no tenant {0:?}")]
    NoTenant(String),
    #[error("{0}")]
    Document(String),
}

/// An invoice as listed (no documents).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceSummary {
    pub number: String,
    /// `YYYY-MM`.
    pub period: String,
    /// `finalized` or `void`.
    #[schema(value_type = String)]
    pub status: InvoiceStatus,
    pub currency: String,
    pub total_micros: i64,
    /// RFC 3339.
    pub issued_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voided_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub void_reason: Option<String>,
    /// Hex sha256 of the invoice JSON (what the signature covers).
    pub sha256: String,
}

impl InvoiceSummary {
    /// The summary of an issued invoice (`None` for a draft).
    pub fn of(r: &InvoiceRow) -> Option<Self> {
        Some(Self {
            number: r.number.clone()?,
            period: r.period.clone(),
            status: r.status,
            currency: "USD".to_owned(),
            total_micros: r.total_micros,
            issued_at: period::rfc3339(r.finalized_at_ms?),
            voided_at: r.voided_at_ms.map(period::rfc3339),
            void_reason: r.void_reason.clone(),
            sha256: r.sha256.clone()?,
        })
    }
}

/// What the open period would be invoiced so far.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Projection {
    /// `YYYY-MM`.
    pub period: String,
    pub start_ms: i64,
    /// Now.
    pub end_ms: i64,
    pub draft: rating::Draft,
}

/// The typed billing API (for the portal and the service).
pub struct Billing {
    storage: Arc<dyn Storage>,
    card: PriceCard,
    config: BillingConfig,
}

impl std::fmt::Debug for Billing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Billing").finish_non_exhaustive()
    }
}

impl Billing {
    pub fn new(storage: Arc<dyn Storage>, card: PriceCard, config: BillingConfig) -> Self {
        Self {
            storage,
            card,
            config,
        }
    }

    pub fn card(&self) -> &PriceCard {
        &self.card
    }

    pub fn config(&self) -> &BillingConfig {
        &self.config
    }

    /// The tenant's plan and its card.
    pub async fn plan_card(&self, tenant_id: &str) -> Result<(Plan, PlanCard), BillingError> {
        let t = self
            .storage
            .find_tenant(tenant_id)
            .await?
            .ok_or_else(|| BillingError::NoTenant(tenant_id.to_owned()))?;
        Ok((t.plan, self.card.plan(t.plan).clone()))
    }

    /// Units per event of a tenant in a calendar month.
    pub async fn usage(&self, tenant_id: &str, month: Period) -> Result<UsageCounts, BillingError> {
        let (from, to) = month.bounds();
        let mut counts: UsageCounts = card::METERED_EVENTS
            .iter()
            .map(|e| (e.to_string(), 0))
            .collect();
        counts.extend(self.storage.usage_counts(tenant_id, from, to).await?);
        Ok(counts)
    }

    /// The open period rated so far (as `billing close --early --dry-run`
    /// would at `now_ms`); `None` when this month is already closed.
    pub async fn projection(
        &self,
        tenant_id: &str,
        now_ms: i64,
    ) -> Result<Option<Projection>, BillingError> {
        let month = Period::of_ms(now_ms).map_err(|e| BillingError::Document(e.to_string()))?;
        let store = self.storage.billing();
        let last = store.last_close(tenant_id).await?;
        let watermark = store.usage_watermark().await?;
        let spec = crate::storage::billing::CloseSpec {
            tenant_id: tenant_id.to_owned(),
            period: month.to_string(),
            month_start_ms: month.start_ms(),
            end_ms: now_ms,
            early: true,
        };
        let Ok(close) =
            crate::storage::billing::plan_close(&spec, last.as_ref(), watermark, now_ms)
        else {
            return Ok(None);
        };
        let draft = close::rate_close(self.storage.as_ref(), &self.card, &close).await?;
        Ok(Some(Projection {
            period: month.to_string(),
            start_ms: close.start_ms,
            end_ms: now_ms,
            draft,
        }))
    }

    /// The tenant's issued invoices (finalized and void), oldest first.
    pub async fn invoices(&self, tenant_id: &str) -> Result<Vec<InvoiceSummary>, BillingError> {
        let rows = self
            .storage
            .billing()
            .invoices(&InvoiceFilter {
                tenant_id: Some(tenant_id),
                ..InvoiceFilter::default()
            })
            .await?;
        Ok(rows.iter().filter_map(InvoiceSummary::of).collect())
    }

    /// The tenant's issued invoice `number` (another tenant's is `None`).
    pub async fn invoice(
        &self,
        tenant_id: &str,
        number: &str,
    ) -> Result<Option<InvoiceRow>, BillingError> {
        Ok(self
            .storage
            .billing()
            .invoice_by_number(number)
            .await?
            .filter(|r| r.tenant_id == tenant_id && r.status != InvoiceStatus::Draft))
    }

    /// The PDF of an issued invoice: stored, or rendered now from its JSON
    /// (and stored: the same bytes every time).
    pub async fn pdf(&self, invoice: &InvoiceRow) -> Result<Vec<u8>, BillingError> {
        if let Some(pdf) = self.storage.billing().pdf(&invoice.id).await? {
            return Ok(pdf);
        }
        close::store_pdf(self.storage.as_ref(), invoice)
            .await
            .map_err(BillingError::Document)
    }
}

/// What the service holds for billing: the typed API, the entitlement
/// checks, and the handle that wakes the delivery worker.
#[derive(Debug)]
pub struct BillingService {
    pub api: Billing,
    pub entitlements: entitlements::Entitlements,
    pub wake: Arc<tokio::sync::Notify>,
}
