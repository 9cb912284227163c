//! The Usage page: the signed-in tenant's metered usage in a calendar month
//! (UTC; the current one by default, `?period=YYYY-MM` for another), per
//! day as an SVG bar chart stacked by event, and the totals per event (the
//! same numbers as `GET /v1/usage` for that month). The tenant is the
//! session's, never a parameter. Billing (the plan's price card, the
//! projected amount, invoices) joins this page when it lands.

use super::chart::{self, BarChart};
use super::session::Session;
use super::{Area, Chrome, PortalError};
use crate::service::AppState;
use crate::service::api::{EVENTS, month_bounds};
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
    let Query(q) = query.map_err(|e| PortalError::BadRequest(e.body_text()))?;
    let (from, to) = month_bounds(state.clock.now_ms(), q.period.as_deref())
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
    let (py, pm) = month_of(from - 1);
    let (ny, nm) = month_of(to);
    super::html(&UsagePage {
        chrome: Chrome::new("Usage", Area::Usage, &session),
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
    })
}
