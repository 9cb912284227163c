//! Producing a snapshot from a walked tree in one pass: each file is read once,
//! into the canonical tar stream, and the stream's chunks go at the same time
//! to the SHA-256 thread (the digest), to the parallel gzip pipeline (the
//! optional transport form) and to the materializer thread (the store's
//! read-only tree), which writes the files from those same buffers. The main
//! thread only opens, stats and reads; creating, writing and closing store
//! files overlaps with it.
//!
//! Files are opened relative to open directory descriptors (`openat` with
//! `O_NOFOLLOW` on every component below the root), on the source side and in
//! the materialized tree alike.

use crate::Digest;
pub use crate::gz::GzOut;
use crate::gz::{self, BufPool, ChunkBuf, GzPipeline};
use crate::progress::Progress;
use crate::tarfmt::{self, Type};
use crate::walk::{self, Entry, Kind, StatKey, WalkError};
use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps};
use sha2::{Digest as _, Sha256};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{SystemTime, UNIX_EPOCH};

/// Size of the pieces the tar stream is cut into for hashing and compression.
const CHUNK: usize = 1 << 20;
/// Capacity of a chunk buffer: a chunk may overshoot [`CHUNK`] by one read
/// (at most 64 KiB) plus headers and padding.
const CHUNK_CAP: usize = CHUNK + (128 << 10);
/// Chunks in flight towards the materializer: enough that a burst of
/// slow creates (many small files, a directory) does not stop the main
/// thread from feeding the compressors, which are the bottleneck (with 8,
/// the main thread waited 0.1–0.25 s per cold snapshot of the benchmark
/// tree on the materializer; with 32–48, 0.03–0.09 s).
const MATERIALIZE_QUEUE: usize = 32;
/// The materializer has the store's filesystem start writeback (a `syncfs`
/// on a separate thread, which the kernel's flusher threads carry out) each
/// time this many bytes were written, so that writing to disk overlaps with
/// reading, hashing and compressing, and the store's final `syncfs` (which
/// alone decides durability) finds little left to do. Per-file `fadvise`
/// or `fsync` would do that writeback on the pipeline's own threads.
const WRITEBACK_EVERY: u64 = 16 << 20;

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
    #[error("output pipeline stopped")]
    PipelineStopped,
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

/// Where the compressed form goes: one or more files that all receive the
/// same bytes.
#[derive(Debug)]
pub struct GzTarget {
    pub outputs: Vec<GzOut>,
    pub level: i32,
}

/// Writes the canonical tar of `entries` (from [`walk::walk`] on `root`) to the
/// hasher, and optionally to gzip files and a materialized tree at
/// `materialize` (an existing empty directory). The materialized tree is not
/// synced here: the store syncs the filesystem before committing it.
pub fn produce(
    root: &Path,
    entries: &[Entry],
    opts: &SnapshotOptions,
    gz_out: Option<GzTarget>,
    materialize: Option<&Path>,
    progress: &dyn Progress,
) -> Result<Produced, SnapshotError> {
    let (files, bytes) = totals(entries);
    let mat_root = match materialize {
        Some(m) => {
            Some(open_dir(rustix::fs::CWD, m, OFlags::NOFOLLOW).map_err(io_err(m.to_path_buf()))?)
        }
        None => None,
    };
    progress.begin("snapshot", files, bytes);
    let res = std::thread::scope(|s| -> Result<Produced, SnapshotError> {
        let (hash_tx, hash_rx) = sync_channel::<Arc<ChunkBuf>>(4);
        let hasher = gz::spawn_named(s, "snap-sha256", move || {
            let mut h = Sha256::new();
            for c in hash_rx {
                h.update(&c[..]);
            }
            Digest::from(h)
        })
        .map_err(|source| SnapshotError::Output {
            path: PathBuf::from("<sha256 thread>"),
            source,
        })?;
        let gz = match gz_out {
            Some(t) => Some(
                GzPipeline::start(s, t.outputs, t.level, gz::threads()).map_err(|source| {
                    SnapshotError::Output {
                        path: PathBuf::from("<gzip>"),
                        source,
                    }
                })?,
            ),
            None => None,
        };
        let (mat_tx, materializer) = match (mat_root, materialize) {
            (Some(fd), Some(path)) => {
                let (tx, rx) = sync_channel::<Batch>(MATERIALIZE_QUEUE);
                let mut m = Materializer::new(path, entries, fd, opts.mtime);
                // Writeback starter: see `WRITEBACK_EVERY`.
                let (wb_tx, wb_rx) = sync_channel::<()>(1);
                let wb_fd = m.dirs[0]
                    .1
                    .try_clone()
                    .map_err(io_err(path.to_path_buf()))?;
                gz::spawn_named(s, "snap-writeback", move || {
                    for () in wb_rx {
                        // Only a head start: errors surface in the store's
                        // final syncfs, which decides.
                        let _ = rustix::fs::syncfs(&wb_fd);
                    }
                })
                .map_err(|source| SnapshotError::Output {
                    path: PathBuf::from("<writeback thread>"),
                    source,
                })?;
                m.writeback = Some(wb_tx);
                let h = gz::spawn_named(s, "snap-materialize", move || m.run(rx)).map_err(
                    |source| SnapshotError::Output {
                        path: PathBuf::from("<materializer thread>"),
                        source,
                    },
                )?;
                (Some(tx), Some(h))
            }
            _ => (None, None),
        };
        let pool = BufPool::default();
        let mut out = Stream {
            chunk: pool.get(CHUNK_CAP),
            pool,
            ops: Vec::new(),
            hash_tx,
            gz_tx: gz.as_ref().map(|g| g.sender.clone()),
            mat_tx,
            seq: 0,
            total: 0,
        };
        let tar_bytes =
            write_entries(root, entries, opts, &mut out, progress).and_then(|()| out.finish());
        drop(out);
        // Join everything; a thread's own error explains a stopped pipeline.
        let mat_res = materializer.map(|m| m.join().expect("materializer thread panicked"));
        let gz_res = gz.map(|g| {
            g.finish().map_err(|(path, source)| SnapshotError::Output {
                path: path.unwrap_or_else(|| PathBuf::from("<gzip>")),
                source,
            })
        });
        let digest = hasher.join().expect("hasher thread panicked");
        let thread_err = match (mat_res, &gz_res) {
            (Some(Err(e)), _) => Some(e),
            _ => None,
        };
        let tar_bytes = match (tar_bytes, thread_err) {
            (Err(SnapshotError::PipelineStopped), Some(e)) => return Err(e),
            (Err(SnapshotError::PipelineStopped), None) => match gz_res {
                Some(Err(e)) => return Err(e),
                _ => return Err(SnapshotError::PipelineStopped),
            },
            (Err(e), _) => return Err(e),
            (Ok(_), Some(e)) => return Err(e),
            (Ok(n), None) => n,
        };
        let gz_bytes = gz_res.transpose()?;
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

/// What the materializer does, in stream order; indices are into the entries.
#[derive(Debug)]
enum Op {
    /// Create directory `entries[i]` (below the root).
    Dir(usize),
    Symlink(usize),
    /// Create file `entries[i]`; the `Data` that follows is its content.
    File(usize),
    /// Bytes of the current file: this range of the batch's chunk.
    Data(usize, usize),
    /// The current file is complete.
    EndFile,
}

/// A chunk of the tar stream and what to materialize from it.
struct Batch {
    chunk: Arc<ChunkBuf>,
    ops: Vec<Op>,
}

struct Stream {
    chunk: Vec<u8>,
    pool: BufPool,
    ops: Vec<Op>,
    hash_tx: SyncSender<Arc<ChunkBuf>>,
    gz_tx: Option<SyncSender<(u64, Arc<ChunkBuf>)>>,
    mat_tx: Option<SyncSender<Batch>>,
    seq: u64,
    total: u64,
}

impl Stream {
    fn materializing(&self) -> bool {
        self.mat_tx.is_some()
    }

    fn op(&mut self, op: Op) {
        if self.mat_tx.is_some() {
            self.ops.push(op);
        }
    }

    fn flush(&mut self) -> Result<(), SnapshotError> {
        if self.chunk.is_empty() && self.ops.is_empty() {
            return Ok(());
        }
        let next = self.pool.get(CHUNK_CAP);
        let chunk = self.pool.share(std::mem::replace(&mut self.chunk, next));
        if let Some(tx) = &self.mat_tx {
            let ops = std::mem::take(&mut self.ops);
            tx.send(Batch {
                chunk: Arc::clone(&chunk),
                ops,
            })
            .map_err(|_| SnapshotError::PipelineStopped)?;
        }
        if chunk.is_empty() {
            return Ok(());
        }
        self.total += chunk.len() as u64;
        if let Some(tx) = &self.gz_tx {
            tx.send((self.seq, Arc::clone(&chunk)))
                .map_err(|_| SnapshotError::PipelineStopped)?;
        }
        self.seq += 1;
        self.hash_tx
            .send(chunk)
            .map_err(|_| SnapshotError::PipelineStopped)
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

/// An error-mapping closure naming `path`, for `io::Error` and `Errno` alike.
fn io_err<E: Into<io::Error>>(path: PathBuf) -> impl FnOnce(E) -> SnapshotError {
    move |e| SnapshotError::Io {
        path,
        source: e.into(),
    }
}

/// The last component of an entry's relative path, and its parent's.
fn split_rel(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&[], rel),
    }
}

fn open_dir<Fd: rustix::fd::AsFd, P: rustix::path::Arg>(
    at: Fd,
    name: P,
    extra: OFlags,
) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        at,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | extra,
        Mode::empty(),
    )
}

/// Open source directories from the root down to the current entry's parent.
struct DirStack {
    /// (index of the directory's entry, its descriptor)
    dirs: Vec<(usize, OwnedFd)>,
}

impl DirStack {
    /// The descriptor of the directory holding `entries[i]`, leaving the
    /// directories the walk has finished with.
    fn parent_of(&mut self, entries: &[Entry], i: usize) -> &OwnedFd {
        let (parent, _) = split_rel(&entries[i].rel);
        while self.dirs.len() > 1 && entries[self.dirs[self.dirs.len() - 1].0].rel != parent {
            self.dirs.pop();
        }
        &self.dirs[self.dirs.len() - 1].1
    }
}

fn write_entries(
    root: &Path,
    entries: &[Entry],
    opts: &SnapshotOptions,
    out: &mut Stream,
    progress: &dyn Progress,
) -> Result<(), SnapshotError> {
    let at = |rel: &[u8]| root.join(OsStr::from_bytes(rel));
    // The root may be a symlink to a directory (as for the walk); nothing below it is followed.
    let root_fd = open_dir(rustix::fs::CWD, root, OFlags::empty()).map_err(io_err(at(b"")))?;
    let st = rustix::fs::fstat(&root_fd).map_err(io_err(at(b"")))?;
    if let Some(first) = entries.first()
        && (st.st_ino, st.st_dev) != (first.stat.ino, first.stat.dev)
    {
        return Err(SnapshotError::Changed(root.to_path_buf()));
    }
    let mut src = DirStack {
        dirs: vec![(0, root_fd)],
    };
    for (i, e) in entries.iter().enumerate() {
        let name = e.tar_name();
        match &e.kind {
            Kind::Dir => {
                tarfmt::append_header(&mut out.chunk, &name, Type::Dir, 0o755, 0, opts.mtime, b"");
                if i > 0 {
                    let parent = src.parent_of(entries, i);
                    let (_, base) = split_rel(&e.rel);
                    let fd = open_dir(parent, OsStr::from_bytes(base), OFlags::NOFOLLOW)
                        .map_err(io_err(at(&e.rel)))?;
                    src.dirs.push((i, fd));
                    out.op(Op::Dir(i));
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
                out.op(Op::Symlink(i));
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
                let parent = src.parent_of(entries, i);
                let (_, base) = split_rel(&e.rel);
                // NONBLOCK: a fifo swapped in since the walk must not hang
                // the open (the fstat after reading then refuses it).
                let fd = rustix::fs::openat(
                    parent,
                    OsStr::from_bytes(base),
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(io_err(at(&e.rel)))?;
                out.op(Op::File(i));
                copy_file(File::from(fd), &e.stat, *size, out).map_err(|err| err.at(at(&e.rel)))?;
                out.op(Op::EndFile);
                progress.advance(1, *size);
            }
        }
        out.maybe_flush()?;
    }
    Ok(())
}

/// Why copying one file failed, before the path is attached.
enum CopyError {
    Io(io::Error),
    Changed,
    Stream(SnapshotError),
}

impl CopyError {
    fn at(self, path: PathBuf) -> SnapshotError {
        match self {
            CopyError::Io(source) => SnapshotError::Io { path, source },
            CopyError::Changed => SnapshotError::Changed(path),
            CopyError::Stream(e) => e,
        }
    }
}

/// Appends one file's content (and padding) to the stream, and checks the
/// file did not change since the walk.
fn copy_file(mut f: File, walked: &StatKey, size: u64, out: &mut Stream) -> Result<(), CopyError> {
    let mut left = size;
    while left > 0 {
        let room = (CHUNK.saturating_sub(out.chunk.len())).max(64 * 1024) as u64;
        let n = left.min(room) as usize;
        let start = out.chunk.len();
        out.chunk.reserve(n);
        // read_to_end fills the spare capacity without zeroing it first
        let got = (&mut f)
            .take(n as u64)
            .read_to_end(&mut out.chunk)
            .map_err(CopyError::Io)?;
        if got != n {
            return Err(CopyError::Changed);
        }
        if out.materializing() {
            out.op(Op::Data(start, start + n));
        }
        left -= n as u64;
        out.maybe_flush().map_err(CopyError::Stream)?;
    }
    // One fstat, after reading: the same inode as walked, whose size, mtime
    // and ctime have not moved since the walk, held the bytes just read.
    let after = StatKey::of(&f.metadata().map_err(CopyError::Io)?);
    if (after.ino, after.dev) != (walked.ino, walked.dev)
        || after.size != size
        || (after.mtime, after.mtime_ns) != (walked.mtime, walked.mtime_ns)
        || (after.ctime, after.ctime_ns) != (walked.ctime, walked.ctime_ns)
    {
        return Err(CopyError::Changed);
    }
    let pad = tarfmt::padding_for(size);
    out.chunk.resize(out.chunk.len() + pad, 0);
    Ok(())
}

/// Writes the materialized tree from the stream's chunks: directories,
/// symlinks and files created relative to their parent's descriptor
/// (`O_EXCL|O_NOFOLLOW`), files read-only from creation (0444, or 0555 when
/// executable), every mtime normalized, directories made 0555 once their last
/// entry is in.
struct Materializer<'a> {
    root: &'a Path,
    entries: &'a [Entry],
    /// Open directories from the tree root to the current one.
    dirs: Vec<(usize, OwnedFd)>,
    file: Option<(usize, File)>,
    times: Timestamps,
    /// The umask would strip read or execute bits from new files: fix each.
    chmod_files: bool,
    /// Bytes written since writeback was last started.
    unsynced: u64,
    /// Asks the writeback thread to start writing back (see `WRITEBACK_EVERY`).
    writeback: Option<SyncSender<()>>,
}

impl<'a> Materializer<'a> {
    fn new(root: &'a Path, entries: &'a [Entry], root_fd: OwnedFd, mtime: u64) -> Self {
        let ts = Timespec {
            tv_sec: mtime as i64,
            tv_nsec: 0,
        };
        Materializer {
            root,
            entries,
            dirs: vec![(0, root_fd)],
            file: None,
            times: Timestamps {
                last_access: ts,
                last_modification: ts,
            },
            chmod_files: current_umask().is_none_or(|m| m & 0o555 != 0),
            unsynced: 0,
            writeback: None,
        }
    }

    fn path(&self, i: usize) -> PathBuf {
        self.root.join(OsStr::from_bytes(&self.entries[i].rel))
    }

    fn run(mut self, rx: Receiver<Batch>) -> Result<(), SnapshotError> {
        for batch in rx {
            for op in &batch.ops {
                self.apply(op, &batch.chunk)?;
            }
        }
        while let Some((i, fd)) = self.dirs.pop() {
            self.seal_dir(i, &fd)?;
        }
        Ok(())
    }

    fn apply(&mut self, op: &Op, chunk: &[u8]) -> Result<(), SnapshotError> {
        match *op {
            Op::Dir(i) => {
                let name = OsStr::from_bytes(self.enter_parent(i)?);
                let parent = &self.dirs[self.dirs.len() - 1].1;
                rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))
                    .map_err(io_err(self.path(i)))?;
                let fd = open_dir(parent, name, OFlags::NOFOLLOW).map_err(io_err(self.path(i)))?;
                self.dirs.push((i, fd));
            }
            Op::Symlink(i) => {
                let Kind::Symlink { target } = &self.entries[i].kind else {
                    unreachable!("symlink op for a non-symlink entry");
                };
                let name = OsStr::from_bytes(self.enter_parent(i)?);
                let parent = &self.dirs[self.dirs.len() - 1].1;
                rustix::fs::symlinkat(OsStr::from_bytes(target), parent, name)
                    .map_err(io_err(self.path(i)))?;
                rustix::fs::utimensat(parent, name, &self.times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(io_err(self.path(i)))?;
            }
            Op::File(i) => {
                let Kind::File { owner_exec, .. } = self.entries[i].kind else {
                    unreachable!("file op for a non-file entry");
                };
                let name = OsStr::from_bytes(self.enter_parent(i)?);
                let parent = &self.dirs[self.dirs.len() - 1].1;
                let fd = rustix::fs::openat(
                    parent,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    // read-only from the start; this descriptor may still write
                    file_mode(owner_exec),
                )
                .map_err(io_err(self.path(i)))?;
                self.file = Some((i, File::from(fd)));
            }
            Op::Data(a, b) => {
                let Some((i, f)) = self.file.as_mut() else {
                    unreachable!("data op outside a file");
                };
                let i = *i;
                if let Err(e) = f.write_all(&chunk[a..b]) {
                    return Err(io_err(self.path(i))(e));
                }
                self.unsynced += (b - a) as u64;
                if self.unsynced >= WRITEBACK_EVERY {
                    self.unsynced = 0;
                    if let Some(tx) = &self.writeback {
                        // at most one pending request; a busy thread will
                        // cover these bytes too
                        let _ = tx.try_send(());
                    }
                }
            }
            Op::EndFile => {
                let Some((i, f)) = self.file.take() else {
                    unreachable!("end of a file never begun");
                };
                rustix::fs::futimens(&f, &self.times).map_err(io_err(self.path(i)))?;
                if self.chmod_files {
                    let Kind::File { owner_exec, .. } = self.entries[i].kind else {
                        unreachable!("file op for a non-file entry");
                    };
                    rustix::fs::fchmod(&f, file_mode(owner_exec)).map_err(io_err(self.path(i)))?;
                }
            }
        }
        Ok(())
    }

    /// Makes the directory holding `entries[i]` the top of the stack (sealing
    /// the ones the stream has left) and returns the entry's name in it.
    fn enter_parent(&mut self, i: usize) -> Result<&'a [u8], SnapshotError> {
        let entries = self.entries;
        let (parent, name) = split_rel(&entries[i].rel);
        while self.dirs.len() > 1 && entries[self.dirs[self.dirs.len() - 1].0].rel != parent {
            let (d, fd) = self.dirs.pop().expect("non-empty");
            self.seal_dir(d, &fd)?;
        }
        Ok(name)
    }

    /// A directory is complete: normalize its mtime and make it read-only.
    fn seal_dir(&self, i: usize, fd: &OwnedFd) -> Result<(), SnapshotError> {
        rustix::fs::futimens(fd, &self.times).map_err(io_err(self.path(i)))?;
        rustix::fs::fchmod(fd, Mode::from_raw_mode(0o555)).map_err(io_err(self.path(i)))
    }
}

fn file_mode(owner_exec: bool) -> Mode {
    Mode::from_raw_mode(if owner_exec { 0o555 } else { 0o444 })
}

/// The process umask, read from `/proc/self/status` (reading it with
/// `umask(2)` would mean changing it under other threads).
fn current_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(line.trim(), 8).ok()
}

/// Seconds since the epoch, for timestamps in store metadata.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
