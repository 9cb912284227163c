//! The Usage & billing page: the signed-in tenant's metered usage in a
//! calendar month (UTC; the current one by default, `?period=YYYY-MM` for
//! another), per day as an SVG bar chart stacked by event, and the totals
//! per event (the same numbers as `GET /v1/usage` for that month); then
//! billing: the price card of the tenant's plan, the open period rated so
//! far (`billing::Billing::projection`: the rating code `billing close`
//! runs, with `--early --dry-run` semantics) and the tenant's issued
//! invoices with their JSON and PDF downloads (`portal::invoices`). The
//! tenant is the session's, never a parameter; an auditor has no such page.
//! Money is shown as the billing code formats it (`money::format_usd` of
//! integer micro-USD).

use super::chart::{self, BarChart};
use super::session::Session;
use super::{Area, Chrome, PortalError};
use crate::billing::BillingError;
use crate::billing::money::format_usd;
use crate::clock::dates::month_bounds;
use crate::service::AppState;
use crate::service::api::usage::EVENTS;
use crate::storage::billing::InvoiceStatus;
use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use std::collections::BTreeMap;

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    period: Option<String>,
}

/// A day's row of the table under the chart.
#[derive(Debug)]
pub struct DayRow {
    pub day: String,
    pub counts: Vec<i64>,
}

#[derive(Template)]
#[template(path = "portal/usage.html")]
struct UsagePage {
    chrome: Chrome,
    /// `December 2026`.
    period_name: String,
    prev_href: String,
    next_href: String,
    events: Vec<String>,
    totals: Vec<(String, i64)>,
    chart: BarChart,
    days: Vec<DayRow>,
    any: bool,
    billing: BillingView,
}

/// One event's price on the tenant's plan.
#[derive(Debug)]
pub struct PriceRow {
    pub event: String,
    pub unit_price: String,
    pub included_units: i64,
    /// `None`: no cap.
    pub hard_cap_units: Option<i64>,
}

/// One line of the projected invoice.
#[derive(Debug)]
pub struct LineRow {
    pub description: String,
    pub quantity: i64,
    pub included_units: i64,
    pub billable_quantity: i64,
    pub unit_price: String,
    pub amount: String,
}

/// The open period rated so far.
#[derive(Debug)]
pub struct ProjectionView {
    /// `December 2026`.
    pub period_name: String,
    pub from: String,
    pub to: String,
    pub lines: Vec<LineRow>,
    pub total: String,
    pub total_micros: i64,
}

/// One issued invoice.
#[derive(Debug)]
pub struct InvoiceRow {
    pub number: String,
    pub period: String,
    /// `Issued` or `Void`.
    pub status: &'static str,
    pub status_class: &'static str,
    pub total: String,
    pub issued_at: String,
    pub void_reason: Option<String>,
    pub sha256: String,
    pub json_href: String,
    pub pdf_action: String,
}

/// The billing half of the page.
#[derive(Debug)]
pub struct BillingView {
    pub plan: String,
    pub billed: bool,
    pub monthly_minimum: Option<String>,
    pub prices: Vec<PriceRow>,
    pub features: Vec<&'static str>,
    /// `None`: this month is already closed (an early close); later usage
    /// goes onto the next invoice.
    pub projection: Option<ProjectionView>,
    /// Newest first.
    pub invoices: Vec<InvoiceRow>,
}

/// `$1,234.56` (or `$0.0025` for a unit price below a cent).
pub fn usd(micros: i64) -> String {
    match micros.checked_neg() {
        Some(neg) if micros < 0 => format!("-${}", format_usd(neg)),
        _ => format!("${}", format_usd(micros)),
    }
}

fn billing_error(e: BillingError) -> PortalError {
    match e {
        BillingError::Storage(e) => e.into(),
        other => PortalError::Internal(other.to_string()),
    }
}

fn period_name(period: &str) -> String {
    crate::billing::period::Period::parse(period)
        .ok()
        .map(|p| {
            let (from, _) = p.bounds();
            let (y, m) = month_of(from);
            format!("{m} {y}")
        })
        .unwrap_or_else(|| period.to_owned())
}

/// The tenant's price card, projection and invoices.
pub async fn billing_view(
    state: &AppState,
    tenant_id: &str,
    now_ms: i64,
) -> Result<BillingView, PortalError> {
    let api = &state.billing.api;
    let (plan, card) = api.plan_card(tenant_id).await.map_err(billing_error)?;
    let projection = api
        .projection(tenant_id, now_ms)
        .await
        .map_err(billing_error)?
        .map(|p| ProjectionView {
            period_name: period_name(&p.period),
            from: super::display_time(p.start_ms),
            to: super::display_time(p.end_ms),
            lines: p
                .draft
                .lines
                .iter()
                .map(|l| LineRow {
                    description: l.description.clone(),
                    quantity: l.quantity,
                    included_units: l.included_units,
                    billable_quantity: l.billable_quantity,
                    unit_price: usd(l.unit_price_micros),
                    amount: usd(l.amount_micros),
                })
                .collect(),
            total: usd(p.draft.total_micros),
            total_micros: p.draft.total_micros,
        });
    let invoices = api
        .invoices(tenant_id)
        .await
        .map_err(billing_error)?
        .into_iter()
        .rev()
        .map(|i| {
            let void = i.status == InvoiceStatus::Void;
            InvoiceRow {
                json_href: format!("/portal/invoices/{}.json", super::urlencode(&i.number)),
                pdf_action: format!("/portal/invoices/{}.pdf", super::urlencode(&i.number)),
                status: if void { "Void" } else { "Issued" },
                status_class: if void { "chip-none" } else { "chip-l3" },
                total: usd(i.total_micros),
                period: period_name(&i.period),
                issued_at: i.issued_at.replace('T', " ").replace('Z', " UTC"),
                void_reason: i.void_reason,
                sha256: i.sha256,
                number: i.number,
            }
        })
        .collect();
    Ok(BillingView {
        plan: plan.as_str().to_owned(),
        billed: card.billed,
        monthly_minimum: (card.monthly_minimum_micros > 0)
            .then(|| usd(card.monthly_minimum_micros)),
        prices: card
            .events
            .iter()
            .map(|(event, p)| PriceRow {
                event: event.clone(),
                unit_price: usd(p.unit_price_micros),
                included_units: p.included_units,
                hard_cap_units: p.hard_cap_units,
            })
            .collect(),
        features: card.features.iter().map(|f| f.as_str()).collect(),
        projection,
        invoices,
    })
}

fn month_of(ms: i64) -> (i32, time::Month) {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    (t.year(), t.month())
}

fn period_param(year: i32, month: time::Month) -> String {
    format!("{year:04}-{:02}", u8::from(month))
}

/// `GET /portal/usage[?period=YYYY-MM]`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    query: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Response, PortalError> {
    if session.principal.is_auditor() {
        return Err(PortalError::Forbidden(
            "auditors have no usage or billing: an auditor tenant is never billed".into(),
        ));
    }
    let Query(q) = query.map_err(|e| PortalError::BadRequest(e.body_text()))?;
    let now = state.clock.now_ms();
    let (from, to) = month_bounds(now, q.period.as_deref())
        .ok_or_else(|| PortalError::BadRequest("period must be a month written YYYY-MM".into()))?;
    let rows = state
        .storage
        .usage_by_day(session.principal.tenant_id(), from, to)
        .await?;

    // The known events always, then any other event seen, in name order.
    let mut events: Vec<String> = EVENTS.iter().map(|e| e.to_string()).collect();
    for r in &rows {
        if !events.contains(&r.event) {
            events.push(r.event.clone());
        }
    }
    events[EVENTS.len()..].sort();
    let ndays = ((to - from) / DAY_MS) as usize;
    let mut values = vec![vec![0i64; events.len()]; ndays];
    let mut totals: BTreeMap<&str, i64> = BTreeMap::new();
    for r in &rows {
        let e = events.iter().position(|e| *e == r.event).unwrap_or(0);
        if let Some(day) = usize::try_from(r.day).ok().and_then(|d| values.get_mut(d)) {
            day[e] += r.units;
        }
        *totals.entry(r.event.as_str()).or_default() += r.units;
    }
    let (year, month) = month_of(from);
    let short = |d: usize| format!("{} {}", &month.to_string()[..3], d + 1);
    let labels: Vec<String> = (0..ndays).map(short).collect();
    let chart = chart::stacked(&labels, &events, &values, 5);
    let days = values
        .iter()
        .enumerate()
        .filter(|(_, v)| v.iter().any(|n| *n > 0))
        .map(|(d, v)| DayRow {
            day: short(d),
            counts: v.clone(),
        })
        .collect();
    let billing = billing_view(&state, session.principal.tenant_id(), now).await?;
    let (py, pm) = month_of(from - 1);
    let (ny, nm) = month_of(to);
    super::html(&UsagePage {
        chrome: Chrome::new("Usage & billing", Area::Usage, &session),
        period_name: format!("{month} {year}"),
        prev_href: format!("/portal/usage?period={}", period_param(py, pm)),
        next_href: format!("/portal/usage?period={}", period_param(ny, nm)),
        totals: events
            .iter()
            .map(|e| (e.clone(), totals.get(e.as_str()).copied().unwrap_or(0)))
            .collect(),
        any: !rows.is_empty(),
        events,
        chart,
        days,
        billing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_read_as_dollars() {
        assert_eq!(usd(0), "$0.00");
        assert_eq!(usd(10_000), "$0.01");
        assert_eq!(usd(2_500), "$0.0025");
        assert_eq!(usd(1_234_560_000), "$1,234.56");
        assert_eq!(usd(-10_000), "-$0.01");
        assert_eq!(period_name("2026-11"), "November 2026");
    }
}
