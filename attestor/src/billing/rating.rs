//! Rating: a close's usage turned into invoice lines. The database does the
//! counting ([`BillingStore::rate`]: one aggregate statement per tenant and
//! close, index range sums); this module only prepares the statement's
//! ranges and turns its few result rows into lines with prices from the
//! card. Pure: no I/O, no clock.
//!
//! The rules (cookbook/billing.md):
//! - The plan history cuts time into segments; usage is rated at the plan
//!   in force when each event happened: one line per (segment, event).
//! - Usage lines cover `[start, end)` of the close. Included units of a
//!   plan are per calendar month, prorated by the time the segment covers
//!   in the invoice's period relative to the month's length, rounded down.
//! - A plan's monthly minimum, prorated the same way, tops its usage lines
//!   up with a `minimum` line.
//! - Late lines: events dated before the period and billed by no earlier
//!   invoice (marked late after a close, or older than a tenant's first
//!   close), at their own plan's price, with no included units.
//! - Each line is rounded once, to cents, half away from zero
//!   ([`super::money::round_to_cents`]); the total is the sum of lines.
//! - Plans that are not billed produce no lines.

use super::card::PriceCard;
use super::money::{self, MoneyError};
use super::period::{Period, rfc3339};
use crate::storage::billing::{CloseRow, PlanChange, RatedPart, RatedRow, RatingQuery, TimeRange};
use serde::{Deserialize, Serialize};

/// Errors rating a close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RatingError {
    #[error(transparent)]
    Money(#[from] MoneyError),
    #[error("plan {0:?} in the tenant's history is not on the price card")]
    UnknownPlan(String),
    #[error("usage of event {event:?} on plan {plan} has no price on the card")]
    Unpriced { event: String, plan: String },
    #[error("{0}")]
    Period(#[from] super::period::PeriodError),
    #[error("inconsistent rating result: {0}")]
    Inconsistent(String),
}

/// A line's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineKind {
    Usage,
    Minimum,
    Late,
}

/// One invoice line. Amounts in micro-USD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Line {
    pub kind: LineKind,
    pub description: String,
    pub plan: String,
    /// The metered event (none for a minimum line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// What the line covers: `[from, to)` (usage and minimum lines: the
    /// plan's time in the period; late lines: first to last event).
    pub from_ms: i64,
    pub to_ms: i64,
    /// Units used.
    pub quantity: i64,
    /// Units not charged (included in the plan).
    pub included_units: i64,
    /// `quantity - included_units`, at least 0.
    pub billable_quantity: i64,
    pub unit_price_micros: i64,
    /// `billable_quantity × unit_price_micros` (minimum lines: the top-up),
    /// before rounding.
    pub exact_micros: i64,
    /// Rounded to cents, half away from zero.
    pub amount_micros: i64,
}

/// A rated close: what becomes the invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Draft {
    pub tenant_id: String,
    /// `YYYY-MM`.
    pub period: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub early: bool,
    pub lines: Vec<Line>,
    pub total_micros: i64,
}

/// A plan segment: `[from, to)` on `plan`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub plan: String,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// Segments from a plan history (oldest first): the first covers all time
/// before the second, the last all time after; consecutive entries with the
/// same plan are merged.
pub fn segments(history: &[PlanChange]) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    for change in history {
        if let Some(last) = out.last_mut() {
            if last.plan == change.plan {
                continue;
            }
            last.to_ms = change.effective_at_ms;
            if last.from_ms >= last.to_ms {
                out.pop();
            }
        }
        out.push(Segment {
            plan: change.plan.clone(),
            from_ms: if out.is_empty() {
                i64::MIN
            } else {
                change.effective_at_ms
            },
            to_ms: i64::MAX,
        });
    }
    out
}

/// The ranges of one close's rating statement. Tags: `2k` = segment k's
/// time in `[start, end)` (usage), `2k + 1` = segment k's time before
/// `start` that no earlier close covered (a tenant's first close only).
#[derive(Debug, Clone)]
pub struct Plan {
    pub ranges: Vec<TimeRange>,
    pub segments: Vec<TimeRange>,
}

/// Ranges and segments for `close`.
pub fn plan_query(close: &CloseRow, segs: &[Segment]) -> Plan {
    let lo = close.prev_end_ms.unwrap_or(i64::MIN);
    let mut ranges = Vec::new();
    for (k, s) in segs.iter().enumerate() {
        let k = k as i64;
        let (a, b) = (s.from_ms.max(close.start_ms), s.to_ms.min(close.end_ms));
        if a < b {
            ranges.push(TimeRange {
                tag: 2 * k,
                from_ms: a,
                to_ms: b,
            });
        }
        let (a, b) = (s.from_ms.max(lo), s.to_ms.min(close.start_ms));
        if a < b {
            ranges.push(TimeRange {
                tag: 2 * k + 1,
                from_ms: a,
                to_ms: b,
            });
        }
    }
    let segments = segs
        .iter()
        .enumerate()
        .map(|(k, s)| TimeRange {
            tag: k as i64,
            from_ms: s.from_ms,
            to_ms: s.to_ms,
        })
        .collect();
    Plan { ranges, segments }
}

impl Plan {
    /// The storage query for this plan.
    pub fn query<'a>(&'a self, close: &'a CloseRow) -> RatingQuery<'a> {
        RatingQuery {
            tenant_id: &close.tenant_id,
            watermark: close.watermark,
            prev_watermark: close.prev_watermark,
            ranges: &self.ranges,
            segments: &self.segments,
        }
    }
}

/// Turns the statement's rows into a draft.
pub fn draft(
    close: &CloseRow,
    segs: &[Segment],
    rows: &[RatedRow],
    card: &PriceCard,
) -> Result<Draft, RatingError> {
    let period = Period::parse(&close.period)?;
    let month_len = period.len_ms();
    let sums = range_sums(rows);
    // Usage lines and minimums, per segment in time order.
    let mut lines = usage_lines(close, segs, &sums, card, month_len)?;
    // Late lines: events before this period that no earlier invoice billed,
    // per segment and event, in time order.
    lines.extend(late_lines(close, segs, rows, &sums, card)?);
    let total_micros = money::sum(lines.iter().map(|l| l.amount_micros))?;
    Ok(Draft {
        tenant_id: close.tenant_id.clone(),
        period: close.period.clone(),
        start_ms: close.start_ms,
        end_ms: close.end_ms,
        early: close.early,
        lines,
        total_micros,
    })
}

/// Units, first and last event per (range tag, event).
type Sums<'a> = std::collections::BTreeMap<(i64, &'a str), (i64, i64, i64)>;

/// Units (and first, last event) per (range tag, event), less what belongs
/// to a later close.
fn range_sums(rows: &[RatedRow]) -> Sums<'_> {
    let mut sums: Sums = Default::default();
    for r in rows {
        let e = sums
            .entry((r.tag, r.event.as_str()))
            .or_insert((0, i64::MAX, i64::MIN));
        match r.part {
            RatedPart::Range => {
                e.0 += r.units;
                e.1 = e.1.min(r.first_ms);
                e.2 = e.2.max(r.last_ms);
            }
            RatedPart::After => e.0 -= r.units,
            RatedPart::Late => {}
        }
    }
    sums
}

/// Usage lines and minimums, per segment in time order.
fn usage_lines(
    close: &CloseRow,
    segs: &[Segment],
    sums: &Sums<'_>,
    card: &PriceCard,
    month_len: i64,
) -> Result<Vec<Line>, RatingError> {
    let mut lines = Vec::new();
    for (k, seg) in segs.iter().enumerate() {
        let plan = card
            .plan_named(&seg.plan)
            .ok_or_else(|| RatingError::UnknownPlan(seg.plan.clone()))?;
        let (a, b) = (seg.from_ms.max(close.start_ms), seg.to_ms.min(close.end_ms));
        let tag = 2 * k as i64;
        let mut seg_lines = Vec::new();
        for (&(t, event), &(units, _, _)) in sums.range((tag, "")..) {
            if t != tag {
                break;
            }
            if units < 0 {
                return Err(RatingError::Inconsistent(format!(
                    "negative usage of {event} in segment {k}"
                )));
            }
            if units == 0 || !plan.billed {
                continue;
            }
            let price = plan.price(event).ok_or_else(|| RatingError::Unpriced {
                event: event.to_owned(),
                plan: seg.plan.clone(),
            })?;
            let included = money::prorate_down(price.included_units, b - a, month_len)?;
            let billable = (units - included).max(0);
            let exact = money::line_amount(billable, price.unit_price_micros)?;
            seg_lines.push(Line {
                kind: LineKind::Usage,
                description: format!("{event} ({} plan)", seg.plan),
                plan: seg.plan.clone(),
                event: Some(event.to_owned()),
                from_ms: a,
                to_ms: b,
                quantity: units,
                included_units: included.min(units),
                billable_quantity: billable,
                unit_price_micros: price.unit_price_micros,
                exact_micros: exact,
                amount_micros: money::round_to_cents(exact)?,
            });
        }
        if plan.billed && plan.monthly_minimum_micros > 0 && a < b {
            let minimum = money::prorate_down(plan.monthly_minimum_micros, b - a, month_len)?;
            let used = money::sum(seg_lines.iter().map(|l| l.amount_micros))?;
            if used < minimum {
                let exact = minimum - used;
                let amount = money::round_to_cents(exact)?;
                if amount > 0 {
                    seg_lines.push(Line {
                        kind: LineKind::Minimum,
                        description: format!(
                            "Monthly minimum ({} plan, {} prorated), less usage",
                            seg.plan,
                            money::format_usd(money::round_to_cents(minimum)?)
                        ),
                        plan: seg.plan.clone(),
                        event: None,
                        from_ms: a,
                        to_ms: b,
                        quantity: 1,
                        included_units: 0,
                        billable_quantity: 1,
                        unit_price_micros: exact,
                        exact_micros: exact,
                        amount_micros: amount,
                    });
                }
            }
        }
        lines.extend(seg_lines);
    }
    Ok(lines)
}

/// Late lines: events before this period that no earlier invoice billed,
/// per segment and event, in time order.
fn late_lines(
    close: &CloseRow,
    segs: &[Segment],
    rows: &[RatedRow],
    sums: &Sums<'_>,
    card: &PriceCard,
) -> Result<Vec<Line>, RatingError> {
    let mut lines = Vec::new();
    let mut late: std::collections::BTreeMap<(i64, &str), (i64, i64, i64, i64)> =
        Default::default();
    for (&(tag, event), &(units, first, last)) in sums {
        if tag % 2 == 1 && units > 0 {
            // A first close's usage from before its period.
            let e = late
                .entry((tag / 2, event))
                .or_insert((0, 0, i64::MAX, i64::MIN));
            e.0 += units;
            e.2 = e.2.min(first);
            e.3 = e.3.max(last);
        }
    }
    for r in rows.iter().filter(|r| r.part == RatedPart::Late) {
        let e = late
            .entry((r.tag, r.event.as_str()))
            .or_insert((0, 0, i64::MAX, i64::MIN));
        e.0 += r.units;
        e.1 += r.events;
        e.2 = e.2.min(r.first_ms);
        e.3 = e.3.max(r.last_ms);
    }
    for (&(k, event), &(units, _events, first, last)) in &late {
        let seg = segs
            .get(k as usize)
            .ok_or_else(|| RatingError::Inconsistent(format!("segment {k}")))?;
        let plan = card
            .plan_named(&seg.plan)
            .ok_or_else(|| RatingError::UnknownPlan(seg.plan.clone()))?;
        if !plan.billed || units == 0 {
            continue;
        }
        let price = plan.price(event).ok_or_else(|| RatingError::Unpriced {
            event: event.to_owned(),
            plan: seg.plan.clone(),
        })?;
        let exact = money::line_amount(units, price.unit_price_micros)?;
        let (from, to) = if first == i64::MIN || first > last {
            (close.start_ms, close.start_ms)
        } else {
            (first, last.saturating_add(1))
        };
        lines.push(Line {
            kind: LineKind::Late,
            description: format!(
                "Late usage: {event} ({} plan), dated before {}",
                seg.plan,
                rfc3339(close.start_ms)
            ),
            plan: seg.plan.clone(),
            event: Some(event.to_owned()),
            from_ms: from,
            to_ms: to,
            quantity: units,
            included_units: 0,
            billable_quantity: units,
            unit_price_micros: price.unit_price_micros,
            exact_micros: exact,
            amount_micros: money::round_to_cents(exact)?,
        });
    }
    Ok(lines)
}

impl Draft {
    /// Whether this draft becomes an invoice: a line with an amount or a
    /// minimum, or any usage (a zero-priced usage line is still shown).
    pub fn is_invoiceable(&self) -> bool {
        !self.lines.is_empty()
    }
}
