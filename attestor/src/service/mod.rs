//! The attestor's HTTP service (axum): the consumer API on TCP (optionally
//! TLS) and the runner daemon's signing endpoint on a Unix socket.
//!
//! Shape: [`App`] holds everything a request needs (config, storage, clock,
//! keyring, metrics, the metering handle, the auth cache and rate limiter);
//! handlers get it as [`AppState`]`(Arc<App>)`. Every handler error is an
//! [`AppError`]. Config is loaded once before [`App`] exists; nothing reads
//! files or the environment per request.
//!
//! Modules: `api` (consumer endpoints and their wire types), `ops` (health,
//! readiness, metrics), `sign` (the signing socket), `auth`, `ratelimit`,
//! `metering` (exactly-once usage with group commit), `metrics`, `openapi`,
//! `server` (listeners, TLS, graceful shutdown, logging), `clock`, `error`.

use crate::config::Config;
use crate::keyring::{Keyring, KeyringError};
use crate::storage::Storage;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use cloister_attestor_core::keys::PublicKey;
use std::ops::Deref;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

pub mod api;
pub mod auth;
pub mod clock;
pub mod error;
pub mod metering;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod ratelimit;
pub mod server;
pub mod sign;

pub use error::AppError;

/// Everything a request handler may use.
pub struct App {
    pub config: Config,
    pub storage: Arc<dyn Storage>,
    pub clock: Arc<dyn clock::Clock>,
    pub keyring: Arc<Keyring>,
    pub trusted: TrustedKeys,
    pub metrics: Arc<metrics::Metrics>,
    pub meter: metering::Meter,
    pub auth_cache: auth::AuthCache,
    pub limiter: ratelimit::KeyLimiter,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("storage", &self.storage.backend())
            .finish_non_exhaustive()
    }
}

/// The axum state: a cheap handle on the shared [`App`].
#[derive(Debug, Clone)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

impl App {
    /// Builds the app and starts its metering task (ended when the app is
    /// dropped; await the returned handle to wait for the last commit).
    pub fn new(
        config: Config,
        storage: Arc<dyn Storage>,
        keyring: Arc<Keyring>,
        clock: Arc<dyn clock::Clock>,
    ) -> (Arc<App>, tokio::task::JoinHandle<()>) {
        let metrics = Arc::new(metrics::Metrics::new(storage.backend()));
        let window_ms = i64::from(config.metering.idempotency_window_hours) * 3_600_000;
        let (meter, task) = metering::Meter::start(
            storage.clone(),
            metrics.clone(),
            clock.clone(),
            window_ms,
            config.metering.max_batch,
        );
        let app = App {
            auth_cache: auth::AuthCache::new(Duration::from_millis(config.auth.cache_ttl_ms)),
            limiter: ratelimit::KeyLimiter::new(
                config.rate_limit.per_second,
                config.rate_limit.burst,
            ),
            trusted: TrustedKeys::new(keyring.clone(), clock.clone()),
            config,
            storage,
            clock,
            keyring,
            metrics,
            meter,
        };
        (Arc::new(app), task)
    }

    /// The idempotency window in milliseconds.
    pub fn idempotency_window_ms(&self) -> i64 {
        i64::from(self.config.metering.idempotency_window_hours) * 3_600_000
    }
}

/// The consumer API router (TCP listener).
pub fn consumer_router(state: AppState) -> Router {
    Router::new()
        .merge(api::routes())
        .merge(ops::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// The signing router (Unix socket, runner daemon only).
pub fn signing_router(state: AppState) -> Router {
    Router::new()
        .merge(sign::routes())
        .route("/healthz", axum::routing::get(ops::healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// The keyring's trusted public keys (active + rotated, not expired), read
/// from disk at most once per [`TrustedKeys::REFRESH`] rather than per
/// request; a rotation or expiry takes effect within that time.
pub struct TrustedKeys {
    keyring: Arc<Keyring>,
    clock: Arc<dyn clock::Clock>,
    cache: RwLock<Option<(Instant, Arc<Vec<PublicKey>>)>>,
}

impl TrustedKeys {
    pub const REFRESH: Duration = Duration::from_secs(1);

    pub fn new(keyring: Arc<Keyring>, clock: Arc<dyn clock::Clock>) -> Self {
        Self {
            keyring,
            clock,
            cache: RwLock::new(None),
        }
    }

    /// The keys trusted now.
    pub fn get(&self) -> Result<Arc<Vec<PublicKey>>, KeyringError> {
        if let Some((at, keys)) = self.cache.read().expect("trusted keys lock").as_ref()
            && at.elapsed() < Self::REFRESH
        {
            return Ok(keys.clone());
        }
        let now = time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(self.clock.now_ms()) * 1_000_000,
        )
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let keys = Arc::new(self.keyring.trusted_keys(now)?);
        *self.cache.write().expect("trusted keys lock") = Some((Instant::now(), keys.clone()));
        Ok(keys)
    }
}

async fn not_found() -> AppError {
    AppError::NotFound
}

async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}

/// Metrics and a debug log line per request. Logs carry method, route
/// template, status and latency only: never headers, bodies or keys.
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let resp = next.run(req).await;
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    state
        .metrics
        .observe_http(method.as_str(), &route, status, elapsed.as_secs_f64());
    tracing::debug!(
        method = %method,
        route = %route,
        status,
        latency_us = elapsed.as_micros() as u64,
        "request"
    );
    resp
}
