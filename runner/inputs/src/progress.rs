//! Progress reporting for long work (snapshot, import, image unpack). The
//! library only counts; the CLI decides whether to draw (on a TTY) or stay quiet.

/// Receives counts of files and bytes as long work advances. Totals of 0 mean
/// "unknown" (streams whose size is not known up front).
pub trait Progress: Sync {
    /// Work named `what` starts with the given totals.
    fn begin(&self, what: &str, files: u64, bytes: u64) {
        let _ = (what, files, bytes);
    }
    /// `files` more files and `bytes` more bytes are done.
    fn advance(&self, files: u64, bytes: u64) {
        let _ = (files, bytes);
    }
    /// The work is over (successfully or not).
    fn finish(&self) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
