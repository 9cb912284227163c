//! Billing on both storage backends: rating (table-driven, to the
//! micro-USD), golden invoices (JSON + PDF), immutability in storage,
//! gapless numbering under concurrent closers (processes) and kill -9,
//! PDFs read by external tools, webhooks verified by the Standard Webhooks
//! reference library in a real receiver, entitlements, the HTTP routes, the
//! CLIs' bad input, file modes.

#![allow(dead_code)]

use cloister_attestor::billing::card::PriceCard;
use cloister_attestor::billing::close::{CloseOptions, CloseReport, Closer, Outcome};
use cloister_attestor::billing::config::BillingConfig;
use cloister_attestor::billing::period::Period;
use cloister_attestor::storage::{
    EVENT_DOWNLOAD, EVENT_VERIFY, Plan, Storage, StoredResponse, Tenant, UsageKey, UsageWrite,
};
use cloister_attestor_core::keys::{Algorithm, KeyPair};
use std::sync::OnceLock;

mod entitlements;
mod golden;
mod http;
mod immutable;
mod numbering;
mod pdf;
mod rating;
mod webhooks;

/// Unix ms of an RFC 3339 time.
pub fn ms(s: &str) -> i64 {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{s}: {e}"));
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub const V: &str = EVENT_VERIFY;
pub const D: &str = EVENT_DOWNLOAD;

/// Creates a tenant with a fixed id.
pub async fn tenant(s: &dyn Storage, id: &str, plan: Plan, created: &str) -> Tenant {
    let t = Tenant {
        id: id.to_owned(),
        name: id.trim_start_matches("tn_").to_owned(),
        plan,
        created_at_ms: ms(created),
    };
    s.create_tenant(&t).await.unwrap();
    t
}

/// Commits `n` events of `event` for `tenant` at `at` (plus i ms each).
pub async fn usage(s: &dyn Storage, tenant: &str, event: &'static str, n: usize, at: &str) {
    usage_at_ms(s, tenant, event, n, ms(at)).await
}

pub async fn usage_at_ms(s: &dyn Storage, tenant: &str, event: &'static str, n: usize, at: i64) {
    let mut left = n;
    let mut i = 0;
    while left > 0 {
        let take = left.min(1000);
        let batch: Vec<UsageWrite> = (0..take)
            .map(|_| {
                i += 1;
                UsageWrite {
                    tenant_id: tenant.to_owned(),
                    event,
                    units: 1,
                    key: UsageKey::Generated(uuid::Uuid::now_v7().to_string()),
                    request_hash: "h".into(),
                    at_ms: at + i as i64,
                    response: StoredResponse {
                        status: 200,
                        body: bytes::Bytes::new(),
                    },
                }
            })
            .collect();
        s.commit_usage(&batch, 0).await.unwrap();
        left -= take;
    }
}

/// One key for every test in this binary (generation is not free).
pub fn signer() -> &'static KeyPair {
    static K: OnceLock<KeyPair> = OnceLock::new();
    K.get_or_init(|| KeyPair::generate(Algorithm::EcdsaP256).unwrap())
}

/// A billing config with plan overrides given as TOML (`[Pro] …`).
pub fn config_with(plans_toml: &str) -> BillingConfig {
    let mut c = BillingConfig::default();
    if !plans_toml.is_empty() {
        c.plans = Some(toml::from_str(plans_toml).unwrap());
    }
    c.seller.name = "Cloister Test Seller Ltd".into();
    c.seller.address = vec!["1 Build Street".into(), "Hermetic City".into()];
    c.seller.email = Some("billing@example.test".into());
    c
}

/// Closes `period` at `now` (RFC 3339) with `config`.
pub async fn close_at(
    s: &dyn Storage,
    config: &BillingConfig,
    period: &str,
    tenant: Option<&str>,
    now: &str,
    early: bool,
) -> CloseReport {
    let card: PriceCard = config.validate().unwrap();
    let closer = Closer {
        storage: s,
        card: &card,
        config,
        signer: signer(),
    };
    closer
        .run(
            &CloseOptions {
                period: Period::parse(period).unwrap(),
                tenant: tenant.map(str::to_owned),
                dry_run: false,
                early,
            },
            ms(now),
            |_, _| {},
        )
        .await
        .unwrap()
}

/// The one tenant's outcome in a report.
pub fn outcome<'a>(r: &'a CloseReport, tenant: &str) -> &'a Outcome {
    &r.tenants
        .iter()
        .find(|t| t.tenant_id == tenant)
        .unwrap_or_else(|| panic!("{tenant} not in the report: {r:?}"))
        .outcome
}

/// The number of an issued outcome.
pub fn issued(o: &Outcome) -> String {
    match o {
        Outcome::Issued { number, .. } | Outcome::Existing { number, .. } => number.clone(),
        other => panic!("not issued: {other:?}"),
    }
}

/// The interpreter with standardwebhooks and pypdf (CI: 60-billing.sh).
pub fn billing_python() -> String {
    std::env::var("CLOISTER_BILLING_PYTHON").unwrap_or_else(|_| {
        panic!(
            "CLOISTER_BILLING_PYTHON is not set: the billing tests need standardwebhooks and pypdf \
             (source .ci/setup.d/60-billing.sh as root)"
        )
    })
}
