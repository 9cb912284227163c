//! The warm-path cache: for each snapshotted source directory, a hash of every
//! entry's path, type, mode, size, inode, device, link count, mtime and ctime
//! (and link target), next to the digest those entries produced. If a fresh walk
//! (stat only) hashes to the same value, the tree is unchanged and no file
//! content is read. Any change to any of those fields — including a rewrite
//! that restores the old size and mtime, which still moves ctime — misses.
//!
//! Racy entries: a file changed in the same clock tick as the walk could change
//! again without moving its ctime, so a cache is only written when every ctime
//! is older than the snapshot's start by more than [`RACY_WINDOW`].

use crate::Digest;
use crate::walk::{Entry, Kind};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Entries whose ctime is this close to the start of the walk (or later) make
/// the result uncacheable. Larger than any kernel timestamp granularity.
pub const RACY_WINDOW: Duration = Duration::from_millis(100);

/// Version of the records and of the digests they hold. A record of another
/// version is ignored (the tree is read again). 2: digests of version 1 may
/// be wrong for trees with names over 100 bytes (a misaligned long-name
/// entry, fixed in `tarfmt`), so they must not be reused.
pub const VERSION: u32 = 2;

/// One cache record (JSON, one file per source directory).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub version: u32,
    pub source: PathBuf,
    pub manifest: Digest,
    pub digest: Digest,
    pub files: u64,
    pub bytes: u64,
}

/// Hash of the walked stat data of `entries` (with the snapshot's mtime option).
pub fn manifest(entries: &[Entry], mtime_opt: u64) -> Digest {
    let mut h = Sha256::new();
    h.update(VERSION.to_le_bytes());
    h.update(mtime_opt.to_le_bytes());
    for e in entries {
        h.update((e.rel.len() as u64).to_le_bytes());
        h.update(&e.rel);
        let s = &e.stat;
        for v in [s.dev, s.ino, u64::from(s.mode), s.size, s.nlink] {
            h.update(v.to_le_bytes());
        }
        for v in [s.mtime, s.mtime_ns, s.ctime, s.ctime_ns] {
            h.update(v.to_le_bytes());
        }
        match &e.kind {
            Kind::Dir => h.update([b'd']),
            Kind::File { .. } => h.update([b'f']),
            Kind::Symlink { target } => {
                h.update([b'l']);
                h.update((target.len() as u64).to_le_bytes());
                h.update(target);
            }
        }
    }
    Digest::from(h)
}

/// Whether some entry changed too recently (relative to `start`) for its stat
/// data to prove its content.
pub fn is_racy(entries: &[Entry], start: SystemTime) -> bool {
    let start_ns = start
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    let cutoff = start_ns - RACY_WINDOW.as_nanos() as i128;
    entries.iter().any(|e| e.stat.ctime_nanos() >= cutoff)
}

/// The cache file for `source` (an absolute, canonical path) under `dir`.
pub fn path_for(dir: &Path, source: &Path) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let key = Digest::of(source.as_os_str().as_bytes());
    dir.join(format!("{}.json", key.hex()))
}

pub fn load(file: &Path) -> Option<Record> {
    let bytes = std::fs::read(file).ok()?;
    let rec: Record = serde_json::from_slice(&bytes).ok()?;
    (rec.version == VERSION).then_some(rec)
}

pub fn save(file: &Path, rec: &Record) -> std::io::Result<()> {
    let tmp = file.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(
        &tmp,
        serde_json::to_vec(rec).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, file)
}

pub fn new_record(
    source: PathBuf,
    manifest: Digest,
    digest: Digest,
    files: u64,
    bytes: u64,
) -> Record {
    Record {
        version: VERSION,
        source,
        manifest,
        digest,
        files,
        bytes,
    }
}
