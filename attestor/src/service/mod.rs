//! The attestor's HTTP service (axum): the consumer API on TCP (optionally
//! TLS) and the runner daemon's signing endpoint on a Unix socket.
//!
//! Shape: [`App`] holds everything a request needs (config, storage, clock,
//! keyring, metrics, the metering handle, the auth cache and rate limiter);
//! handlers get it as [`AppState`]`(Arc<App>)`. Every handler error is an
//! [`AppError`](crate::http::AppError). Config is loaded once before [`App`]
//! exists; nothing reads files or the environment per request. The service
//! knows nothing of the portal, which sits above it (`crate::server` mounts
//! both).
//!
//! Modules: `api` (consumer endpoints and their wire types, one module a
//! resource), `audit` (auditor keys, engagement endpoints, the policy gate),
//! `billing` (invoices, webhook replay), `ops` (health, readiness, metrics),
//! `openapi` (the document and its route), `sign` (the signing socket),
//! `extract` (the shared extractors and JSON body parsing), `metered` (a
//! metered route's admission, usage commit and replay), `metering`
//! (exactly-once usage with group commit), `auth` (the extractors),
//! `verdicts` (the verdict cache). Below it: `crate::http` (the error type,
//! rate limiting), `crate::metrics`, `crate::clock`, `crate::api_key`.

use crate::clock;
use crate::config::Config;
use crate::http::ratelimit;
use crate::keyring::{Keyring, KeyringError};
use crate::metrics;
use crate::storage::Storage;
use axum::Router;
use cloister_attestor_core::keys::PublicKey;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

pub mod api;
pub mod audit;
pub mod auth;
pub mod billing;
pub mod extract;
pub mod metered;
pub mod metering;
pub mod openapi;
pub mod ops;
pub mod sign;
pub mod verdicts;

/// SHA-256 over `parts`, each framed by its length (u64, big-endian), so no
/// two different part lists hash alike: the verdict cache's key, the trusted
/// set's fingerprint and the stored request hash (whose format this fixes:
/// it is compared across restarts).
pub fn framed_sha256<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> [u8; 32] {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// Everything a request handler may use.
pub struct App {
    pub config: Config,
    pub storage: Arc<dyn Storage>,
    pub clock: Arc<dyn clock::Clock>,
    pub keyring: Arc<Keyring>,
    pub trusted: TrustedKeys,
    pub verdicts: verdicts::VerdictCache,
    pub metrics: Arc<metrics::Metrics>,
    pub meter: metering::Meter,
    pub auth_cache: auth::AuthCache,
    pub limiter: ratelimit::KeyLimiter,
    /// The policy manifest and evidence observations (`audit`).
    pub evidence: audit::EvidenceState,
    pub billing: Arc<crate::billing::BillingService>,
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
        let billing = Arc::new(billing::service(&config, storage.clone(), clock.clone()));
        let app = App {
            billing,
            auth_cache: auth::AuthCache::new(Duration::from_millis(config.auth.cache_ttl_ms)),
            limiter: ratelimit::KeyLimiter::new(
                config.rate_limit.per_second,
                config.rate_limit.burst,
            ),
            trusted: TrustedKeys::new(keyring.clone(), clock.clone()),
            verdicts: verdicts::VerdictCache::new(config.verify.cache_entries),
            config,
            storage,
            clock,
            keyring,
            metrics,
            meter,
            evidence: audit::EvidenceState::default(),
        };
        (Arc::new(app), task)
    }

    /// The idempotency window in milliseconds.
    pub fn idempotency_window_ms(&self) -> i64 {
        i64::from(self.config.metering.idempotency_window_hours) * 3_600_000
    }
}

/// The consumer API's routes (`crate::server` mounts the portal's beside
/// them).
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(api::routes())
        .merge(audit::routes())
        .merge(billing::routes())
        .merge(ops::routes())
        .merge(openapi::routes())
}

/// The keys trusted at one moment, with what the hot path needs precomputed.
#[derive(Debug)]
pub struct TrustedSet {
    pub keys: Vec<PublicKey>,
    /// SHA-256 over the sorted keyids: names this set in verdict-cache keys.
    pub fingerprint: [u8; 32],
    /// Changes whenever the set is rebuilt with other keys.
    pub generation: u64,
    /// The earliest not-after (Unix ms) among trusted rotated keys: the set
    /// changes at that instant.
    next_expiry_ms: Option<i64>,
    /// The keyring file the set was read from, as `stat` saw it.
    stamp: Option<FileStamp>,
}

impl TrustedSet {
    pub fn new(keys: Vec<PublicKey>, generation: u64, next_expiry_ms: Option<i64>) -> Self {
        let mut ids: Vec<&str> = keys.iter().map(|k| k.keyid()).collect();
        ids.sort_unstable();
        let fingerprint = framed_sha256(ids.iter().map(|id| id.as_bytes()));
        Self {
            keys,
            fingerprint,
            generation,
            next_expiry_ms,
            stamp: None,
        }
    }
}

/// Identity of the keyring file: it is replaced by rename on every change,
/// so inode, size and modification time together tell a change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

fn stamp(path: &std::path::Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        ino: m.ino(),
        len: m.len(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    })
}

/// The keyring's trusted public keys (active + rotated, not expired),
/// resolved once per change rather than per request: a request reads the
/// current [`TrustedSet`] from memory; at most once per
/// [`TrustedKeys::CHECK_EVERY`] the keyring file is `stat`ed and the set is
/// rebuilt only when the file changed (a rotation or import by the CLI) or
/// when a rotated key's not-after has passed on the service's clock (checked
/// on every request, so expiry is exact).
pub struct TrustedKeys {
    keyring: Arc<Keyring>,
    clock: Arc<dyn clock::Clock>,
    current: RwLock<Arc<TrustedSet>>,
    /// When the file was last `stat`ed (ms since `epoch`).
    checked_ms: AtomicU64,
    epoch: Instant,
    rebuild: Mutex<()>,
}

impl TrustedKeys {
    pub const CHECK_EVERY: Duration = Duration::from_millis(500);

    pub fn new(keyring: Arc<Keyring>, clock: Arc<dyn clock::Clock>) -> Self {
        Self {
            keyring,
            clock,
            current: RwLock::new(Arc::new(TrustedSet::new(Vec::new(), 0, Some(i64::MIN)))),
            checked_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            rebuild: Mutex::new(()),
        }
    }

    fn keyring_file(&self) -> std::path::PathBuf {
        self.keyring.dir().join("keyring.json")
    }

    /// The keys trusted now.
    pub fn get(&self) -> Result<Arc<TrustedSet>, KeyringError> {
        let set = self.current.read().expect("trusted keys lock").clone();
        let now_ms = self.clock.now_ms();
        let expired = set.next_expiry_ms.is_some_and(|t| now_ms >= t);
        let since = self.epoch.elapsed().as_millis() as u64;
        let due = since.saturating_sub(self.checked_ms.load(Ordering::Relaxed))
            >= Self::CHECK_EVERY.as_millis() as u64;
        if !expired && !due {
            return Ok(set);
        }
        let _one = self.rebuild.lock().expect("trusted keys rebuild lock");
        let set = self.current.read().expect("trusted keys lock").clone();
        let expired = set.next_expiry_ms.is_some_and(|t| now_ms >= t);
        let stamp = stamp(&self.keyring_file());
        self.checked_ms.store(since, Ordering::Relaxed);
        if !expired && set.stamp.is_some() && stamp == set.stamp {
            return Ok(set);
        }
        self.rebuild_with(&set, now_ms, stamp)
    }

    fn rebuild_with(
        &self,
        old: &TrustedSet,
        now_ms: i64,
        stamp: Option<FileStamp>,
    ) -> Result<Arc<TrustedSet>, KeyringError> {
        let now = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let entries = self.keyring.entries()?;
        let mut keys = Vec::new();
        let mut next_expiry_ms: Option<i64> = None;
        for e in entries.iter().filter(|e| e.trusted_at(now)) {
            keys.push(self.keyring.entry_public_key(e)?);
            if let Some(t) = e.not_after {
                let ms = i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
                next_expiry_ms = Some(next_expiry_ms.map_or(ms, |m| m.min(ms)));
            }
        }
        let mut set = TrustedSet::new(keys, old.generation, next_expiry_ms);
        if set.fingerprint != old.fingerprint || old.generation == 0 {
            set.generation = old.generation + 1;
        }
        set.stamp = stamp;
        let set = Arc::new(set);
        *self.current.write().expect("trusted keys lock") = set.clone();
        Ok(set)
    }
}
