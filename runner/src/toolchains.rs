//! Operator-configured toolchains (`[toolchains]` in the config) as hermetic
//! inputs, like vendored snapshots: the daemon snapshots each host directory
//! into the content-addressed store with `cloister-inputs` at start-up (and
//! again on SIGHUP), jobs that ask for a toolchain get that immutable store
//! tree mounted read-only (never the live host directory), and provenance
//! records its digest. A toolchain changed on the host is therefore invisible
//! to builds until the daemon re-snapshots it, and what provenance names is
//! always exactly what the build saw.
//!
//! Re-snapshotting happens only at start-up and on SIGHUP, not per job: the
//! warm path still stats every file (about 0.4–0.5 s for a Rust sysroot of
//! ~52k files on the reference machine), more than the whole per-job
//! control-plane budget.
//!
//! Daemons sharing one store (tests, several runners on a host) take an
//! exclusive `flock` on `<store>/toolchains.lock` around each snapshot, so a
//! cold toolchain is copied once and the others then take the warm path.

use cloister_attestor_core::record::{is_toolchain_name, is_uri_safe_path};
use cloister_inputs::{Digest, EntryKind, Pin, Progress, Store, StoreError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Where toolchain `<name>` is mounted inside the sandbox.
pub const SANDBOX_TOOLCHAINS: &str = "/opt/toolchains";

/// Errors snapshotting a toolchain.
#[derive(Debug, thiserror::Error)]
pub enum ToolchainError {
    #[error("toolchain {name}: {path}: {source}")]
    Io {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("toolchain {name}: {path}: {source}")]
    Snapshot {
        name: String,
        path: PathBuf,
        source: Box<StoreError>,
    },
    #[error("store {path}: {source}")]
    Store {
        path: PathBuf,
        source: Box<StoreError>,
    },
    #[error("toolchain {name}: {message}")]
    Invalid { name: String, message: String },
    #[error("toolchain snapshot task: {0}")]
    Task(String),
}

impl ToolchainError {
    fn invalid(name: &str, message: String) -> Self {
        ToolchainError::Invalid {
            name: name.into(),
            message,
        }
    }
}

/// One toolchain as jobs currently get it.
#[derive(Debug)]
pub struct Toolchain {
    pub name: String,
    /// The canonical host directory the snapshot was taken from.
    pub path: PathBuf,
    /// sha256 of the snapshot (the deterministic uncompressed tar).
    pub digest: Digest,
    pub files: u64,
    pub bytes: u64,
    /// The read-only store tree bind-mounted into jobs.
    pub tree: PathBuf,
    /// Keeps the tree from `store gc` while the daemon or a job holds this.
    _pin: Pin,
}

impl Toolchain {
    /// The host path as recorded in provenance (checked URI-safe UTF-8).
    pub fn path_str(&self) -> &str {
        self.path.to_str().expect("checked at snapshot time")
    }
}

/// The daemon's toolchains: the configured host directories and their
/// current snapshots. Jobs hold an `Arc<Toolchain>` for their lifetime, so a
/// re-snapshot never pulls a tree from under a running build.
#[derive(Debug)]
pub struct Toolchains {
    store: PathBuf,
    configured: BTreeMap<String, PathBuf>,
    current: RwLock<BTreeMap<String, Arc<Toolchain>>>,
    refreshing: tokio::sync::Mutex<()>,
}

impl Toolchains {
    /// Snapshots every configured toolchain (blocking; progress in the log).
    pub fn snapshot_all(
        store: &Path,
        configured: &BTreeMap<String, PathBuf>,
    ) -> Result<Toolchains, ToolchainError> {
        let current = snapshot_set(store, configured)?;
        Ok(Toolchains {
            store: store.to_path_buf(),
            configured: configured.clone(),
            current: RwLock::new(current),
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    /// The current snapshot of toolchain `name`, if it is configured.
    pub fn get(&self, name: &str) -> Option<Arc<Toolchain>> {
        self.current
            .read()
            .expect("toolchains lock")
            .get(name)
            .cloned()
    }

    /// The configured names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.configured.keys().map(String::as_str)
    }

    /// Re-snapshots every configured toolchain (SIGHUP) and switches jobs
    /// that start afterwards to the new snapshots. On error the previous
    /// snapshots stay in use. Returns the toolchains now current.
    pub async fn refresh(self: &Arc<Self>) -> Result<Vec<Arc<Toolchain>>, ToolchainError> {
        let _one_at_a_time = self.refreshing.lock().await;
        let this = self.clone();
        let fresh =
            tokio::task::spawn_blocking(move || snapshot_set(&this.store, &this.configured))
                .await
                .map_err(|e| ToolchainError::Task(e.to_string()))??;
        let list = fresh.values().cloned().collect();
        *self.current.write().expect("toolchains lock") = fresh;
        Ok(list)
    }
}

fn snapshot_set(
    store_root: &Path,
    configured: &BTreeMap<String, PathBuf>,
) -> Result<BTreeMap<String, Arc<Toolchain>>, ToolchainError> {
    let mut out = BTreeMap::new();
    if configured.is_empty() {
        return Ok(out);
    }
    let store = Store::open(store_root).map_err(|source| ToolchainError::Store {
        path: store_root.to_path_buf(),
        source: Box::new(source),
    })?;
    for (name, dir) in configured {
        let t = snapshot_one(&store, name, dir)?;
        out.insert(name.clone(), Arc::new(t));
    }
    Ok(out)
}

/// Checks a configured toolchain's name and directory (also done when the
/// config is loaded, so a bad entry stops the daemon before it starts).
pub fn check(name: &str, dir: &Path) -> Result<PathBuf, ToolchainError> {
    if !is_toolchain_name(name) {
        return Err(ToolchainError::invalid(
            name,
            "the name must be [A-Za-z0-9_-]+".into(),
        ));
    }
    let real = std::fs::canonicalize(dir).map_err(|source| ToolchainError::Io {
        name: name.into(),
        path: dir.to_path_buf(),
        source,
    })?;
    if !real.is_dir() {
        return Err(ToolchainError::invalid(
            name,
            format!("{} is not a directory", real.display()),
        ));
    }
    if !real.to_str().is_some_and(is_uri_safe_path) {
        return Err(ToolchainError::invalid(
            name,
            format!(
                "{} may only use [A-Za-z0-9/._~+,=@:-] (provenance records it as a file:// URI)",
                real.display()
            ),
        ));
    }
    Ok(real)
}

fn snapshot_one(store: &Store, name: &str, dir: &Path) -> Result<Toolchain, ToolchainError> {
    let path = check(name, dir)?;
    let snap_err = |source| ToolchainError::Snapshot {
        name: name.into(),
        path: path.clone(),
        source: Box::new(source),
    };
    // One snapshot at a time per store, across daemons: the first copies a
    // cold toolchain, the others wait and take the warm path.
    let lock_path = store.root().join("toolchains.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| ToolchainError::Io {
            name: name.into(),
            path: lock_path.clone(),
            source,
        })?;
    let lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).map_err(
        |(_, errno)| ToolchainError::Io {
            name: name.into(),
            path: lock_path.clone(),
            source: errno.into(),
        },
    )?;
    tracing::info!(toolchain = name, path = %path.display(), "snapshotting toolchain");
    let progress = LogProgress::new(name);
    let snap = store.snapshot(&path, &progress).map_err(snap_err)?;
    let pin = store
        .pin(EntryKind::Snapshot, &snap.digest)
        .map_err(snap_err)?;
    drop(lock);
    tracing::info!(
        toolchain = name,
        path = %path.display(),
        digest = %snap.digest,
        files = snap.files,
        bytes = snap.bytes,
        unchanged = snap.cached,
        "toolchain snapshot ready"
    );
    Ok(Toolchain {
        name: name.into(),
        path,
        digest: snap.digest,
        files: snap.files,
        bytes: snap.bytes,
        tree: pin.path().to_path_buf(),
        _pin: pin,
    })
}

/// Progress of a cold toolchain copy, logged at every tenth of the bytes
/// (and told to systemd, extending its start timeout while work advances).
struct LogProgress<'a> {
    name: &'a str,
    total: AtomicU64,
    done: AtomicU64,
    logged_tenths: AtomicU64,
}

impl<'a> LogProgress<'a> {
    fn new(name: &'a str) -> Self {
        LogProgress {
            name,
            total: AtomicU64::new(0),
            done: AtomicU64::new(0),
            logged_tenths: AtomicU64::new(0),
        }
    }
}

impl Progress for LogProgress<'_> {
    fn begin(&self, what: &str, files: u64, bytes: u64) {
        self.total.store(bytes, Ordering::Relaxed);
        tracing::info!(
            toolchain = self.name,
            files,
            bytes,
            "{what}: copying into the store"
        );
    }

    fn advance(&self, _files: u64, bytes: u64) {
        let done = self.done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let total = self.total.load(Ordering::Relaxed);
        if total == 0 {
            return;
        }
        let tenths = (done.min(total) * 10) / total;
        let before = self.logged_tenths.fetch_max(tenths, Ordering::Relaxed);
        if tenths > before {
            tracing::info!(
                toolchain = self.name,
                done,
                total,
                "snapshot {}%",
                tenths * 10
            );
            let status = format!("snapshotting toolchain {}: {}%", self.name, tenths * 10);
            let _ = sd_notify::notify(&[
                sd_notify::NotifyState::Status(&status),
                sd_notify::NotifyState::ExtendTimeoutUsec(120_000_000),
            ]);
        }
    }
}
