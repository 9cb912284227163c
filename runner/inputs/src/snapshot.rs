//! Producing a snapshot from a walked tree in one pass: each file is read once
//! and its bytes go, as part of the canonical tar stream, to the SHA-256 hasher
//! (the digest), to the parallel gzip pipeline (the optional transport form) and
//! to the materialized copy (the store's read-only tree), all at the same time.

use crate::Digest;
use crate::gz::{self, GzPipeline};
use crate::progress::Progress;
use crate::tarfmt::{self, Type};
use crate::walk::{self, Entry, Kind, StatKey, WalkError};
use rustix::fs::{Mode, OFlags};
use sha2::{Digest as _, Sha256};
use std::ffi::OsStr;
use std::fs::{self, File, FileTimes};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Size of the pieces the tar stream is cut into for hashing and compression.
const CHUNK: usize = 1 << 20;

/// Knobs of the canonical form.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotOptions {
    /// The mtime written for every entry (SOURCE_DATE_EPOCH, else 0).
    pub mtime: u64,
}

impl SnapshotOptions {
    /// Options from the environment: `SOURCE_DATE_EPOCH` when set, else 0.
    pub fn from_env() -> Result<Self, SnapshotError> {
        match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) if !v.is_empty() => Self::with_epoch(&v),
            _ => Ok(SnapshotOptions::default()),
        }
    }

    /// Options with `SOURCE_DATE_EPOCH`-style decimal seconds.
    pub fn with_epoch(v: &str) -> Result<Self, SnapshotError> {
        let mtime: u64 = v
            .trim()
            .parse()
            .map_err(|_| SnapshotError::BadEpoch(v.to_owned()))?;
        // GNU tar's 11 octal digits; later dates would need base-256 mtimes.
        if mtime >= 1 << 33 {
            return Err(SnapshotError::BadEpoch(v.to_owned()));
        }
        Ok(SnapshotOptions { mtime })
    }
}

/// Why a snapshot failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Walk(#[from] WalkError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0}: changed while being snapshotted (retry when the tree is quiet)")]
    Changed(PathBuf),
    #[error("writing {path}: {source}")]
    Output { path: PathBuf, source: io::Error },
    #[error("SOURCE_DATE_EPOCH must be decimal seconds below 2^33: {0:?}")]
    BadEpoch(String),
}

/// What producing a snapshot yielded.
#[derive(Clone, Debug)]
pub struct Produced {
    pub digest: Digest,
    /// Regular files in the tree.
    pub files: u64,
    /// Total bytes of regular files.
    pub bytes: u64,
    /// Length of the uncompressed tar stream.
    pub tar_bytes: u64,
    /// Length of the gzip form, when one was written.
    pub gz_bytes: Option<u64>,
}

/// Where the compressed form goes.
#[derive(Debug)]
pub struct GzTarget {
    pub file: File,
    pub path: PathBuf,
    pub level: i32,
}

/// Writes the canonical tar of `entries` (from [`walk::walk`] on `root`) to the
/// hasher, and optionally to a gzip file and a materialized tree at
/// `materialize` (an existing empty directory).
pub fn produce(
    root: &Path,
    entries: &[Entry],
    opts: &SnapshotOptions,
    gz_out: Option<GzTarget>,
    materialize: Option<&Path>,
    progress: &dyn Progress,
) -> Result<Produced, SnapshotError> {
    let (files, bytes) = totals(entries);
    progress.begin("snapshot", files, bytes);
    let res = std::thread::scope(|s| -> Result<Produced, SnapshotError> {
        let (hash_tx, hash_rx) = sync_channel::<Arc<Vec<u8>>>(4);
        let hasher = s.spawn(move || {
            let mut h = Sha256::new();
            for c in hash_rx {
                h.update(&c[..]);
            }
            Digest::from(h)
        });
        let (gz, gz_path) = match gz_out {
            Some(t) => {
                let p = GzPipeline::start(s, t.file, t.level, gz::threads()).map_err(|source| {
                    SnapshotError::Output {
                        path: t.path.clone(),
                        source,
                    }
                })?;
                (Some(p), Some(t.path))
            }
            None => (None, None),
        };
        let mut out = Stream {
            chunk: Vec::with_capacity(CHUNK + tarfmt::BLOCK * 4),
            hash_tx,
            gz_tx: gz.as_ref().map(|g| g.sender.clone()),
            seq: 0,
            total: 0,
        };
        let body = write_entries(root, entries, opts, &mut out, materialize, progress);
        let tar_bytes = match body {
            Ok(()) => out.finish(),
            Err(e) => Err(e),
        };
        drop(out);
        let gz_bytes = match gz {
            Some(g) => {
                let r = g.finish();
                Some(r.map_err(|source| SnapshotError::Output {
                    path: gz_path.clone().unwrap_or_default(),
                    source,
                }))
            }
            None => None,
        };
        let digest = hasher.join().expect("hasher thread panicked");
        let tar_bytes = tar_bytes?;
        let gz_bytes = gz_bytes.transpose()?;
        Ok(Produced {
            digest,
            files,
            bytes,
            tar_bytes,
            gz_bytes,
        })
    });
    progress.finish();
    res
}

/// Digest of `dir` without a store: walk, read, hash.
pub fn snapshot_digest(dir: &Path, opts: &SnapshotOptions) -> Result<Digest, SnapshotError> {
    let entries = walk::walk(dir)?;
    Ok(produce(dir, &entries, opts, None, None, &crate::NoProgress)?.digest)
}

/// Number of regular files and their total size.
pub fn totals(entries: &[Entry]) -> (u64, u64) {
    entries.iter().fold((0, 0), |(f, b), e| match e.kind {
        Kind::File { size, .. } => (f + 1, b + size),
        _ => (f, b),
    })
}

struct Stream {
    chunk: Vec<u8>,
    hash_tx: SyncSender<Arc<Vec<u8>>>,
    gz_tx: Option<SyncSender<(u64, Arc<Vec<u8>>)>>,
    seq: u64,
    total: u64,
}

impl Stream {
    fn flush(&mut self) -> Result<(), SnapshotError> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let chunk = Arc::new(std::mem::replace(
            &mut self.chunk,
            Vec::with_capacity(CHUNK + tarfmt::BLOCK * 4),
        ));
        self.total += chunk.len() as u64;
        let stopped = || SnapshotError::Output {
            path: PathBuf::from("<pipeline>"),
            source: io::Error::other("output pipeline stopped"),
        };
        if let Some(tx) = &self.gz_tx {
            tx.send((self.seq, Arc::clone(&chunk)))
                .map_err(|_| stopped())?;
        }
        self.seq += 1;
        self.hash_tx.send(chunk).map_err(|_| stopped())?;
        Ok(())
    }

    fn maybe_flush(&mut self) -> Result<(), SnapshotError> {
        if self.chunk.len() >= CHUNK {
            self.flush()
        } else {
            Ok(())
        }
    }

    fn finish(&mut self) -> Result<u64, SnapshotError> {
        let len = self.total + self.chunk.len() as u64;
        let trailer = tarfmt::trailer_len(len);
        self.chunk.resize(self.chunk.len() + trailer as usize, 0);
        self.flush()?;
        Ok(self.total)
    }
}

fn write_entries(
    root: &Path,
    entries: &[Entry],
    opts: &SnapshotOptions,
    out: &mut Stream,
    materialize: Option<&Path>,
    progress: &dyn Progress,
) -> Result<(), SnapshotError> {
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(opts.mtime);
    for e in entries {
        let name = e.tar_name();
        let src = root.join(OsStr::from_bytes(&e.rel));
        let dst = materialize.map(|m| m.join(OsStr::from_bytes(&e.rel)));
        match &e.kind {
            Kind::Dir => {
                tarfmt::append_header(&mut out.chunk, &name, Type::Dir, 0o755, 0, opts.mtime, b"");
                if let Some(dst) = &dst
                    && !e.rel.is_empty()
                {
                    fs::create_dir(dst).map_err(|source| SnapshotError::Io {
                        path: dst.clone(),
                        source,
                    })?;
                }
            }
            Kind::Symlink { target } => {
                tarfmt::append_header(
                    &mut out.chunk,
                    &name,
                    Type::Symlink,
                    0o755,
                    0,
                    opts.mtime,
                    target,
                );
                if let Some(dst) = &dst {
                    std::os::unix::fs::symlink(OsStr::from_bytes(target), dst).map_err(
                        |source| SnapshotError::Io {
                            path: dst.clone(),
                            source,
                        },
                    )?;
                    set_link_mtime(dst, opts.mtime)?;
                }
            }
            Kind::File { size, owner_exec } => {
                let mode = tarfmt::normalized_mode(Type::File, *owner_exec);
                tarfmt::append_header(
                    &mut out.chunk,
                    &name,
                    Type::File,
                    mode,
                    *size,
                    opts.mtime,
                    b"",
                );
                let mut dst_file = match &dst {
                    Some(dst) => Some(
                        fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            // read-only from the start; this descriptor may still write
                            .mode(if *owner_exec { 0o555 } else { 0o444 })
                            .open(dst)
                            .map_err(|source| SnapshotError::Io {
                                path: dst.clone(),
                                source,
                            })?,
                    ),
                    None => None,
                };
                copy_file(&src, &e.stat, *size, out, dst_file.as_mut(), dst.as_deref())?;
                if let (Some(f), Some(dst)) = (dst_file, &dst) {
                    f.set_times(FileTimes::new().set_modified(mtime).set_accessed(mtime))
                        .map_err(|source| SnapshotError::Io {
                            path: dst.clone(),
                            source,
                        })?;
                    // Start writeback now (asynchronously) so that the store's
                    // final syncfs has little left to wait for.
                    let _ = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed);
                }
                progress.advance(1, *size);
            }
        }
        out.maybe_flush()?;
    }
    if let Some(m) = materialize {
        // Directories last, deepest first: creating children changes their mtime.
        for e in entries.iter().rev().filter(|e| matches!(e.kind, Kind::Dir)) {
            let dst = m.join(OsStr::from_bytes(&e.rel));
            let f = File::open(&dst).map_err(|source| SnapshotError::Io {
                path: dst.clone(),
                source,
            })?;
            f.set_times(FileTimes::new().set_modified(mtime).set_accessed(mtime))
                .and_then(|()| f.set_permissions(fs::Permissions::from_mode(0o555)))
                .map_err(|source| SnapshotError::Io {
                    path: dst.clone(),
                    source,
                })?;
        }
    }
    Ok(())
}

/// Appends one file's content (and padding) to the stream, copying it to the
/// materialized file too, and checks the file did not change meanwhile.
fn copy_file(
    src: &Path,
    walked: &StatKey,
    size: u64,
    out: &mut Stream,
    mut dst: Option<&mut File>,
    dst_path: Option<&Path>,
) -> Result<(), SnapshotError> {
    let io_err = |source| SnapshotError::Io {
        path: src.to_path_buf(),
        source,
    };
    let fd = rustix::fs::open(
        src,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err(e.into()))?;
    let mut f = File::from(fd);
    let before = StatKey::of(&f.metadata().map_err(io_err)?);
    if before.ino != walked.ino || before.dev != walked.dev || before.size != size {
        return Err(SnapshotError::Changed(src.to_path_buf()));
    }
    let mut left = size;
    while left > 0 {
        let room = (CHUNK.saturating_sub(out.chunk.len())).max(64 * 1024) as u64;
        let n = left.min(room) as usize;
        let start = out.chunk.len();
        out.chunk.resize(start + n, 0);
        f.read_exact(&mut out.chunk[start..]).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                SnapshotError::Changed(src.to_path_buf())
            } else {
                io_err(e)
            }
        })?;
        if let Some(d) = dst.as_deref_mut() {
            d.write_all(&out.chunk[start..])
                .map_err(|source| SnapshotError::Io {
                    path: dst_path.unwrap_or(Path::new("")).to_path_buf(),
                    source,
                })?;
        }
        left -= n as u64;
        out.maybe_flush()?;
    }
    let after = StatKey::of(&f.metadata().map_err(io_err)?);
    if after.size != size
        || (after.mtime, after.mtime_ns) != (walked.mtime, walked.mtime_ns)
        || (after.ctime, after.ctime_ns) != (walked.ctime, walked.ctime_ns)
    {
        return Err(SnapshotError::Changed(src.to_path_buf()));
    }
    let pad = tarfmt::padding_for(size);
    out.chunk.resize(out.chunk.len() + pad, 0);
    Ok(())
}

fn set_link_mtime(path: &Path, mtime: u64) -> Result<(), SnapshotError> {
    let ts = rustix::fs::Timespec {
        tv_sec: mtime as i64,
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: ts,
        last_modification: ts,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| SnapshotError::Io {
        path: path.to_path_buf(),
        source: e.into(),
    })
}

/// Seconds since the epoch, for timestamps in store metadata.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
