//! The runner daemon's configuration: a TOML file (every key optional, the
//! embedded defaults below otherwise), a few environment overrides, and
//! validation at start so that a bad value stops the daemon with a clear
//! error instead of failing a job later.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default state directory of the runner daemon.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cloister/runner";
/// Default Unix socket of the runner's API.
pub const DEFAULT_API_SOCKET: &str = "/run/cloister-runner/api.sock";
/// Default signing socket of the attestor.
pub const DEFAULT_ATTESTOR_SOCKET: &str = "/run/cloister-attestor/sign.sock";
/// Default builder id written into provenance (`runDetails.builder.id`).
pub const DEFAULT_BUILDER_ID: &str = "https://github.com/cloister-dev/cloister/runner@v1";

/// Errors loading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// The file format (all keys optional; see [`Config`] for the resolved form).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    state_dir: Option<PathBuf>,
    store: Option<PathBuf>,
    builder_id: Option<String>,
    label: Option<String>,
    host_id: Option<String>,
    concurrency: Option<usize>,
    queue_capacity: Option<usize>,
    shutdown_grace_secs: Option<u64>,
    /// Job priority aging (issue 19).
    priority_aging_secs: Option<u64>,
    attestor_socket: Option<PathBuf>,
    /// Attestor restarts (issue 20): how long a job keeps retrying to get
    /// its provenance signed.
    attestor_retry_secs: Option<u64>,
    /// Readiness (issue 20): least free space on the store's filesystem.
    #[serde(default, deserialize_with = "size_value")]
    store_min_free_bytes: Option<u64>,
    #[serde(default)]
    api: FileApi,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default)]
    toolchains: BTreeMap<String, PathBuf>,
    #[serde(default)]
    vendor_roots: Vec<PathBuf>,
    #[serde(default)]
    policy: FilePolicy,
}

/// `[policy]`: refuse jobs under sandbox policies the signed manifest does
/// not list (`crate::policy_gate`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePolicy {
    require_signed: Option<bool>,
    manifest: Option<PathBuf>,
    public_keys: Option<Vec<PathBuf>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileApi {
    socket: Option<PathBuf>,
    socket_group: Option<String>,
    tcp: Option<String>,
    token_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    timeout_secs: Option<u64>,
    #[serde(default, deserialize_with = "size_value")]
    memory_bytes: Option<u64>,
    pids: Option<u64>,
    cpus: Option<u32>,
    #[serde(default, deserialize_with = "size_value")]
    log_bytes: Option<u64>,
    #[serde(default, deserialize_with = "size_value")]
    tmp_bytes: Option<u64>,
    #[serde(default, deserialize_with = "size_value")]
    workspace_bytes: Option<u64>,
}

/// A size key: a number of bytes, or a string in the one size syntax of
/// every flag (`"4GiB"`, `"512M"`: `cloister_size`).
fn size_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    cloister_size::deserialize(d).map(Some)
}

/// Resource limits of one job (defaults from the config, overridable per job
/// within the config's maxima).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    pub timeout_secs: u64,
    pub memory_bytes: u64,
    pub pids: u64,
    pub cpus: u32,
    /// The job log's cap: build output past it is discarded.
    pub log_bytes: u64,
    /// The sandbox's `/tmp` (a tmpfs) size.
    pub tmp_bytes: u64,
    /// How much the build's workspace may grow.
    pub workspace_bytes: u64,
}

/// The default cap of a job log (bytes; `limits.log_bytes`).
pub const DEFAULT_LOG_LIMIT: u64 = 64 << 20;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout_secs: 3600,
            memory_bytes: 4 << 30,
            pids: 4096,
            cpus: 2,
            log_bytes: DEFAULT_LOG_LIMIT,
            tmp_bytes: 1 << 30,
            workspace_bytes: 16 << 30,
        }
    }
}

/// The API listeners.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Unix socket (mode 0660), always on.
    pub socket: PathBuf,
    /// Group owning the socket (name or numeric gid); `None` keeps the daemon's.
    pub socket_group: Option<String>,
    /// Optional TCP listener; requires a bearer token.
    pub tcp: Option<std::net::SocketAddr>,
    /// The bearer token for TCP (read from `token_file` at start).
    pub token: Option<String>,
}

/// The resolved, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub state_dir: PathBuf,
    pub store: PathBuf,
    pub builder_id: String,
    pub label: String,
    pub host_id: String,
    pub concurrency: usize,
    pub queue_capacity: usize,
    pub shutdown_grace: Duration,
    /// A queued job gains one priority level per this much waiting
    /// (`priority_aging_secs`, default 300), so no job starves.
    pub priority_aging: Duration,
    pub attestor_socket: PathBuf,
    /// How long a job whose outputs are hashed keeps asking the attestor to
    /// sign (`attestor_retry_secs`, default 600): capped exponential
    /// backoff while the signing socket is unreachable or answers 5xx;
    /// then the job fails with its outputs kept for `cloister-runner attest`.
    pub attestor_retry: Duration,
    /// `/readyz` fails below this much free space on the store's filesystem
    /// (`store_min_free_bytes`, default 1 GiB).
    pub store_min_free: u64,
    pub api: ApiConfig,
    pub limits: Limits,
    /// Operator-approved toolchains a job may ask for by name: snapshotted
    /// into the store at start-up and on SIGHUP (`crate::toolchains`), the
    /// snapshot mounted read-only at `/opt/toolchains/<name>` with its `bin`
    /// on PATH.
    pub toolchains: BTreeMap<String, PathBuf>,
    /// Host directories under which a job may name an absolute vendor path
    /// (e.g. a shared pnpm store); none by default.
    pub vendor_roots: Vec<PathBuf>,
    /// `[policy] require_signed`: jobs only under signed sandbox policies.
    pub policy: Option<crate::policy_gate::PolicyRequirement>,
}

impl Config {
    /// Loads `path` (or the embedded defaults when `None`), applies the
    /// environment overrides (`CLOISTER_RUNNER_STATE_DIR`, `CLOISTER_STORE`,
    /// `CLOISTER_ATTESTOR_SOCKET`, `CLOISTER_RUNNER_SOCKET`) and the
    /// `--state-dir` flag, then validates.
    pub fn load(path: Option<&Path>, state_dir_flag: Option<&Path>) -> Result<Config, ConfigError> {
        let file = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                toml::from_str::<FileConfig>(&text).map_err(|e| ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: e.message().to_string(),
                })?
            }
            None => FileConfig::default(),
        };
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let state_dir = state_dir_flag
            .map(Path::to_path_buf)
            .or_else(|| env("CLOISTER_RUNNER_STATE_DIR"))
            .or(file.state_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        let store = env("CLOISTER_STORE")
            .or(file.store)
            .unwrap_or_else(|| state_dir.join("store"));
        let attestor_socket = env("CLOISTER_ATTESTOR_SOCKET")
            .or(file.attestor_socket)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ATTESTOR_SOCKET));
        let socket = env("CLOISTER_RUNNER_SOCKET")
            .or(file.api.socket)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_API_SOCKET));
        let defaults = Limits::default();
        let limits = Limits {
            timeout_secs: file.limits.timeout_secs.unwrap_or(defaults.timeout_secs),
            memory_bytes: file.limits.memory_bytes.unwrap_or(defaults.memory_bytes),
            pids: file.limits.pids.unwrap_or(defaults.pids),
            cpus: file.limits.cpus.unwrap_or(defaults.cpus),
            log_bytes: file.limits.log_bytes.unwrap_or(defaults.log_bytes),
            tmp_bytes: file.limits.tmp_bytes.unwrap_or(defaults.tmp_bytes),
            workspace_bytes: file
                .limits
                .workspace_bytes
                .unwrap_or(defaults.workspace_bytes),
        };
        let tcp = match file.api.tcp {
            Some(addr) => Some(addr.parse().map_err(|_| {
                ConfigError::Invalid(format!("api.tcp: {addr:?} is not an ADDRESS:PORT"))
            })?),
            None => None,
        };
        let token = match (&tcp, &file.api.token_file) {
            (Some(_), None) => {
                return Err(ConfigError::Invalid(
                    "api.tcp needs api.token_file (TCP clients authenticate with a bearer token)"
                        .into(),
                ));
            }
            (_, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                let token = text.trim().to_string();
                if token.len() < 16 {
                    return Err(ConfigError::Invalid(format!(
                        "api.token_file {}: the token must be at least 16 characters",
                        path.display()
                    )));
                }
                Some(token)
            }
            (None, None) => None,
        };
        let host_id = match file.host_id {
            Some(id) => id,
            None => std::fs::read_to_string("/etc/machine-id")
                .map(|s| s.trim().to_string())
                .ok()
                .filter(|s| !s.is_empty())
                .or_else(|| {
                    nix::unistd::gethostname()
                        .ok()
                        .and_then(|h| h.into_string().ok())
                })
                .unwrap_or_else(|| "unknown".into()),
        };
        let policy = match (
            file.policy.require_signed.unwrap_or(false),
            file.policy.manifest,
            file.policy.public_keys,
        ) {
            (true, Some(manifest), Some(public_keys)) if !public_keys.is_empty() => {
                Some(crate::policy_gate::PolicyRequirement {
                    manifest,
                    public_keys,
                })
            }
            (true, _, _) => {
                return Err(ConfigError::Invalid(
                    "policy.require_signed needs policy.manifest and policy.public_keys".into(),
                ));
            }
            (false, None, None) => None,
            (false, _, _) => {
                return Err(ConfigError::Invalid(
                    "policy.manifest and policy.public_keys are enforced only with \
                     policy.require_signed = true"
                        .into(),
                ));
            }
        };
        let config = Config {
            state_dir,
            store,
            builder_id: file.builder_id.unwrap_or_else(|| DEFAULT_BUILDER_ID.into()),
            label: file.label.unwrap_or_else(|| "isolated".into()),
            host_id,
            concurrency: file.concurrency.unwrap_or(2),
            queue_capacity: file.queue_capacity.unwrap_or(64),
            shutdown_grace: Duration::from_secs(file.shutdown_grace_secs.unwrap_or(30)),
            priority_aging: Duration::from_secs(file.priority_aging_secs.unwrap_or(300)),
            attestor_socket,
            attestor_retry: Duration::from_secs(file.attestor_retry_secs.unwrap_or(600)),
            store_min_free: file.store_min_free_bytes.unwrap_or(1 << 30),
            api: ApiConfig {
                socket,
                socket_group: file.api.socket_group,
                tcp,
                token,
            },
            limits,
            toolchains: file.toolchains,
            vendor_roots: file.vendor_roots,
            policy,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        for (name, path) in [
            ("state_dir", &self.state_dir),
            ("store", &self.store),
            ("attestor_socket", &self.attestor_socket),
            ("api.socket", &self.api.socket),
        ] {
            if !path.is_absolute() {
                return bad(format!(
                    "{name} must be an absolute path, got {}",
                    path.display()
                ));
            }
        }
        if self.api.socket.starts_with(&self.state_dir) && self.api.socket.as_os_str().len() > 100 {
            return bad(format!(
                "api.socket path is too long: {}",
                self.api.socket.display()
            ));
        }
        if !(1..=64).contains(&self.concurrency) {
            return bad(format!(
                "concurrency must be between 1 and 64, got {}",
                self.concurrency
            ));
        }
        if !(1..=100_000).contains(&self.queue_capacity) {
            return bad(format!(
                "queue_capacity must be between 1 and 100000, got {}",
                self.queue_capacity
            ));
        }
        if !(1..=86_400).contains(&self.priority_aging.as_secs()) {
            return bad(format!(
                "priority_aging_secs must be between 1 and 86400, got {}",
                self.priority_aging.as_secs()
            ));
        }
        if self.attestor_retry.as_secs() > 7 * 86_400 {
            return bad(format!(
                "attestor_retry_secs must be at most 604800 (a week), got {}",
                self.attestor_retry.as_secs()
            ));
        }
        if self.builder_id.trim().is_empty() || self.builder_id.contains(char::is_whitespace) {
            return bad(format!(
                "builder_id must be a URI without spaces, got {:?}",
                self.builder_id
            ));
        }
        if self.label.is_empty() {
            return bad("label must not be empty".into());
        }
        let l = &self.limits;
        if l.timeout_secs == 0
            || l.memory_bytes < (16 << 20)
            || l.pids < 8
            || l.cpus == 0
            || l.log_bytes < (64 << 10)
            || l.tmp_bytes < (1 << 20)
            || l.workspace_bytes < (1 << 20)
        {
            return bad(format!(
                "limits out of range (timeout_secs ≥ 1, memory_bytes ≥ 16 MiB, pids ≥ 8, cpus ≥ 1, log_bytes ≥ 64 KiB, tmp_bytes and workspace_bytes ≥ 1 MiB): {l:?}"
            ));
        }
        for (name, path) in &self.toolchains {
            if !path.is_absolute() {
                return bad(format!(
                    "toolchain {name}: {} is not an absolute path",
                    path.display()
                ));
            }
            crate::toolchains::check(name, path)
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        for root in &self.vendor_roots {
            if !root.is_absolute() || !root.is_dir() {
                return bad(format!(
                    "vendor_roots: {} is not an existing absolute directory",
                    root.display()
                ));
            }
        }
        if let Some(group) = &self.api.socket_group {
            resolve_group(group).map_err(ConfigError::Invalid)?;
        }
        if let Some(p) = &self.policy {
            // Verified now: a manifest that does not verify stops the start.
            p.load().map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        Ok(())
    }
}

/// Resolves a group name (from `/etc/group`: `cloister_nss`) or numeric gid.
pub fn resolve_group(group: &str) -> Result<nix::unistd::Gid, String> {
    match cloister_nss::group_gid(group) {
        Ok(Some(gid)) => Ok(nix::unistd::Gid::from_raw(gid)),
        Ok(None) => Err(format!("api.socket_group: no group named {group:?}")),
        Err(e) => Err(format!("api.socket_group: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runner.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path), None)
    }

    #[test]
    fn defaults_are_valid() {
        let c = load_str("").unwrap();
        assert_eq!(c.concurrency, 2);
        assert_eq!(c.api.socket, Path::new(DEFAULT_API_SOCKET));
    }

    #[test]
    fn unknown_key_is_rejected() {
        let err = load_str("concurency = 3\n").unwrap_err().to_string();
        assert!(err.contains("unknown field `concurency`"), "{err}");
    }

    #[test]
    fn tcp_without_token_is_rejected() {
        let err = load_str("[api]\ntcp = \"127.0.0.1:0\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("token_file"), "{err}");
    }

    #[test]
    fn zero_concurrency_is_rejected() {
        let err = load_str("concurrency = 0\n").unwrap_err().to_string();
        assert!(err.contains("concurrency must be between"), "{err}");
    }

    #[test]
    fn relative_state_dir_is_rejected() {
        let err = load_str("state_dir = \"relative\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("state_dir must be an absolute path"), "{err}");
    }

    #[test]
    fn missing_toolchain_dir_is_rejected() {
        let err = load_str("[toolchains]\nrust = \"/nonexistent/rust\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("toolchain rust"), "{err}");
    }

    #[test]
    fn toolchain_paths_must_be_uri_safe_and_names_valid() {
        let dir = tempfile::tempdir().unwrap();
        let spaced = dir.path().join("my rust");
        std::fs::create_dir(&spaced).unwrap();
        let err = load_str(&format!(
            "[toolchains]\nrust = {:?}\n",
            spaced.display().to_string()
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("toolchain rust") && err.contains("file:// URI"),
            "{err}"
        );
        let err = load_str(&format!(
            "[toolchains]\n\"ru st\" = {:?}\n",
            dir.path().display().to_string()
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("[A-Za-z0-9_-]+"), "{err}");
        let err = load_str("[toolchains]\nrust = \"relative/rust\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an absolute path"), "{err}");
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = load_str(&format!(
            "[toolchains]\nrust = {:?}\n",
            file.display().to_string()
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("is not a directory"), "{err}");
    }

    /// The disk limits: defaults (64 MiB of log, 1 GiB of /tmp, 16 GiB of
    /// workspace growth), overridable, refused when too small to work.
    #[test]
    fn disk_limits_have_defaults_and_floors() {
        let l = load_str("").unwrap().limits;
        assert_eq!(
            (l.log_bytes, l.tmp_bytes, l.workspace_bytes),
            (64 << 20, 1 << 30, 16 << 30)
        );
        let l = load_str(
            "[limits]
log_bytes = 1048576
workspace_bytes = 4294967296
",
        )
        .unwrap()
        .limits;
        assert_eq!((l.log_bytes, l.workspace_bytes), (1 << 20, 4 << 30));
        // sizes as strings, the one size syntax of every flag
        let l = load_str(
            "[limits]\nmemory_bytes = \"2GiB\"\nlog_bytes = \"8M\"\ntmp_bytes = \"512MiB\"\n",
        )
        .unwrap()
        .limits;
        assert_eq!(
            (l.memory_bytes, l.log_bytes, l.tmp_bytes),
            (2 << 30, 8 << 20, 512 << 20)
        );
        let err = load_str("[limits]\nmemory_bytes = \"lots\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"lots\" is not a size"), "{err}");
        for bad in [
            "log_bytes = 1000",
            "tmp_bytes = 4096",
            "workspace_bytes = 0",
        ] {
            let err = load_str(&format!("[limits]\n{bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("limits out of range"), "{bad}: {err}");
        }
    }

    /// Issue 20: the attestor retry window and the readiness disk floor.
    #[test]
    fn attestor_retry_and_store_floor_have_defaults_and_bounds() {
        let c = load_str("").unwrap();
        assert_eq!(c.attestor_retry, Duration::from_secs(600));
        assert_eq!(c.store_min_free, 1 << 30);
        let c = load_str("attestor_retry_secs = 5\nstore_min_free_bytes = \"10G\"\n").unwrap();
        assert_eq!(c.attestor_retry, Duration::from_secs(5));
        assert_eq!(c.store_min_free, 10 << 30);
        let err = load_str("attestor_retry_secs = 9999999\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("attestor_retry_secs must be at most"), "{err}");
        let err = load_str("attestor_retry_secs = -1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected u64"), "{err}");
    }

    #[test]
    fn unknown_group_is_rejected() {
        let err = load_str("[api]\nsocket_group = \"no-such-group-cloister\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no group named"), "{err}");
    }
}
