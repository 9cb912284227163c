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
        registry.register(
            "build",
            "Build information",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                storage: storage_backend,
            }),
        );
        Self {
            registry,
            http_requests,
            http_duration,
            verify_outcomes,
            usage_committed,
            usage_replayed,
            commit_duration,
            commit_batch,
        }
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
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Every route template the routers serve (a test keeps it complete).
pub const ROUTES: &[&str] = &[
    "/v1/verify",
    "/v1/keys",
    "/v1/attestations",
    "/v1/usage",
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
