//! Hermetic inputs: deterministic snapshots of vendored dependencies, the
//! content-addressed store they live in, safe tar extraction and OCI builder
//! images.
//!
//! A snapshot's identity is the SHA-256 of a canonical, uncompressed GNU-format
//! tar of the directory (see [`tarfmt`] and `cookbook/snapshot-format.md`); the
//! gzip form is only for transport.
#![forbid(unsafe_code)]

pub mod digest;
pub mod extract;
mod gz;
pub mod image;
mod image_types;
pub mod progress;
pub mod snapshot;
mod statcache;
pub mod store;
pub mod tarfmt;
pub mod walk;

pub use digest::{Digest, DigestError};
pub use gz::DEFAULT_LEVEL;
pub use image::{Image, ImageError, ImageInfo, ImportOptions, import_layout};
pub use progress::{NoProgress, Progress};
pub use snapshot::{Produced, SnapshotError, SnapshotOptions, snapshot_digest};
/// How long a file must stay unchanged before a snapshot's stat cache trusts it.
pub use statcache::RACY_WINDOW;
pub use store::{
    EntryKind, GcPolicy, GcReport, Pin, Snapshot, SnapshotRequest, Store, StoreEntry, StoreError,
};

/// Writes the canonical snapshot of `dir` as `.tar.gz` to `out` without a
/// store (digest and transport form only); the file appears atomically.
pub fn snapshot_to_file(
    dir: &std::path::Path,
    opts: &SnapshotOptions,
    out: &std::path::Path,
    level: i32,
    progress: &dyn Progress,
) -> Result<Produced, SnapshotError> {
    let entries = walk::walk(dir)?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = out.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let file = std::fs::File::create(&tmp).map_err(|source| SnapshotError::Output {
        path: tmp.clone(),
        source,
    })?;
    let target = snapshot::GzTarget {
        outputs: vec![snapshot::GzOut {
            file,
            path: tmp.clone(),
            sync: true,
        }],
        level,
    };
    match snapshot::produce(dir, &entries, opts, Some(target), None, progress) {
        Ok(p) => {
            std::fs::rename(&tmp, out).map_err(|source| SnapshotError::Output {
                path: out.to_path_buf(),
                source,
            })?;
            Ok(p)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}
