//! The daemon's use of `cloister-inputs` (blocking; called from
//! `spawn_blocking`): snapshot a vendored directory into the
//! content-addressed store and resolve a builder image's rootfs, each pinned
//! for the job's lifetime so `store gc` cannot remove it mid-build.

use cloister_inputs::{Digest, EntryKind, NoProgress, Pin, SnapshotRequest, Store};
use std::path::{Path, PathBuf};

/// A snapshot taken for a job.
#[derive(Debug)]
pub struct Snap {
    pub digest: String,
    pub files: u64,
    /// The read-only materialized tree (bind-mounted read-only into the sandbox).
    pub tree: PathBuf,
    pub pin: Pin,
    /// The store's snapshot was reused: its warm-path record proved the
    /// directory unchanged since it was last snapshotted, so no file was
    /// read again.
    pub reused: bool,
    /// A cold snapshot found its digest in the store already (a committed
    /// vendor dir in a fresh checkout, unchanged since an earlier job): the
    /// stored tree is used and the copy just made is dropped.
    pub already_stored: bool,
}

/// Snapshots `dir` into the store at `store_root`; `warm_cache` as in
/// [`SnapshotRequest`] (off for a directory inside a job's workspace, which
/// is never seen at the same path again); `root` is the (device, inode) the
/// daemon checked `dir` as.
pub fn snapshot(
    store_root: &Path,
    dir: &Path,
    warm_cache: bool,
    root: (u64, u64),
) -> Result<Snap, cloister_inputs::StoreError> {
    let store = Store::open(store_root)?;
    let req = SnapshotRequest {
        warm_cache,
        expect_root: Some(root),
        ..Default::default()
    };
    let snap = store.snapshot_with(dir, &req, &NoProgress)?;
    let pin = store.pin(EntryKind::Snapshot, &snap.digest)?;
    Ok(Snap {
        digest: snap.digest.to_string(),
        files: snap.files,
        tree: pin.path().to_path_buf(),
        pin,
        reused: snap.cached,
        already_stored: snap.already_stored && !snap.cached,
    })
}

/// The unpacked rootfs of an imported builder image.
pub fn image(store_root: &Path, digest: &str) -> Result<(PathBuf, Pin), String> {
    let digest: Digest = digest.parse().map_err(|e| format!("image {digest}: {e}"))?;
    let store = Store::open(store_root).map_err(|e| e.to_string())?;
    let pin = store
        .pin(EntryKind::Image, &digest)
        .map_err(|e| format!("image {digest}: {e}"))?;
    Ok((pin.path().to_path_buf(), pin))
}
