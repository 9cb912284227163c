//! The `[billing]` section of the attestor's config: the seller shown on
//! invoices, the invoice number prefix, price-card overrides (whole plans,
//! see `card`) and the webhook delivery settings. Validated once at start
//! with the rest of the config.

use super::card::{PlanCard, PriceCard};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `[billing]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BillingConfig {
    /// Invoice numbers are `PREFIX-YYYY-NNNNNN` (gapless per prefix and
    /// year of issue): 1–16 upper-case letters or digits.
    pub number_prefix: String,
    pub seller: Seller,
    /// Plans that replace the shipped card's (whole plans).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plans: Option<BTreeMap<String, PlanCard>>,
    pub webhooks: WebhooksConfig,
}

/// Who issues the invoices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Seller {
    pub name: String,
    /// Address lines.
    pub address: Vec<String>,
    pub email: Option<String>,
    pub tax_id: Option<String>,
}

/// `[billing.webhooks]`: the delivery worker inside `serve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Run the delivery worker in this attestor (several attestors on one
    /// PostgreSQL may all run it: each message has one claimant at a time).
    pub enabled: bool,
    /// Delay before each attempt: `0s` (at once), `5s`, `5m`, `30m`, `2h`,
    /// … (units `ms`, `s`, `m`, `h`, `d`). After the last attempt fails the
    /// message is dead-lettered.
    pub retry_schedule: Vec<String>,
    /// One attempt's time limit (connect, send, response head).
    pub timeout_ms: u64,
    /// Deliveries in flight at once per attestor.
    pub concurrency: usize,
    /// How often the outbox is polled when idle.
    pub poll_interval_ms: u64,
    /// The longest `Retry-After` honoured (a receiver asking for more waits
    /// this long).
    pub max_retry_after_ms: u64,
}

impl Default for BillingConfig {
    fn default() -> Self {
        Self {
            number_prefix: "CLO".to_owned(),
            seller: Seller::default(),
            plans: None,
            webhooks: WebhooksConfig::default(),
        }
    }
}

impl Default for Seller {
    fn default() -> Self {
        Self {
            name: "Cloister operator".to_owned(),
            address: Vec::new(),
            email: None,
            tax_id: None,
        }
    }
}

/// Svix's schedule: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
pub const SVIX_SCHEDULE: [&str; 8] = ["0s", "5s", "5m", "30m", "2h", "5h", "10h", "10h"];

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            retry_schedule: SVIX_SCHEDULE.iter().map(|s| s.to_string()).collect(),
            timeout_ms: 15_000,
            concurrency: 128,
            poll_interval_ms: 1_000,
            max_retry_after_ms: 24 * 3_600_000,
        }
    }
}

/// Parses `500ms`, `5s`, `5m`, `2h`, `1d` (and `0`) into milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    if s == "0" {
        return Some(0);
    }
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().ok()?;
    let mult = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

impl WebhooksConfig {
    /// The schedule in milliseconds (validated).
    pub fn schedule_ms(&self) -> Result<Vec<i64>, String> {
        if self.retry_schedule.is_empty() || self.retry_schedule.len() > 32 {
            return Err("billing.webhooks.retry_schedule must have 1 to 32 entries".into());
        }
        self.retry_schedule
            .iter()
            .map(|s| {
                parse_duration_ms(s).ok_or_else(|| {
                    format!(
                        "billing.webhooks.retry_schedule: {s:?} is not a duration (e.g. 0s, 5s, 5m, 2h)"
                    )
                })
            })
            .collect()
    }
}

impl BillingConfig {
    /// Checks everything and resolves the price card.
    pub fn validate(&self) -> Result<PriceCard, String> {
        let p = &self.number_prefix;
        if p.is_empty()
            || p.len() > 16
            || !p
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            return Err(
                "billing.number_prefix must be 1 to 16 upper-case letters or digits".into(),
            );
        }
        if self.seller.name.trim().is_empty() {
            return Err("billing.seller.name must not be empty".into());
        }
        self.webhooks.schedule_ms()?;
        let w = &self.webhooks;
        if !(100..=600_000).contains(&w.timeout_ms) {
            return Err("billing.webhooks.timeout_ms must be between 100 and 600000".into());
        }
        if !(1..=1024).contains(&w.concurrency) {
            return Err("billing.webhooks.concurrency must be between 1 and 1024".into());
        }
        if !(10..=3_600_000).contains(&w.poll_interval_ms) {
            return Err("billing.webhooks.poll_interval_ms must be between 10 and 3600000".into());
        }
        PriceCard::resolve(self.plans.as_ref()).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("0"), Some(0));
        assert_eq!(parse_duration_ms("0s"), Some(0));
        assert_eq!(parse_duration_ms("250ms"), Some(250));
        assert_eq!(parse_duration_ms("5m"), Some(300_000));
        assert_eq!(parse_duration_ms("10h"), Some(36_000_000));
        assert_eq!(parse_duration_ms("1d"), Some(86_400_000));
        assert_eq!(parse_duration_ms("5"), None);
        assert_eq!(parse_duration_ms("s"), None);
        assert_eq!(parse_duration_ms("-5s"), None);
        assert_eq!(parse_duration_ms("5 parsecs"), None);
    }

    #[test]
    fn defaults_validate_and_follow_svix() {
        let c = BillingConfig::default();
        c.validate().unwrap();
        assert_eq!(
            c.webhooks.schedule_ms().unwrap(),
            vec![
                0, 5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000
            ]
        );
        let mut bad = c.clone();
        bad.number_prefix = "clo".into();
        assert!(bad.validate().unwrap_err().contains("number_prefix"));
        let mut bad = c.clone();
        bad.webhooks.retry_schedule = vec!["soon".into()];
        assert!(bad.validate().unwrap_err().contains("retry_schedule"));
    }
}
