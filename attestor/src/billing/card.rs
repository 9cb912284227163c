//! The price card: per plan, what each metered event costs (integer
//! micro-USD per unit), the monthly included units and minimum, the hard
//! cap, the rate limit and the features the plan allows. It is data: the
//! shipped card is `price-card.toml` beside this file (embedded), and the
//! attestor's config replaces whole plans under `[billing.plans.NAME]`.
//! The resolved [`PriceCard`] covers every [`Plan`] and is validated once at
//! start; a card that misses a plan or prices an event that is not metered
//! is refused.

use crate::http::ratelimit::RateLimit;
use crate::storage::{EVENT_DOWNLOAD, EVENT_VERIFY, Plan};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The card shipped with the attestor.
pub const SHIPPED: &str = include_str!("price-card.toml");

/// Every event the service meters (and so the card prices).
pub const METERED_EVENTS: [&str; 2] = [EVENT_VERIFY, EVENT_DOWNLOAD];

/// Errors in a price card.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    #[error("the shipped price card does not parse: {0}")]
    Shipped(String),
    #[error("price card: {0}")]
    Invalid(String),
}

/// A feature a plan may allow, checked where the feature is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// `invoice.created` webhooks (endpoints can be added; messages are sent).
    Webhooks,
    /// `portal.download` events: stored attestations and invoice PDFs.
    PortalDownloads,
    /// Audit engagements (evidence packs for auditors).
    AuditEngagements,
}

impl Feature {
    pub fn as_str(self) -> &'static str {
        match self {
            Feature::Webhooks => "webhooks",
            Feature::PortalDownloads => "portal_downloads",
            Feature::AuditEngagements => "audit_engagements",
        }
    }
}

/// The price of one metered event on one plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventPrice {
    /// Micro-USD per unit.
    pub unit_price_micros: i64,
    /// Units per calendar month that are not charged (prorated when the
    /// plan covers part of an invoice's period).
    #[serde(default)]
    pub included_units: i64,
    /// Most units per calendar month; a request beyond it is refused with
    /// 429 `usage_cap_reached` and not metered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard_cap_units: Option<i64>,
}

/// One plan of the card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanCard {
    /// `false`: usage on this plan is never invoiced (e.g. auditors).
    #[serde(default = "yes")]
    pub billed: bool,
    /// The least a full month on this plan costs, in micro-USD (0: none).
    #[serde(default)]
    pub monthly_minimum_micros: i64,
    /// Per-key rate limit on this plan; absent: the config's `rate_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    #[serde(default)]
    pub features: BTreeSet<Feature>,
    /// Per metered event name.
    #[serde(default)]
    pub events: BTreeMap<String, EventPrice>,
}

fn yes() -> bool {
    true
}

impl PlanCard {
    pub fn has(&self, f: Feature) -> bool {
        self.features.contains(&f)
    }

    pub fn price(&self, event: &str) -> Option<&EventPrice> {
        self.events.get(event)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CardFile {
    plans: BTreeMap<String, PlanCard>,
}

/// A validated card covering every plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PriceCard {
    plans: BTreeMap<String, PlanCard>,
}

impl PriceCard {
    /// The shipped card with `overrides` (whole plans) applied, validated.
    pub fn resolve(overrides: Option<&BTreeMap<String, PlanCard>>) -> Result<Self, CardError> {
        let shipped: CardFile =
            toml::from_str(SHIPPED).map_err(|e| CardError::Shipped(e.to_string()))?;
        let mut plans = shipped.plans;
        if let Some(o) = overrides {
            for (name, plan) in o {
                plans.insert(name.clone(), plan.clone());
            }
        }
        let card = Self { plans };
        card.validate()?;
        Ok(card)
    }

    /// The card for `plan` (every plan has one once validated).
    pub fn plan(&self, plan: Plan) -> &PlanCard {
        self.plans
            .get(plan.as_str())
            .expect("a validated price card covers every plan")
    }

    /// The card for a plan named in stored data.
    pub fn plan_named(&self, name: &str) -> Option<&PlanCard> {
        self.plans.get(name)
    }

    /// Plan names and their cards.
    pub fn plans(&self) -> impl Iterator<Item = (&str, &PlanCard)> {
        self.plans.iter().map(|(k, v)| (k.as_str(), v))
    }

    fn validate(&self) -> Result<(), CardError> {
        let bad = |m: String| Err(CardError::Invalid(m));
        let known: Vec<&str> = Plan::ALL.iter().map(|p| p.as_str()).collect();
        for p in &known {
            if !self.plans.contains_key(*p) {
                return bad(format!("plan {p} is missing"));
            }
        }
        for (name, plan) in &self.plans {
            if !known.contains(&name.as_str()) {
                return bad(format!(
                    "unknown plan {name:?} (plans: {})",
                    known.join(", ")
                ));
            }
            if plan.billed && Plan::parse(name).is_ok_and(|p| !p.billed()) {
                return bad(format!(
                    "{name}: this plan is never billed (billed = false)"
                ));
            }
            if plan.monthly_minimum_micros < 0 {
                return bad(format!(
                    "{name}: monthly_minimum_micros must not be negative"
                ));
            }
            if let Some(r) = &plan.rate_limit
                && (r.per_second == 0 || r.burst == 0)
            {
                return bad(format!(
                    "{name}: rate_limit.per_second and burst must be at least 1"
                ));
            }
            for (event, price) in &plan.events {
                if !METERED_EVENTS.contains(&event.as_str()) {
                    return bad(format!(
                        "{name}: unknown event {event:?} (metered: {})",
                        METERED_EVENTS.join(", ")
                    ));
                }
                if price.unit_price_micros < 0 || price.included_units < 0 {
                    return bad(format!(
                        "{name}.{event}: prices and included units must not be negative"
                    ));
                }
                if price.hard_cap_units.is_some_and(|c| c < 1) {
                    return bad(format!("{name}.{event}: hard_cap_units must be at least 1"));
                }
            }
            if plan.billed {
                for event in METERED_EVENTS {
                    if !plan.events.contains_key(event) {
                        return bad(format!("{name}: no price for {event}"));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_card_has_the_issue_prices() {
        let c = PriceCard::resolve(None).unwrap();
        let v = |p| c.plan(p).price(EVENT_VERIFY).unwrap().unit_price_micros;
        assert_eq!(v(Plan::Starter), 10_000);
        assert_eq!(v(Plan::Pro), 5_000);
        assert_eq!(v(Plan::Enterprise), 2_500);
        for p in [Plan::Starter, Plan::Pro, Plan::Enterprise] {
            assert_eq!(
                c.plan(p).price(EVENT_DOWNLOAD).unwrap().unit_price_micros,
                0
            );
            assert!(c.plan(p).billed);
        }
        assert!(c.plan(Plan::Pro).has(Feature::Webhooks));
        assert!(!c.plan(Plan::Starter).has(Feature::Webhooks));
        // auditor tenants (issue 18) have a card, free and never billed
        let auditor = c.plan(Plan::Auditor);
        assert!(!auditor.billed && auditor.features.is_empty());
        assert_eq!(auditor.price(EVENT_VERIFY).unwrap().unit_price_micros, 0);
    }

    #[test]
    fn overrides_replace_whole_plans_and_bad_cards_are_refused() {
        let over: BTreeMap<String, PlanCard> = toml::from_str(
            "[Pro]\nbilled = false\n[Pro.events.\"attestation.verify\"]\nunit_price_micros = 1\n",
        )
        .unwrap();
        let c = PriceCard::resolve(Some(&over)).unwrap();
        assert!(!c.plan(Plan::Pro).billed);
        assert!(c.plan(Plan::Pro).features.is_empty());
        let refused = |t: &str, needle: &str| {
            let over: BTreeMap<String, PlanCard> = toml::from_str(t).unwrap();
            let e = PriceCard::resolve(Some(&over)).unwrap_err().to_string();
            assert!(e.contains(needle), "{t}: {e}");
        };
        refused("[Gold]\n", "unknown plan \"Gold\"");
        refused(
            "[Auditor]\nbilled = true\n[Auditor.events.\"attestation.verify\"]\nunit_price_micros = 0\n[Auditor.events.\"portal.download\"]\nunit_price_micros = 0\n",
            "Auditor: this plan is never billed",
        );
        refused(
            "[Pro.events.\"attestation.verify\"]\nunit_price_micros = 1\n",
            "no price for portal.download",
        );
        refused(
            "[Pro.events.\"attestation.verfy\"]\nunit_price_micros = 1\n",
            "unknown event",
        );
        refused(
            "[Pro]\nmonthly_minimum_micros = -1\n",
            "must not be negative",
        );
        refused(
            "[Pro]\nbilled = false\n[Pro.events.\"attestation.verify\"]\nunit_price_micros = -5\n",
            "must not be negative",
        );
        refused(
            "[Pro]\nbilled = false\n[Pro.events.\"attestation.verify\"]\nunit_price_micros = 5\nhard_cap_units = 0\n",
            "hard_cap_units",
        );
        refused(
            "[Pro]\nbilled = false\nrate_limit = { per_second = 0, burst = 1 }\n",
            "rate_limit",
        );
        // Floats are not money: refused by the types.
        assert!(
            toml::from_str::<BTreeMap<String, PlanCard>>(
                "[Pro.events.\"attestation.verify\"]\nunit_price_micros = 0.5\n"
            )
            .is_err()
        );
    }
}
