//! The attestor's configuration: a TOML file (optional), then environment
//! overrides (`CLOISTER_ATTESTOR_*`), then command-line flags, validated once
//! at start. With no file and no variables the defaults describe a complete
//! embedded attestor: SQLite and keys in the state dir, plain HTTP on
//! loopback, the signing socket beside the database.
//!
//! Loading is the only place that reads the environment; the service gets a
//! finished, validated [`Config`] and never looks anything up per request.

use cloister_attestor_core::keys::Algorithm;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// `[rate_limit]`, defined beside the limiter it configures.
pub use crate::http::ratelimit::RateLimit;
/// Default state directory (keys, embedded database, signing socket).
pub use crate::keyring::DEFAULT_STATE_DIR;
pub use evidence::{AuditConfig, PolicyConfig};
pub use portal::PortalConfig;

mod evidence;
mod portal;
/// Default consumer API address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8450";
/// Upper bound for `limits.max_body_bytes`: a provenance bundle is kilobytes.
pub const MAX_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// Errors while loading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid value for {name}: {message}")]
    Env { name: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration. Field names are the TOML keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Keys, the embedded database and the signing socket live here.
    pub state_dir: PathBuf,
    /// `postgres://…` for a shared PostgreSQL, `sqlite://PATH` for another
    /// SQLite file; unset means `<state_dir>/attestor.db`.
    pub database_url: Option<String>,
    /// The consumer API's TCP address.
    pub listen: SocketAddr,
    /// The runner daemon's signing socket; unset means `<state_dir>/sign.sock`.
    pub sign_socket: Option<PathBuf>,
    /// Group given to the signing socket (the runner daemon's group): a name
    /// in `/etc/group` or a numeric gid (`cloister_nss`); the socket's mode
    /// is 0660.
    pub sign_socket_group: Option<String>,
    /// Algorithm of the signing key generated on first use (`ecdsa-p256`
    /// or `ed25519`, as `Algorithm` serializes).
    pub key_algorithm: Algorithm,
    /// Read the keyring's passphrase (encrypted private keys; a key
    /// generated on first use is then encrypted with it) from this file (one
    /// trailing newline dropped).
    pub key_passphrase_file: Option<PathBuf>,
    /// Read the keyring's passphrase from this environment variable (its
    /// name; the passphrase itself never appears in the configuration).
    pub key_passphrase_env: Option<String>,
    /// Serve the consumer API over TLS with this certificate chain and key.
    pub tls: Option<TlsConfig>,
    pub limits: Limits,
    pub rate_limit: RateLimit,
    pub metering: Metering,
    pub auth: Auth,
    pub verify: Verify,
    pub log: Log,
    /// Signed sandbox policies (evidence packs, the policy gate).
    pub policy: PolicyConfig,
    /// Audit engagements.
    pub audit: AuditConfig,
    /// Price card overrides, invoice numbering and seller, webhooks.
    pub billing: crate::billing::config::BillingConfig,
    /// The trust portal (`/portal/`).
    pub portal: PortalConfig,
}

/// PEM files for the consumer listener.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Request bodies larger than this are refused with 413: a number of
    /// bytes or a size (`"64K"`, `"1MiB"`; `cloister_size`, the runner's
    /// size syntax).
    #[serde(deserialize_with = "size_key")]
    pub max_body_bytes: usize,
}

/// A size config key (`cloister_size::deserialize`) that must fit a `usize`.
fn size_key<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = cloister_size::deserialize(d)?;
    usize::try_from(n).map_err(|_| serde::de::Error::custom(format!("{n} bytes is too large")))
}

/// The same for an environment variable.
fn size_env(name: &str, value: &str) -> Result<usize, ConfigError> {
    cloister_size::parse_size(value)
        .map_err(|e| e.to_string())
        .and_then(|n| usize::try_from(n).map_err(|_| format!("{n} bytes is too large")))
        .map_err(|message| ConfigError::Env {
            name: name.to_owned(),
            message,
        })
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Metering {
    /// How long an Idempotency-Key replays its stored result.
    pub idempotency_window_hours: u32,
    /// Most usage events committed in one transaction (group commit).
    pub max_batch: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// How long a checked API key is remembered in memory; a revocation made
    /// by another process takes effect within this time. 0 disables the cache.
    pub cache_ttl_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Verify {
    /// Verdicts remembered for identical (provenance bytes, request, trusted
    /// keys); 0 disables the cache.
    pub cache_entries: usize,
}

impl Default for Verify {
    fn default() -> Self {
        Self {
            cache_entries: 4096,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `cloister_attestor=debug`.
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            database_url: None,
            listen: DEFAULT_LISTEN
                .parse()
                .expect("default listen address parses"),
            sign_socket: None,
            sign_socket_group: None,
            key_algorithm: Algorithm::EcdsaP256,
            key_passphrase_file: None,
            key_passphrase_env: None,
            tls: None,
            limits: Limits::default(),
            rate_limit: RateLimit::default(),
            metering: Metering::default(),
            auth: Auth::default(),
            verify: Verify::default(),
            log: Log::default(),
            policy: Default::default(),
            audit: Default::default(),
            billing: crate::billing::config::BillingConfig::default(),
            portal: PortalConfig::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
        }
    }
}

impl Default for Metering {
    fn default() -> Self {
        Self {
            idempotency_window_hours: 24,
            max_batch: 2048,
        }
    }
}

impl Default for Auth {
    fn default() -> Self {
        Self { cache_ttl_ms: 1000 }
    }
}

impl Default for Log {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// Values given on the command line; they win over the file and the environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub listen: Option<SocketAddr>,
    /// `--passphrase-file` / `--passphrase-env`: either replaces both
    /// configured sources.
    pub key_passphrase_file: Option<PathBuf>,
    pub key_passphrase_env: Option<String>,
}

/// Flags shared by every subcommand that opens the state (clap).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct StateArgs {
    /// Config file (TOML); default: $CLOISTER_ATTESTOR_CONFIG, else built-in defaults.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// State directory (keys, embedded database, signing socket);
    /// default: $CLOISTER_ATTESTOR_STATE_DIR, else /var/lib/cloister/attestor.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Storage URL: postgres://… or sqlite://PATH; default: <state-dir>/attestor.db.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

impl StateArgs {
    /// These flags as overrides (no `--listen`).
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config: self.config.clone(),
            state_dir: self.state_dir.clone(),
            database_url: self.database_url.clone(),
            ..Overrides::default()
        }
    }
}

/// The environment variable naming the config file when `--config` is absent.
pub const ENV_CONFIG: &str = "CLOISTER_ATTESTOR_CONFIG";

impl Config {
    /// Loads file (if any) → environment → flags, then validates.
    pub fn load(flags: &Overrides) -> Result<Self, ConfigError> {
        Self::load_with(flags, |name| std::env::var(name).ok())
    }

    /// [`Config::load`] with an explicit environment, for tests.
    pub fn load_with(
        flags: &Overrides,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let file = flags
            .config
            .clone()
            .or_else(|| env(ENV_CONFIG).map(PathBuf::from));
        let mut config = match file {
            Some(path) => Self::from_file(&path)?,
            None => Self::default(),
        };
        config.apply_env(&env)?;
        if let Some(dir) = &flags.state_dir {
            config.state_dir = dir.clone();
        }
        if let Some(url) = &flags.database_url {
            config.database_url = Some(url.clone());
        }
        if let Some(listen) = flags.listen {
            config.listen = listen;
        }
        if flags.key_passphrase_file.is_some() || flags.key_passphrase_env.is_some() {
            config.key_passphrase_file = flags.key_passphrase_file.clone();
            config.key_passphrase_env = flags.key_passphrase_env.clone();
        }
        config.validate()?;
        Ok(config)
    }

    /// Parses a TOML file (unknown keys are errors).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parsed<T: std::str::FromStr>(name: &str, value: String) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            value.parse().map_err(|e: T::Err| ConfigError::Env {
                name: name.to_owned(),
                message: e.to_string(),
            })
        }
        let var = |suffix: &str| {
            let name = format!("CLOISTER_ATTESTOR_{suffix}");
            env(&name).filter(|v| !v.is_empty()).map(|v| (name, v))
        };
        if let Some((_, v)) = var("STATE_DIR") {
            self.state_dir = PathBuf::from(v);
        }
        if let Some((_, v)) = var("DATABASE_URL") {
            self.database_url = Some(v);
        }
        if let Some((n, v)) = var("LISTEN") {
            self.listen = parsed(&n, v)?;
        }
        if let Some((_, v)) = var("SIGN_SOCKET") {
            self.sign_socket = Some(PathBuf::from(v));
        }
        if let Some((n, v)) = var("KEY_ALGORITHM") {
            self.key_algorithm = v.parse().map_err(|_| ConfigError::Env {
                name: n,
                message: "expected ecdsa-p256 or ed25519".into(),
            })?;
        }
        match (var("KEY_PASSPHRASE_FILE"), var("KEY_PASSPHRASE_ENV")) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid(
                    "set CLOISTER_ATTESTOR_KEY_PASSPHRASE_FILE or CLOISTER_ATTESTOR_KEY_PASSPHRASE_ENV, not both"
                        .into(),
                ));
            }
            (Some((_, file)), None) => {
                self.key_passphrase_file = Some(PathBuf::from(file));
                self.key_passphrase_env = None;
            }
            (None, Some((_, name))) => {
                self.key_passphrase_env = Some(name);
                self.key_passphrase_file = None;
            }
            (None, None) => {}
        }
        if let Some((_, v)) = var("SIGN_SOCKET_GROUP") {
            self.sign_socket_group = Some(v);
        }
        match (var("TLS_CERT"), var("TLS_KEY")) {
            (Some((_, cert)), Some((_, key))) => {
                self.tls = Some(TlsConfig {
                    cert: cert.into(),
                    key: key.into(),
                })
            }
            (None, None) => {}
            _ => {
                return Err(ConfigError::Invalid(
                    "CLOISTER_ATTESTOR_TLS_CERT and CLOISTER_ATTESTOR_TLS_KEY must be set together"
                        .into(),
                ));
            }
        }
        if let Some((n, v)) = var("MAX_BODY_BYTES") {
            self.limits.max_body_bytes = size_env(&n, &v)?;
        }
        if let Some((n, v)) = var("RATE_LIMIT_PER_SECOND") {
            self.rate_limit.per_second = parsed(&n, v)?;
        }
        if let Some((n, v)) = var("RATE_LIMIT_BURST") {
            self.rate_limit.burst = parsed(&n, v)?;
        }
        if let Some((n, v)) = var("AUTH_CACHE_TTL_MS") {
            self.auth.cache_ttl_ms = parsed(&n, v)?;
        }
        if let Some((n, v)) = var("VERIFY_CACHE_ENTRIES") {
            self.verify.cache_entries = parsed(&n, v)?;
        }
        if let Some((n, v)) = var("LOG_FORMAT") {
            self.log.format = match v.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => {
                    return Err(ConfigError::Env {
                        name: n,
                        message: "expected text or json".into(),
                    });
                }
            };
        }
        if let Some((_, v)) = var("LOG_LEVEL") {
            self.log.level = v;
        }
        Ok(())
    }

    /// Checks everything that can be checked before binding sockets.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.state_dir.as_os_str().is_empty() {
            return bad("state_dir must not be empty".into());
        }
        if let Some(url) = &self.database_url
            && !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
        {
            return bad(
                "database_url must start with sqlite:, postgres:// or postgresql://".into(),
            );
        }
        if self.limits.max_body_bytes == 0 || self.limits.max_body_bytes > MAX_BODY_LIMIT {
            return bad(format!(
                "limits.max_body_bytes must be between 1 and {MAX_BODY_LIMIT}"
            ));
        }
        if self.rate_limit.per_second == 0 || self.rate_limit.burst == 0 {
            return bad("rate_limit.per_second and rate_limit.burst must be at least 1".into());
        }
        if self.metering.idempotency_window_hours == 0 {
            return bad("metering.idempotency_window_hours must be at least 1".into());
        }
        if self.metering.max_batch == 0 || self.metering.max_batch > 65_536 {
            return bad("metering.max_batch must be between 1 and 65536".into());
        }
        if self.key_passphrase_file.is_some() && self.key_passphrase_env.is_some() {
            return bad("give key_passphrase_file or key_passphrase_env, not both".into());
        }
        if self
            .key_passphrase_env
            .as_deref()
            .is_some_and(|v| v.is_empty() || v.contains('='))
        {
            return bad("key_passphrase_env must name an environment variable".into());
        }
        if let Some(tls) = &self.tls {
            for (what, path) in [("tls.cert", &tls.cert), ("tls.key", &tls.key)] {
                if !path.is_file() {
                    return bad(format!("{what} {} is not a readable file", path.display()));
                }
            }
        }
        if self.policy.coverage_window_days == 0 || self.audit.key_validity_days == 0 {
            return bad(
                "policy.coverage_window_days and audit.key_validity_days must be at least 1".into(),
            );
        }
        if self.audit.key_validity_days > 366 {
            return bad("audit.key_validity_days must be at most 366".into());
        }
        if let Some(m) = &self.policy.manifest
            && !m.is_file()
        {
            return bad(format!(
                "policy.manifest {} is not a readable file",
                m.display()
            ));
        }
        self.billing.validate().map_err(ConfigError::Invalid)?;
        self.portal.validate().map_err(ConfigError::Invalid)?;
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return bad(format!(
                "log.level {:?} is not a valid filter",
                self.log.level
            ));
        }
        Ok(())
    }

    /// The storage URL: the configured one, or the embedded SQLite file.
    pub fn storage_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.state_dir.join("attestor.db").display()),
        }
    }

    /// The signing socket's path.
    pub fn sign_socket_path(&self) -> PathBuf {
        self.sign_socket
            .clone()
            .unwrap_or_else(|| self.state_dir.join("sign.sock"))
    }
}

#[cfg(test)]
mod tests;
