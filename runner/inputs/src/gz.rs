//! Parallel gzip for the transport form of snapshots: the tar stream is cut into
//! fixed-size chunks, each compressed independently with libdeflate into its own
//! gzip member, and the members are written in order. A concatenation of gzip
//! members is a valid gzip file (RFC 1952 §2.2) that `gzip -d`, `tar -xz` and
//! flate2's `MultiGzDecoder` read as one stream. Chunk boundaries depend only on
//! the input, so the output is the same whatever the number of threads.

use libdeflater::{CompressionLvl, Compressor};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::{Scope, ScopedJoinHandle};

/// A numbered chunk of the tar stream.
type Chunk = (u64, Arc<ChunkBuf>);

/// Buffers kept for reuse at most (more than the pipeline's queues hold).
const POOL_MAX: usize = 48;

/// Chunk buffers handed back once every consumer (hasher, compressors,
/// materializer) has dropped them: a fresh megabyte per chunk would be
/// page-faulted and zeroed by the kernel each time (a few percent of a cold
/// snapshot's CPU).
#[derive(Clone, Default)]
pub(crate) struct BufPool(Arc<Mutex<Vec<Vec<u8>>>>);

impl BufPool {
    /// An empty buffer of at least `cap` bytes' capacity.
    pub(crate) fn get(&self, cap: usize) -> Vec<u8> {
        let reused = self.0.lock().expect("buffer pool lock").pop();
        match reused {
            Some(mut v) => {
                v.reserve(cap);
                v
            }
            None => Vec::with_capacity(cap),
        }
    }

    /// Shares `data` as a chunk that returns to this pool when dropped.
    pub(crate) fn share(&self, data: Vec<u8>) -> Arc<ChunkBuf> {
        Arc::new(ChunkBuf {
            data,
            pool: self.clone(),
        })
    }
}

/// A chunk of the tar stream (read-only once shared).
pub(crate) struct ChunkBuf {
    data: Vec<u8>,
    pool: BufPool,
}

impl Deref for ChunkBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for ChunkBuf {
    fn drop(&mut self) {
        let mut data = std::mem::take(&mut self.data);
        data.clear();
        if let Ok(mut free) = self.pool.0.lock()
            && free.len() < POOL_MAX
        {
            free.push(data);
        }
    }
}

/// Default compression level (libdeflate's scale, 1–12).
pub const DEFAULT_LEVEL: i32 = 2;

/// One file the compressed stream is written to.
#[derive(Debug)]
pub struct GzOut {
    pub file: File,
    /// For error messages.
    pub path: PathBuf,
    /// `fsync` it once complete (callers that sync the whole filesystem
    /// afterwards, like the store, need not).
    pub sync: bool,
}

/// Why the pipeline failed: the output at fault (none for a compressor), and
/// the error.
pub type GzError = (Option<PathBuf>, io::Error);

/// A running compression pipeline: chunks go in through `sender`, the joined
/// writer reports the compressed size.
pub struct GzPipeline<'scope> {
    pub sender: SyncSender<Chunk>,
    writer: ScopedJoinHandle<'scope, Result<u64, GzError>>,
    workers: Vec<ScopedJoinHandle<'scope, io::Result<()>>>,
}

/// Number of compression threads: the available parallelism.
pub fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl<'scope> GzPipeline<'scope> {
    /// Starts `threads` compressors and one ordered writer into every file of
    /// `outs` (the same bytes in each).
    pub fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        mut outs: Vec<GzOut>,
        level: i32,
        threads: usize,
    ) -> io::Result<Self> {
        let lvl = CompressionLvl::new(level).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("compression level {level} is not in 1..=12"),
            )
        })?;
        let (tx, rx) = sync_channel::<Chunk>(threads * 2);
        let rx = Arc::new(Mutex::new(rx));
        let (done_tx, done_rx) = sync_channel::<(u64, Vec<u8>)>(threads * 2);
        let mut workers = Vec::new();
        for _ in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            let done_tx = done_tx.clone();
            workers.push(spawn_named(scope, "snap-gzip", move || {
                compress_worker(&rx, &done_tx, lvl)
            })?);
        }
        drop(done_tx);
        let writer = spawn_named(scope, "snap-gz-write", move || {
            ordered_writer(done_rx, &mut outs)
        })?;
        Ok(GzPipeline {
            sender: tx,
            writer,
            workers,
        })
    }

    /// Closes the input and waits for everything to be written; returns the
    /// compressed size.
    pub fn finish(self) -> Result<u64, GzError> {
        drop(self.sender);
        let mut first_err = None;
        for w in self.workers {
            if let Err(e) = w.join().expect("compression worker panicked") {
                first_err.get_or_insert(e);
            }
        }
        let written = self.writer.join().expect("gzip writer panicked");
        match (written, first_err) {
            (Err(e), _) => Err(e),
            (Ok(_), Some(e)) => Err((None, e)),
            (Ok(n), None) => Ok(n),
        }
    }
}

/// Spawns a scoped thread with a name (it shows in `top -H`, `perf` and
/// panic messages).
pub(crate) fn spawn_named<'scope, 'env, T: Send + 'scope>(
    scope: &'scope Scope<'scope, 'env>,
    name: &str,
    f: impl FnOnce() -> T + Send + 'scope,
) -> io::Result<ScopedJoinHandle<'scope, T>> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn_scoped(scope, f)
}

fn compress_worker(
    rx: &Mutex<Receiver<Chunk>>,
    done: &SyncSender<(u64, Vec<u8>)>,
    lvl: CompressionLvl,
) -> io::Result<()> {
    let mut c = Compressor::new(lvl);
    // One output buffer per worker, reused: the member is copied out at its
    // compressed size (a fraction of the chunk) rather than allocating and
    // zeroing the worst-case bound for every chunk.
    let mut buf = Vec::new();
    loop {
        let next = rx.lock().expect("gzip queue lock").recv();
        let Ok((seq, chunk)) = next else {
            return Ok(());
        };
        let bound = c.gzip_compress_bound(chunk.len());
        if buf.len() < bound {
            buf.resize(bound, 0);
        }
        let n = c
            .gzip_compress(&chunk, &mut buf)
            .map_err(|e| io::Error::other(format!("libdeflate: {e:?}")))?;
        // release the input to the pool before sending
        drop(chunk);
        if done.send((seq, buf[..n].to_vec())).is_err() {
            // the writer stopped (an output error it will report)
            return Ok(());
        }
    }
}

fn ordered_writer(rx: Receiver<(u64, Vec<u8>)>, outs: &mut [GzOut]) -> Result<u64, GzError> {
    let mut pending = BTreeMap::new();
    let mut next = 0u64;
    let mut total = 0u64;
    for (seq, buf) in rx {
        pending.insert(seq, buf);
        while let Some(buf) = pending.remove(&next) {
            for o in outs.iter_mut() {
                o.file
                    .write_all(&buf)
                    .map_err(|e| (Some(o.path.clone()), e))?;
            }
            total += buf.len() as u64;
            next += 1;
        }
    }
    if !pending.is_empty() {
        return Err((None, io::Error::other("gzip pipeline lost a chunk")));
    }
    for o in outs.iter().filter(|o| o.sync) {
        o.file.sync_all().map_err(|e| (Some(o.path.clone()), e))?;
    }
    Ok(total)
}
