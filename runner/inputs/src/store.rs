//! The content-addressed store: snapshots and image rootfs trees kept once by
//! digest, materialized read-only, with a size/age garbage collector.
//!
//! Layout under the root (default `/var/lib/cloister/runner/store`):
//! ```text
//! snapshots/<hex>/tree/             read-only materialized tree
//! snapshots/<hex>/meta.json         digest, counts, mtime option, creation time
//! snapshots/<hex>/snapshot.tar.gz   the transport form, when one was made
//! snapshots/<hex>/lock              flock'd shared by users, exclusive by gc; its mtime is "last used"
//! images/<hex>/{rootfs,meta.json,refs.json,lock}   keyed by manifest digest
//! statcache/<hash of source path>.json              warm-path records
//! tmp/<kind>-<pid>-<n>/             staging; never looks complete
//! ```
//! Architecture invariant: an entry directory under `snapshots/` or `images/`
//! only ever appears by `rename` of a fully written staging directory after
//! `syncfs`, so anything present there is complete; removal renames it back
//! into `tmp/` first. A crash leaves at most a staging directory, which `gc`
//! removes once its process is gone.

use crate::Digest;
use crate::extract::{self, ExtractError, ExtractMode, ExtractOptions};
use crate::gz;
use crate::progress::Progress;
use crate::snapshot::{self, GzOut, GzTarget, SnapshotError, SnapshotOptions, now_secs};
use crate::statcache;
use crate::walk;
use rustix::fs::{FlockOperation, Mode, OFlags};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// The default store root.
pub const DEFAULT_ROOT: &str = "/var/lib/cloister/runner/store";

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Extract(#[from] ExtractError),
    #[error("{0} is not in the store")]
    NotFound(Digest),
    #[error("digest mismatch: expected {expected}, the archive is {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error(
        "archive is not a canonical snapshot: its stream is {stream} but its content snapshots to {canonical}"
    )]
    NotCanonical { stream: Digest, canonical: Digest },
    #[error("store entry {digest} is corrupt: {why}")]
    Corrupt { digest: Digest, why: String },
    #[error(transparent)]
    Image(#[from] crate::image_types::ImageError),
    #[error("{path} is no longer the directory that was checked (it was replaced meanwhile)")]
    Replaced { path: PathBuf },
    #[error(
        "store {path}: not enough free space for this snapshot ({files} entries): it needs {} and the filesystem has {} free; free some space or use a store on another filesystem",
        mib(*needed),
        mib(*available)
    )]
    NoSpace {
        path: PathBuf,
        files: u64,
        needed: u64,
        available: u64,
    },
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A handle on a store directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A snapshot held by the store.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub digest: Digest,
    pub files: u64,
    pub bytes: u64,
    /// The read-only materialized tree.
    pub tree: PathBuf,
    /// True when the warm path proved the tree unchanged without reading it.
    pub cached: bool,
    /// True when the digest was in the store before this snapshot: on the
    /// warm path, and on a cold one whose content was stored already (a
    /// fresh checkout of an unchanged committed directory), whose staging
    /// copy was then dropped. Not serialized: `snapshot import --json`
    /// prints this struct, and its keys are a fixed wire format.
    #[serde(skip)]
    pub already_stored: bool,
    /// Size of the `.tar.gz` written to the requested output, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gz_bytes: Option<u64>,
}

/// What `snapshot` should do besides storing.
#[derive(Debug, Clone)]
pub struct SnapshotRequest {
    pub opts: SnapshotOptions,
    /// Also write the compressed form here.
    pub out: Option<PathBuf>,
    /// gzip level (1–12, libdeflate's scale).
    pub level: i32,
    /// Use and keep a warm-path record for this directory (default). Off
    /// for a directory that is never snapshotted again at the same path
    /// (a job's fresh workspace): its record could never be used and would
    /// only pile up.
    pub warm_cache: bool,
    /// The (device, inode) the caller checked the directory as: the
    /// snapshot is refused when the tree it walks has another root (the
    /// path was swapped between the caller's check and the walk).
    pub expect_root: Option<(u64, u64)>,
}

impl Default for SnapshotRequest {
    fn default() -> Self {
        SnapshotRequest {
            opts: SnapshotOptions::default(),
            out: None,
            level: gz::DEFAULT_LEVEL,
            warm_cache: true,
            expect_root: None,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SnapshotMeta {
    pub digest: Digest,
    pub files: u64,
    pub bytes: u64,
    pub tar_bytes: u64,
    pub mtime: u64,
    pub created: u64,
}

/// Kinds of store entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Snapshot,
    Image,
}

impl EntryKind {
    fn dir(self) -> &'static str {
        match self {
            EntryKind::Snapshot => "snapshots",
            EntryKind::Image => "images",
        }
    }
}

/// One entry as `store list` and `gc` see it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreEntry {
    pub kind: EntryKind,
    pub digest: Digest,
    /// Apparent size: file contents plus the cached `.tar.gz`.
    pub bytes: u64,
    /// Seconds since the epoch of the last use (creation, snapshot hit, `tree`, pin).
    pub last_used: u64,
    pub path: PathBuf,
}

/// What `gc` keeps.
#[derive(Debug, Clone, Default)]
pub struct GcPolicy {
    /// Remove entries not used for longer than this.
    pub max_age: Option<Duration>,
    /// Then remove least recently used entries until the total is at most this.
    pub max_bytes: Option<u64>,
    /// Report only.
    pub dry_run: bool,
}

/// What `gc` did (or would do, on a dry run).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GcReport {
    pub dry_run: bool,
    pub removed: Vec<StoreEntry>,
    pub kept: Vec<StoreEntry>,
    /// Entries that should go but are pinned by a running build.
    pub busy: Vec<StoreEntry>,
    pub freed_bytes: u64,
    pub kept_bytes: u64,
    /// Staging directories of dead processes removed.
    pub stale_staging: u64,
}

/// A shared lock keeping an entry from being collected while in use.
#[derive(Debug)]
pub struct Pin {
    _lock: File,
    path: PathBuf,
}

impl Pin {
    /// The pinned tree (snapshot) or rootfs (image).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A staging directory under `tmp/`, removed on drop unless committed.
pub(crate) struct Staging {
    pub path: PathBuf,
    committed: bool,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = remove_tree(&self.path);
        }
    }
}

static STAGING_SEQ: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Opens (creating if needed) a store at `root`.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        for sub in ["snapshots", "images", "statcache", "tmp"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(io_at(&p))?;
        }
        mark_topdir(&root.join("tmp"));
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    /// The root from `$CLOISTER_STORE`, else [`DEFAULT_ROOT`].
    pub fn default_root() -> PathBuf {
        std::env::var_os("CLOISTER_STORE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn entry_dir(&self, kind: EntryKind, d: &Digest) -> PathBuf {
        self.root.join(kind.dir()).join(d.hex())
    }

    /// Snapshots `dir` with default options (mtime 0, no compressed output).
    pub fn snapshot(&self, dir: &Path, progress: &dyn Progress) -> Result<Snapshot, StoreError> {
        self.snapshot_with(dir, &SnapshotRequest::default(), progress)
    }

    /// Snapshots `dir` into the store. Warm path: when the stat data of every
    /// entry matches the record of the previous snapshot of this directory and
    /// that snapshot is still stored, no file is read.
    pub fn snapshot_with(
        &self,
        dir: &Path,
        req: &SnapshotRequest,
        progress: &dyn Progress,
    ) -> Result<Snapshot, StoreError> {
        let start = SystemTime::now();
        let source = fs::canonicalize(dir).map_err(io_at(dir))?;
        let entries = walk::walk(&source).map_err(SnapshotError::from)?;
        if let Some(expected) = req.expect_root
            && entries
                .first()
                .is_none_or(|root| (root.stat.dev, root.stat.ino) != expected)
        {
            return Err(StoreError::Replaced { path: source });
        }
        let warm = req.warm_cache.then(|| {
            (
                statcache::manifest(&entries, req.opts.mtime),
                statcache::path_for(&self.root.join("statcache"), &source),
            )
        });
        if let Some((manifest, cache_file)) = &warm
            && let Some(rec) = statcache::load(cache_file)
            && rec.manifest == *manifest
            && rec.source == source
        {
            let entry = self.entry_dir(EntryKind::Snapshot, &rec.digest);
            if entry.join("meta.json").is_file() {
                touch(&entry.join("lock"));
                let gz_bytes = match &req.out {
                    Some(out) => Some(self.export(&rec.digest, out, req.level, progress)?),
                    None => None,
                };
                return Ok(Snapshot {
                    digest: rec.digest,
                    files: rec.files,
                    bytes: rec.bytes,
                    tree: entry.join("tree"),
                    cached: true,
                    already_stored: true,
                    gz_bytes,
                });
            }
        }

        self.check_room_for(&entries)?;
        let mut staging = self.staging("snap")?;
        let tree = staging.path.join("tree");
        fs::create_dir(&tree).map_err(io_at(&tree))?;
        // The compressed form goes into the entry (synced with it) and, when
        // asked, straight to a temporary sibling of --out, renamed at the end.
        let mut out_tmp = None;
        let gz_target = match &req.out {
            Some(out) => {
                let p = staging.path.join("snapshot.tar.gz");
                let file = File::create(&p).map_err(io_at(&p))?;
                let tmp = TempFile::create(tmp_sibling(out))?;
                let outputs = vec![
                    GzOut {
                        file,
                        path: p,
                        sync: false,
                    },
                    GzOut {
                        file: tmp.file.try_clone().map_err(io_at(&tmp.path))?,
                        path: tmp.path.clone(),
                        sync: false,
                    },
                ];
                out_tmp = Some(tmp);
                Some(GzTarget {
                    outputs,
                    level: req.level,
                })
            }
            None => None,
        };
        let produced = snapshot::produce(
            &source,
            &entries,
            &req.opts,
            gz_target,
            Some(&tree),
            progress,
        )?;
        let meta = SnapshotMeta {
            digest: produced.digest,
            files: produced.files,
            bytes: produced.bytes,
            tar_bytes: produced.tar_bytes,
            mtime: req.opts.mtime,
            created: now_secs(),
        };
        let final_dir = self.commit_snapshot(&mut staging, &meta)?;
        // Not committed: the entry existed (same digest), or appeared
        // meanwhile from a concurrent snapshot of the same content.
        let already_stored = !staging.committed;
        if let (Some(tmp), Some(out)) = (out_tmp, &req.out) {
            tmp.rename_to(out)?;
        }
        if let Some((manifest, cache_file)) = warm {
            if statcache::is_racy(&entries, start) {
                let _ = fs::remove_file(&cache_file);
            } else {
                let rec = statcache::new_record(
                    source,
                    manifest,
                    produced.digest,
                    produced.files,
                    produced.bytes,
                );
                statcache::save(&cache_file, &rec).map_err(io_at(&cache_file))?;
            }
        }
        Ok(Snapshot {
            digest: produced.digest,
            files: produced.files,
            bytes: produced.bytes,
            tree: final_dir.join("tree"),
            cached: false,
            already_stored,
            gz_bytes: produced.gz_bytes,
        })
    }

    /// Writes meta and lock, syncs and renames the staging directory into
    /// `snapshots/<hex>`. If that entry already exists (same content), the
    /// existing one wins; a compressed form it lacks is moved in.
    fn commit_snapshot(
        &self,
        staging: &mut Staging,
        meta: &SnapshotMeta,
    ) -> Result<PathBuf, StoreError> {
        let meta_path = staging.path.join("meta.json");
        fs::write(
            &meta_path,
            serde_json::to_vec_pretty(meta).expect("meta serializes"),
        )
        .map_err(io_at(&meta_path))?;
        let lock = staging.path.join("lock");
        File::create(&lock).map_err(io_at(&lock))?;
        let dest = self.entry_dir(EntryKind::Snapshot, &meta.digest);
        self.commit(staging, &dest)?;
        let gz = staging.path.join("snapshot.tar.gz");
        if !staging.committed && gz.is_file() && !dest.join("snapshot.tar.gz").exists() {
            let target = dest.join("snapshot.tar.gz");
            // Not covered by a syncfs (the staging was not committed).
            File::open(&gz)
                .and_then(|f| f.sync_all())
                .map_err(io_at(&gz))?;
            fs::rename(&gz, &target).map_err(io_at(&target))?;
            sync_dir(&dest)?;
        }
        Ok(dest)
    }

    /// syncfs + rename of a staging directory to `dest`; when `dest` exists
    /// already the staging directory stays uncommitted (and is removed on
    /// drop, so it is not synced: a job's vendor snapshot of content already
    /// stored costs no filesystem-wide flush).
    pub(crate) fn commit(&self, staging: &mut Staging, dest: &Path) -> Result<(), StoreError> {
        if dest.exists() {
            // Stored already (same content): the staging copy is dropped
            // unsynced.
            return Ok(());
        }
        let dirf = File::open(&staging.path).map_err(io_at(&staging.path))?;
        rustix::fs::syncfs(&dirf).map_err(|e| StoreError::Io {
            path: staging.path.clone(),
            source: e.into(),
        })?;
        match fs::rename(&staging.path, dest) {
            Ok(()) => {
                staging.committed = true;
                sync_dir(dest.parent().expect("entry has a parent"))?;
                Ok(())
            }
            // lost a race with another process storing the same content
            Err(_) if dest.exists() => Ok(()),
            Err(e) => Err(StoreError::Io {
                path: dest.to_path_buf(),
                source: e,
            }),
        }
    }

    /// Refuses a cold snapshot that cannot fit before copying anything: the
    /// tree's files rounded up to the filesystem's blocks (a block per
    /// directory and symlink) against the space and inodes this process may
    /// use (root may use the blocks reserved for it, as the kernel allows).
    /// A tree of a gigabyte otherwise fails with ENOSPC after copying most
    /// of itself; the check cannot see other writers, so ENOSPC stays
    /// possible and still leaves no staging behind.
    fn check_room_for(&self, entries: &[walk::Entry]) -> Result<(), StoreError> {
        let st = rustix::fs::statvfs(&self.root).map_err(|e| StoreError::Io {
            path: self.root.clone(),
            source: e.into(),
        })?;
        let block = st.f_frsize.max(512);
        let needed: u64 = entries
            .iter()
            .map(|e| match e.kind {
                walk::Kind::File { size, .. } => size.div_ceil(block).max(1) * block,
                _ => block,
            })
            .sum();
        let free_blocks = if rustix::process::geteuid().is_root() {
            st.f_bfree
        } else {
            st.f_bavail
        };
        let available = free_blocks.saturating_mul(block);
        let files = entries.len() as u64;
        // f_files == 0: the filesystem does not count inodes (btrfs, …).
        let inodes_short = st.f_files != 0 && st.f_favail < files;
        if needed > available || inodes_short {
            return Err(StoreError::NoSpace {
                path: self.root.clone(),
                files,
                needed,
                available,
            });
        }
        Ok(())
    }

    /// A fresh staging directory `tmp/<kind>-<pid>-<n>`.
    pub(crate) fn staging(&self, kind: &str) -> Result<Staging, StoreError> {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = STAGING_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = self
            .root
            .join("tmp")
            .join(format!("{kind}-{}-{n}-{nanos}", std::process::id()));
        fs::create_dir(&path).map_err(io_at(&path))?;
        Ok(Staging {
            path,
            committed: false,
        })
    }

    /// The read-only tree of a stored snapshot.
    pub fn tree(&self, digest: &Digest) -> Result<PathBuf, StoreError> {
        let dir = self.entry_dir(EntryKind::Snapshot, digest);
        if !dir.join("meta.json").is_file() {
            return Err(StoreError::NotFound(*digest));
        }
        touch(&dir.join("lock"));
        Ok(dir.join("tree"))
    }

    /// The rootfs of an imported image, by manifest digest.
    pub fn image_rootfs(&self, digest: &Digest) -> Result<PathBuf, StoreError> {
        let dir = self.entry_dir(EntryKind::Image, digest);
        if !dir.join("meta.json").is_file() {
            return Err(StoreError::NotFound(*digest));
        }
        touch(&dir.join("lock"));
        Ok(dir.join("rootfs"))
    }

    /// Pins an entry for as long as the returned guard lives: `gc` skips it.
    pub fn pin(&self, kind: EntryKind, digest: &Digest) -> Result<Pin, StoreError> {
        let dir = self.entry_dir(kind, digest);
        let lock_path = dir.join("lock");
        let lock = File::open(&lock_path).map_err(|_| StoreError::NotFound(*digest))?;
        rustix::fs::flock(&lock, FlockOperation::LockShared).map_err(|e| StoreError::Io {
            path: lock_path.clone(),
            source: e.into(),
        })?;
        // gc may have moved the entry away between open and flock
        use std::os::unix::fs::MetadataExt;
        let held = lock.metadata().map_err(io_at(&lock_path))?;
        match fs::metadata(&lock_path) {
            Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {}
            _ => return Err(StoreError::NotFound(*digest)),
        }
        touch(&lock_path);
        let path = match kind {
            EntryKind::Snapshot => dir.join("tree"),
            EntryKind::Image => dir.join("rootfs"),
        };
        Ok(Pin { _lock: lock, path })
    }

    /// Imports a `.tar.gz` (or plain `.tar`) snapshot: extracts it safely into
    /// staging, checks the stream digest (against `expected` when given) and
    /// that the stream is exactly the canonical snapshot of what it holds, then
    /// stores it. A rejected import leaves nothing behind.
    pub fn import(
        &self,
        archive: &Path,
        expected: Option<&Digest>,
        progress: &dyn Progress,
    ) -> Result<Snapshot, StoreError> {
        let file: Box<dyn Read> = if archive == Path::new("-") {
            Box::new(io::stdin().lock())
        } else {
            Box::new(File::open(archive).map_err(io_at(archive))?)
        };
        let mut staging = self.staging("import")?;
        let tree = staging.path.join("tree");
        fs::create_dir(&tree).map_err(io_at(&tree))?;
        // Keep the bytes as read (the transport form) while extracting them.
        let kept_path = staging.path.join("snapshot.tar.gz");
        let kept = File::create(&kept_path).map_err(io_at(&kept_path))?;
        let mut input = io::BufReader::with_capacity(
            1 << 20,
            Tee {
                inner: file,
                copy: kept,
            },
        );
        let gzipped = io::BufRead::fill_buf(&mut input)
            .map_err(io_at(archive))?
            .starts_with(&[0x1f, 0x8b]);
        progress.begin("import", 0, 0);
        let opts = ExtractOptions::new(ExtractMode::Snapshot);
        let res = if gzipped {
            extract::extract(
                flate2::bufread::MultiGzDecoder::new(&mut input),
                &tree,
                &opts,
                progress,
            )
        } else {
            extract::extract(&mut input, &tree, &opts, progress)
        };
        progress.finish();
        let got = res?;
        io::copy(&mut input, &mut io::sink()).map_err(io_at(archive))?;
        let Tee { copy: kept, .. } = input.into_inner();
        drop(kept);
        if !gzipped {
            fs::remove_file(&kept_path).map_err(io_at(&kept_path))?;
        }
        if let Some(exp) = expected
            && *exp != got.stream_digest
        {
            return Err(StoreError::DigestMismatch {
                expected: *exp,
                actual: got.stream_digest,
            });
        }
        let opts = SnapshotOptions {
            mtime: got.first_mtime.unwrap_or(0),
        };
        let entries = walk::walk(&tree).map_err(SnapshotError::from)?;
        let canonical = snapshot::produce(&tree, &entries, &opts, None, None, &crate::NoProgress)?;
        if canonical.digest != got.stream_digest {
            return Err(StoreError::NotCanonical {
                stream: got.stream_digest,
                canonical: canonical.digest,
            });
        }
        let meta = SnapshotMeta {
            digest: canonical.digest,
            files: canonical.files,
            bytes: canonical.bytes,
            tar_bytes: canonical.tar_bytes,
            mtime: opts.mtime,
            created: now_secs(),
        };
        let dest = self.commit_snapshot(&mut staging, &meta)?;
        Ok(Snapshot {
            digest: meta.digest,
            files: meta.files,
            bytes: meta.bytes,
            tree: dest.join("tree"),
            cached: false,
            already_stored: !staging.committed,
            gz_bytes: None,
        })
    }

    /// Writes the `.tar.gz` form of a stored snapshot to `out` (atomically);
    /// returns its size. Uses the kept compressed form when there is one, else
    /// regenerates it from the tree and checks the digest on the way.
    pub fn export(
        &self,
        digest: &Digest,
        out: &Path,
        level: i32,
        progress: &dyn Progress,
    ) -> Result<u64, StoreError> {
        let _pin = self.pin(EntryKind::Snapshot, digest)?;
        let dir = self.entry_dir(EntryKind::Snapshot, digest);
        let kept = dir.join("snapshot.tar.gz");
        if kept.is_file() {
            return copy_atomic(&kept, out);
        }
        let meta: SnapshotMeta = read_json(&dir.join("meta.json"))?;
        let tree = dir.join("tree");
        let entries = walk::walk(&tree).map_err(SnapshotError::from)?;
        // Regenerate into the entry (kept for the next export), then copy out.
        let tmp = tmp_sibling(&kept);
        let file = File::create(&tmp).map_err(io_at(&tmp))?;
        let target = GzTarget {
            outputs: vec![GzOut {
                file,
                path: tmp.clone(),
                sync: true,
            }],
            level,
        };
        let opts = SnapshotOptions { mtime: meta.mtime };
        let produced = snapshot::produce(&tree, &entries, &opts, Some(target), None, progress);
        let produced = match produced {
            Ok(p) => p,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e.into());
            }
        };
        if produced.digest != *digest {
            let _ = fs::remove_file(&tmp);
            return Err(StoreError::Corrupt {
                digest: *digest,
                why: format!("its tree now snapshots to {}", produced.digest),
            });
        }
        fs::rename(&tmp, &kept).map_err(io_at(&kept))?;
        copy_atomic(&kept, out)
    }

    /// Every snapshot and image in the store.
    pub fn list(&self) -> Result<Vec<StoreEntry>, StoreError> {
        let mut out = Vec::new();
        for kind in [EntryKind::Snapshot, EntryKind::Image] {
            let dir = self.root.join(kind.dir());
            for de in fs::read_dir(&dir).map_err(io_at(&dir))? {
                let de = de.map_err(io_at(&dir))?;
                let name = de.file_name();
                let Some(digest) = name.to_str().and_then(|n| Digest::from_hex(n).ok()) else {
                    continue;
                };
                let path = de.path();
                let meta_path = path.join("meta.json");
                let bytes = match kind {
                    EntryKind::Snapshot => read_json::<SnapshotMeta>(&meta_path)
                        .map(|m| m.bytes)
                        .unwrap_or(0),
                    EntryKind::Image => read_json::<crate::image_types::ImageMeta>(&meta_path)
                        .map(|m| m.bytes)
                        .unwrap_or(0),
                };
                let gz = fs::metadata(path.join("snapshot.tar.gz"))
                    .map(|m| m.len())
                    .unwrap_or(0);
                let last_used = fs::metadata(path.join("lock"))
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                out.push(StoreEntry {
                    kind,
                    digest,
                    bytes: bytes + gz,
                    last_used,
                    path,
                });
            }
        }
        out.sort_by(|a, b| {
            a.last_used
                .cmp(&b.last_used)
                .then_with(|| a.digest.cmp(&b.digest))
        });
        Ok(out)
    }

    /// Removes entries by age, then least recently used ones until the total
    /// fits; removes staging directories of dead processes.
    pub fn gc(&self, policy: &GcPolicy) -> Result<GcReport, StoreError> {
        let now = now_secs();
        let entries = self.list()?;
        let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
        let mut report = GcReport {
            dry_run: policy.dry_run,
            removed: Vec::new(),
            kept: Vec::new(),
            busy: Vec::new(),
            freed_bytes: 0,
            kept_bytes: 0,
            stale_staging: 0,
        };
        // oldest first (list() sorts by last use)
        for e in entries {
            let too_old = policy
                .max_age
                .is_some_and(|age| now.saturating_sub(e.last_used) > age.as_secs());
            let too_big = policy.max_bytes.is_some_and(|max| total > max);
            if !(too_old || too_big) {
                report.kept_bytes += e.bytes;
                report.kept.push(e);
                continue;
            }
            if policy.dry_run {
                total -= e.bytes;
                report.freed_bytes += e.bytes;
                report.removed.push(e);
                continue;
            }
            if self.remove_entry(&e)? {
                total -= e.bytes;
                report.freed_bytes += e.bytes;
                report.removed.push(e);
            } else {
                report.kept_bytes += e.bytes;
                report.busy.push(e);
            }
        }
        let tmp = self.root.join("tmp");
        for de in fs::read_dir(&tmp).map_err(io_at(&tmp))? {
            let de = de.map_err(io_at(&tmp))?;
            let name = de.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').nth(1).and_then(|p| p.parse::<u32>().ok());
            let alive = pid.is_some_and(|p| {
                p == std::process::id() || Path::new(&format!("/proc/{p}")).exists()
            });
            if !alive {
                report.stale_staging += 1;
                if !policy.dry_run {
                    remove_tree(&de.path()).map_err(io_at(&de.path()))?;
                }
            }
        }
        Ok(report)
    }

    /// Takes the entry's lock exclusively (false if pinned), moves it into
    /// `tmp/` and deletes it there.
    fn remove_entry(&self, e: &StoreEntry) -> Result<bool, StoreError> {
        let lock_path = e.path.join("lock");
        let lock = File::open(&lock_path).map_err(io_at(&lock_path))?;
        match rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(false),
            Err(e) => {
                return Err(StoreError::Io {
                    path: lock_path,
                    source: e.into(),
                });
            }
        }
        let n = STAGING_SEQ.fetch_add(1, Ordering::Relaxed);
        let grave =
            self.root
                .join("tmp")
                .join(format!("gc-{}-{n}-{}", std::process::id(), e.digest.hex()));
        fs::rename(&e.path, &grave).map_err(io_at(&e.path))?;
        sync_dir(&self.root.join(e.kind.dir()))?;
        drop(lock);
        remove_tree(&grave).map_err(io_at(&grave))?;
        Ok(true)
    }
}

/// Marks the staging parent as a "top of hierarchy" directory for the
/// filesystem's inode allocator (`chattr +T`; ext2/3/4 honour it, others may
/// refuse the flag). Best effort: it is an allocation hint, not a guarantee
/// anything depends on.
///
/// Why: ext4 places a new directory's inodes near its parent's, and without a
/// journal (common on build VMs) it scans past every inode freed in the last
/// ~30 s of a block group on each allocation (`recently_deleted`). Staging
/// next to other builds' churn then costs several milliseconds per file; with
/// the flag each staging directory is spread (Orlov) to a quiet block group.
fn mark_topdir(dir: &Path) {
    use rustix::fs::{IFlags, ioctl_getflags, ioctl_setflags};
    let Ok(fd) = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    if let Ok(flags) = ioctl_getflags(&fd)
        && !flags.contains(IFlags::TOPDIR)
    {
        let _ = ioctl_setflags(&fd, flags | IFlags::TOPDIR);
    }
}

/// Sets a file's mtime to now (the "last used" clock); best effort.
fn touch(path: &Path) {
    if let Ok(f) = File::options().append(true).open(path) {
        let _ = f.set_modified(SystemTime::now());
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_at(dir))
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, StoreError> {
    let bytes = fs::read(path).map_err(io_at(path))?;
    serde_json::from_slice(&bytes).map_err(|e| StoreError::Io {
        path: path.to_path_buf(),
        source: io::Error::other(e),
    })
}

fn tmp_sibling(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// A file created for a later rename into place; removed on drop unless
/// renamed.
struct TempFile {
    path: PathBuf,
    file: File,
    renamed: bool,
}

impl TempFile {
    fn create(path: PathBuf) -> Result<Self, StoreError> {
        let file = File::create(&path).map_err(io_at(&path))?;
        Ok(TempFile {
            path,
            file,
            renamed: false,
        })
    }

    fn rename_to(mut self, dst: &Path) -> Result<(), StoreError> {
        fs::rename(&self.path, dst).map_err(io_at(dst))?;
        self.renamed = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Copies `src` to `dst` through a temporary sibling and a rename.
fn copy_atomic(src: &Path, dst: &Path) -> Result<u64, StoreError> {
    let tmp = tmp_sibling(dst);
    let n = fs::copy(src, &tmp).map_err(io_at(&tmp))?;
    fs::rename(&tmp, dst).map_err(io_at(dst))?;
    Ok(n)
}

/// Removes a tree that may contain read-only directories, never following
/// symlinks.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    fn make_writable(p: &Path) -> io::Result<()> {
        let md = fs::symlink_metadata(p)?;
        if md.is_dir() {
            if md.permissions().mode() & 0o700 != 0o700 {
                fs::set_permissions(p, fs::Permissions::from_mode(0o700))?;
            }
            for de in fs::read_dir(p)? {
                let de = de?;
                if de.file_type()?.is_dir() {
                    make_writable(&de.path())?;
                }
            }
        }
        Ok(())
    }
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
        Ok(md) if !md.is_dir() => return fs::remove_file(path),
        Ok(_) => {}
    }
    make_writable(path)?;
    fs::remove_dir_all(path)
}

/// Copies everything read through it into `copy`.
struct Tee<R> {
    inner: R,
    copy: File,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        io::Write::write_all(&mut self.copy, &buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    /// The staging parent carries the "top of hierarchy" allocation hint on
    /// ext2/3/4 (other filesystems may refuse it; opening still works).
    #[test]
    fn staging_parent_is_marked_topdir_on_ext4() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tmp = store.root().join("tmp");
        assert!(tmp.is_dir());
        let fd = rustix::fs::open(&tmp, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        const EXT_MAGIC: i64 = 0xEF53;
        if rustix::fs::fstatfs(&fd).unwrap().f_type as i64 == EXT_MAGIC {
            let flags = rustix::fs::ioctl_getflags(&fd).unwrap();
            assert!(flags.contains(rustix::fs::IFlags::TOPDIR), "{flags:?}");
        }
        // idempotent
        Store::open(dir.path()).unwrap();
    }

    /// A directory replaced after its caller checked it (another device and
    /// inode at the same path) is refused, on the cold path and the warm
    /// one, and nothing is stored; the checked one is snapshotted.
    #[test]
    fn a_directory_replaced_after_the_check_is_refused() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir(&src).unwrap();
        fs::write(src.join("a"), b"a").unwrap();
        let md = fs::metadata(&src).unwrap();
        let checked = (md.dev(), md.ino());
        let store = Store::open(&dir.path().join("store")).unwrap();
        let req = |id| SnapshotRequest {
            expect_root: Some(id),
            ..Default::default()
        };
        // the checked directory is snapshotted (and recorded for the warm path)
        std::thread::sleep(statcache::RACY_WINDOW * 2);
        store
            .snapshot_with(&src, &req(checked), &NoProgress)
            .unwrap();
        // swapped for another directory: refused, warm record or not
        fs::rename(&src, dir.path().join("old")).unwrap();
        fs::create_dir(&src).unwrap();
        fs::write(src.join("a"), b"a").unwrap();
        for _ in 0..2 {
            let err = store
                .snapshot_with(&src, &req(checked), &NoProgress)
                .unwrap_err();
            assert!(matches!(err, StoreError::Replaced { .. }), "{err}");
        }
        assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
    }

    /// Without the warm cache nothing is recorded or reused: a job's
    /// workspace vendor dir leaves no record behind.
    #[test]
    fn snapshot_without_warm_cache_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir(&src).unwrap();
        fs::write(src.join("a"), b"a").unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        // (old enough that the record would not be racy)
        std::thread::sleep(statcache::RACY_WINDOW * 2);
        let cold = SnapshotRequest {
            warm_cache: false,
            ..Default::default()
        };
        let first = store.snapshot_with(&src, &cold, &NoProgress).unwrap();
        let second = store.snapshot_with(&src, &cold, &NoProgress).unwrap();
        assert!(!first.cached && !second.cached);
        assert!(!first.already_stored && second.already_stored);
        assert_eq!(first.digest, second.digest);
        assert_eq!(
            fs::read_dir(store.root().join("statcache"))
                .unwrap()
                .count(),
            0
        );
        // and with it (the default) the record is made and used
        store.snapshot(&src, &NoProgress).unwrap();
        assert!(store.snapshot(&src, &NoProgress).unwrap().cached);
    }

    /// A cold snapshot of content the store holds already (a fresh checkout
    /// of an unchanged committed directory) says so, keeps the stored entry
    /// and leaves no staging copy; so does an import of it.
    #[test]
    fn cold_snapshot_of_stored_content_says_it_was_stored_already() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let mut snaps = Vec::new();
        for name in ["checkout-1", "checkout-2"] {
            let src = dir.path().join(name);
            fs::create_dir_all(src.join("dep")).unwrap();
            fs::write(src.join("dep/lib.rs"), b"pub fn f() {}").unwrap();
            let req = SnapshotRequest {
                warm_cache: false,
                out: Some(dir.path().join(format!("{name}.tar.gz"))),
                ..Default::default()
            };
            snaps.push(store.snapshot_with(&src, &req, &NoProgress).unwrap());
        }
        assert!(!snaps[0].already_stored, "the first one is new");
        assert!(snaps[1].already_stored && !snaps[1].cached);
        assert_eq!(snaps[0].digest, snaps[1].digest);
        assert_eq!(snaps[0].tree, snaps[1].tree);
        assert_eq!(
            fs::read_dir(store.root().join("snapshots"))
                .unwrap()
                .count(),
            1
        );
        assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
        // the second's .tar.gz was written all the same
        assert!(dir.path().join("checkout-2.tar.gz").is_file());
        let imported = store
            .import(&dir.path().join("checkout-2.tar.gz"), None, &NoProgress)
            .unwrap();
        assert!(imported.already_stored && imported.digest == snaps[0].digest);
        let other = Store::open(&dir.path().join("other-store")).unwrap();
        let fresh = other
            .import(&dir.path().join("checkout-1.tar.gz"), None, &NoProgress)
            .unwrap();
        assert!(!fresh.already_stored);
    }
}
