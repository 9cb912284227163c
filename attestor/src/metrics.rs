//! Prometheus metrics (text exposition at `/metrics`): HTTP requests and
//! latency by route and status, verify outcomes by reason code, usage events
//! committed, storage commit latency and batch size, build info.
//!
//! Invariant: no label carries a tenant id, a key id or anything a caller
//! chooses freely; routes are the router's templates (unmatched paths share
//! one label), so the label sets stay small.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: &'static str,
    pub route: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerifyLabels {
    /// `verified` or `failed`.
    pub outcome: &'static str,
    /// The reason code, `none` when verified.
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    storage: &'static str,
}

// billing (issue 16): labels are fixed words, never tenant ids.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `delivered`, `retry`, `dead`, `gone` (410).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// `usage_cap_reached` or `feature_not_in_plan`.
    pub reason: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs … ~3.3 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

/// Every metric the service exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: HistogramFamily<HttpLabels>,
    pub verify_outcomes: Family<VerifyLabels, Counter>,
    pub usage_committed: Family<EventLabels, Counter>,
    pub usage_replayed: Family<EventLabels, Counter>,
    pub commit_duration: Histogram,
    pub commit_batch: Histogram,
    pub evidence: EvidenceMetrics,
    // billing (issue 16)
    pub webhook_attempts: Family<OutcomeLabels, Counter>,
    pub billing_refusals: Family<ReasonLabels, Counter>,
    pub billing_invoices: Family<StatusLabels, Gauge>,
    pub webhook_outbox: Family<StatusLabels, Gauge>,
    pub webhook_outbox_oldest_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub webhook_delivery_ratio: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl Metrics {
    pub fn new(storage_backend: &'static str) -> Self {
        let mut registry = Registry::with_prefix("cloister_attestor");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route template and status",
            http_requests.clone(),
        );
        let http_duration: HistogramFamily<HttpLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method, route template and status",
            http_duration.clone(),
        );
        let verify_outcomes = Family::<VerifyLabels, Counter>::default();
        registry.register(
            "verify_outcomes",
            "Verification verdicts by outcome and reason code",
            verify_outcomes.clone(),
        );
        let usage_committed = Family::<EventLabels, Counter>::default();
        registry.register(
            "usage_events_committed",
            "Usage events durably committed (counted for billing)",
            usage_committed.clone(),
        );
        let usage_replayed = Family::<EventLabels, Counter>::default();
        registry.register(
            "usage_events_replayed",
            "Requests answered from a stored result (same Idempotency-Key, not counted)",
            usage_replayed.clone(),
        );
        let commit_duration = latency_histogram();
        registry.register(
            "storage_commit_duration_seconds",
            "Latency of one durable usage-batch commit",
            commit_duration.clone(),
        );
        let commit_batch = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        registry.register(
            "storage_commit_batch_size",
            "Usage events per group commit",
            commit_batch.clone(),
        );
        // billing (issue 16)
        let webhook_attempts = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "webhook_attempts",
            "Webhook delivery attempts by outcome (delivered, retry, dead, gone)",
            webhook_attempts.clone(),
        );
        let billing_refusals = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "billing_refusals",
            "Requests refused by a plan's entitlements (not metered)",
            billing_refusals.clone(),
        );
        let billing_invoices = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "billing_invoices",
            "Invoices by status (draft: not issued yet, e.g. a failed finalization)",
            billing_invoices.clone(),
        );
        let webhook_outbox = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "webhook_outbox",
            "Webhook deliveries by state (pending, delivered, dead)",
            webhook_outbox.clone(),
        );
        let webhook_outbox_oldest_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "webhook_outbox_oldest_pending_seconds",
            "Age of the oldest pending webhook delivery (0 when none)",
            webhook_outbox_oldest_seconds.clone(),
        );
        let webhook_delivery_ratio = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "webhook_delivery_ratio",
            "Delivered over finished (delivered + dead) webhook deliveries",
            webhook_delivery_ratio.clone(),
        );
        registry.register(
            "build",
            "Build information",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                storage: storage_backend,
            }),
        );
        // The fixed series exist from the start at 0 (issue 20): ratios and
        // rates in the alert rules have a baseline before the first event.
        for outcome in ["delivered", "retry", "dead", "gone"] {
            let _ = webhook_attempts.get_or_create(&OutcomeLabels { outcome });
        }
        for status in ["draft", "finalized", "void"] {
            billing_invoices
                .get_or_create(&StatusLabels { status })
                .set(0);
        }
        for status in ["pending", "delivered", "dead"] {
            webhook_outbox
                .get_or_create(&StatusLabels { status })
                .set(0);
        }
        webhook_delivery_ratio.set(1.0);
        let evidence = EvidenceMetrics::new();
        Self {
            registry,
            evidence,
            http_requests,
            http_duration,
            verify_outcomes,
            usage_committed,
            usage_replayed,
            commit_duration,
            commit_batch,
            webhook_attempts,
            billing_refusals,
            billing_invoices,
            webhook_outbox,
            webhook_outbox_oldest_seconds,
            webhook_delivery_ratio,
        }
    }

    /// One webhook attempt's outcome.
    pub fn webhook_attempt(&self, outcome: &'static str) {
        self.webhook_attempts
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// A request refused by an entitlement.
    pub fn billing_refusal(&self, reason: &'static str) {
        self.billing_refusals
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// The billing gauges from storage counts.
    pub fn billing_stats(&self, s: &crate::storage::billing::BillingStats, now_ms: i64) {
        for (status, n) in [
            ("draft", s.invoices_draft),
            ("finalized", s.invoices_finalized),
            ("void", s.invoices_void),
        ] {
            self.billing_invoices
                .get_or_create(&StatusLabels { status })
                .set(n);
        }
        for (status, n) in [
            ("pending", s.outbox_pending),
            ("delivered", s.outbox_delivered),
            ("dead", s.outbox_dead),
        ] {
            self.webhook_outbox
                .get_or_create(&StatusLabels { status })
                .set(n);
        }
        let age = s
            .oldest_pending_ms
            .map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1000.0);
        self.webhook_outbox_oldest_seconds.set(age);
        let finished = s.outbox_delivered + s.outbox_dead;
        let ratio = if finished == 0 {
            1.0
        } else {
            s.outbox_delivered as f64 / finished as f64
        };
        self.webhook_delivery_ratio.set(ratio);
    }

    /// Records one finished HTTP request.
    pub fn observe_http(
        &self,
        method: &'static str,
        route: &'static str,
        status: u16,
        seconds: f64,
    ) {
        let labels = HttpLabels {
            method,
            route,
            status,
        };
        self.http_requests.get_or_create(&labels).inc();
        self.http_duration.get_or_create(&labels).observe(seconds);
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        use prometheus_client::encoding::text;
        let mut out = String::new();
        text::encode_registry(&mut out, &self.registry).expect("writing to a String cannot fail");
        text::encode_registry(&mut out, &self.evidence.registry)
            .expect("writing to a String cannot fail");
        text::encode_eof(&mut out).expect("writing to a String cannot fail");
        out
    }
}

// ---------------------------------------------------------------- evidence
// Evidence packs and signed policies (issue 18). Their own registry without
// the `cloister_attestor` prefix: the names are the product's
// (`cloister_pack_seconds`), whichever process builds the pack.

/// Pack build time and policy signature coverage. Packs are built by the
/// CLI (`audit open`, `pack procurement`) and recorded in the store; the
/// service observes every recorded pack once (so each attestor sharing a
/// PostgreSQL exports the same histogram: aggregate with `max`, not `sum`).
#[derive(Debug)]
pub struct EvidenceMetrics {
    registry: Registry,
    /// Seconds from the start of a pack's build to the archive and its
    /// signature, per recorded pack.
    pub pack_seconds: Histogram,
    /// Share (0..1) of the sandbox policies in use that a valid signed
    /// manifest lists.
    pub policy_coverage: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Distinct profile and seccomp-policy digests in recent provenance.
    pub policies_in_use: Gauge,
    /// How many of those the manifest signs.
    pub policies_signed: Gauge,
    /// Audit engagements not signed off (issue 20's business dashboard).
    pub engagements_open: Gauge,
    /// Open engagements past their auditor key's expiry.
    pub engagements_expired: Gauge,
    /// Engagements holding more notes than `MAX_NOTES` (the API refuses a
    /// third: nonzero means the limit was bypassed).
    pub engagements_over_note_limit: Gauge,
}

impl EvidenceMetrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        // 50 ms … ~14 min.
        let pack_seconds = Histogram::new(exponential_buckets(0.05, 2.0, 15));
        registry.register(
            "cloister_pack_seconds",
            "Time to build an evidence pack (sign-off or procurement), per recorded pack",
            pack_seconds.clone(),
        );
        let policy_coverage = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "cloister_policy_signature_coverage",
            "Share of the sandbox policies in use (recent provenance) listed in a valid signed policy manifest",
            policy_coverage.clone(),
        );
        let policies_in_use = Gauge::default();
        registry.register(
            "cloister_policies_in_use",
            "Distinct sandbox profile and seccomp policy digests in recent provenance",
            policies_in_use.clone(),
        );
        let policies_signed = Gauge::default();
        registry.register(
            "cloister_policies_signed",
            "Policies in use that the signed policy manifest lists",
            policies_signed.clone(),
        );
        let engagements_open = Gauge::default();
        registry.register(
            "cloister_audit_engagements_open",
            "Audit engagements not signed off",
            engagements_open.clone(),
        );
        let engagements_expired = Gauge::default();
        registry.register(
            "cloister_audit_engagements_expired",
            "Open audit engagements past their auditor key's expiry",
            engagements_expired.clone(),
        );
        let engagements_over_note_limit = Gauge::default();
        registry.register(
            "cloister_audit_engagements_over_note_limit",
            "Audit engagements with more notes than the limit of 2",
            engagements_over_note_limit.clone(),
        );
        Self {
            registry,
            pack_seconds,
            policy_coverage,
            policies_in_use,
            policies_signed,
            engagements_open,
            engagements_expired,
            engagements_over_note_limit,
        }
    }
}

/// The content type of [`Metrics::encode`]'s output (OpenMetrics text).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every route template the routers serve (a test keeps it complete).
pub const ROUTES: &[&str] = &[
    "/v1/verify",
    "/v1/keys",
    "/v1/attestations",
    "/v1/usage",
    "/v1/engagements",
    "/v1/engagements/{id}",
    "/v1/engagements/{id}/attestations",
    "/v1/engagements/{id}/notes",
    "/v1/engagements/{id}/pack",
    "/v1/invoices",
    "/v1/invoices/{file}",
    "/v1/webhooks/replay",
    "/v1/openapi.json",
    "/v1/sign",
    "/healthz",
    "/readyz",
    "/metrics",
    // trust portal (issue 17)
    "/portal",
    "/portal/",
    "/portal/repo",
    "/portal/releases/{id}",
    "/portal/releases/{id}/intoto.jsonl",
    "/portal/releases/{id}/sigstore.json",
    "/portal/verify",
    "/portal/usage",
    "/portal/signin",
    "/portal/signout",
    "/portal/static/portal.css",
    "/portal/invoices/{file}",
    "/portal/audit",
    "/portal/audit/{id}",
    "/portal/audit/{id}/pack",
    "/portal/audit/{id}/notes",
];

/// The metric label of a matched route template (see [`ROUTES`]).
pub fn route_label(template: Option<&str>) -> &'static str {
    match template {
        None => "unmatched",
        Some(t) => ROUTES.iter().find(|r| **r == t).copied().unwrap_or("other"),
    }
}

/// The metric label of a method: the standard ones by name, `OTHER` else
/// (a client cannot grow the label set with made-up methods).
pub fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
}
