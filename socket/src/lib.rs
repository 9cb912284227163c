//! Binding a daemon's Unix socket: the one implementation the runner daemon
//! (its API socket) and the attestor (its signing socket) share.
//!
//! [`bind_unix`] keeps three promises:
//! - **A client that finds the socket finds it final.** It is bound under a
//!   temporary name in the same directory, given its mode and group, then
//!   renamed into place; nobody can connect to it in between with the
//!   umask's mode or root's group.
//! - **A live daemon is never displaced.** When something answers on the
//!   path, binding fails with [`BindError::InUse`] and the socket is left
//!   alone: a second daemon started by mistake must not unlink the first
//!   one's socket (which would leave it running, unreachable). The probe
//!   is a non-blocking connect, so a live daemon too busy to accept does
//!   not stall the start either.
//! - **Only a socket is ever removed.** A stale socket from a previous run
//!   (nothing accepts on it) is replaced; a regular file, directory or
//!   symlink at the path is refused with [`BindError::NotASocket`] and left
//!   as it is.
#![forbid(unsafe_code)]

use std::io;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

/// Why the socket could not be bound. Every variant names the path.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("socket {path}: another process is listening there (is the service already running?)")]
    InUse { path: PathBuf },
    #[error("socket {path}: the path exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    #[error("socket {path}: {what}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BindError + 'a {
    move |source| BindError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The temporary name `path` is bound under: hidden, in the same directory
/// (so the rename is atomic), unique to this process.
fn temp_name(path: &Path) -> PathBuf {
    path.with_file_name(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ))
}

/// Whether something accepts connections on the socket at `path`. The probe
/// is non-blocking: a listener whose backlog is full (a live daemon too busy
/// to accept) answers EAGAIN instead of stalling the caller, and counts as
/// live. A socket nobody listens on refuses at once (ECONNREFUSED).
fn is_live(path: &Path) -> io::Result<bool> {
    use rustix::io::Errno;
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    let addr = SocketAddrUnix::new(path)?;
    match rustix::net::connect(&fd, &addr) {
        Ok(()) | Err(Errno::AGAIN) | Err(Errno::INPROGRESS) => Ok(true),
        Err(Errno::CONNREFUSED) | Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Binds a listening Unix socket at `path` with permission bits `mode` and,
/// when given, group `gid` (the owner stays this process's user). Creates
/// the parent directory when missing. The listener is non-blocking: both
/// callers hand it to tokio (`UnixListener::from_std`).
pub fn bind_unix(path: &Path, mode: u32, gid: Option<u32>) -> Result<UnixListener, BindError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if is_live(path).map_err(io_err("probing the existing socket", path))? {
                return Err(BindError::InUse {
                    path: path.to_path_buf(),
                });
            }
            std::fs::remove_file(path).map_err(io_err("removing the stale socket", path))?;
        }
        Ok(_) => {
            return Err(BindError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("inspecting the path", path)(e)),
    }
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(io_err("creating its directory", dir))?;
    }
    let temp = temp_name(path);
    // Ours from a previous run of this pid (a crash between bind and rename).
    let _ = std::fs::remove_file(&temp);
    let bound = (|| {
        let listener = UnixListener::bind(&temp).map_err(io_err("binding", &temp))?;
        listener
            .set_nonblocking(true)
            .map_err(io_err("making it non-blocking", &temp))?;
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(mode))
            .map_err(io_err("setting its mode", &temp))?;
        if let Some(gid) = gid {
            std::os::unix::fs::chown(&temp, None, Some(gid))
                .map_err(io_err("setting its group", &temp))?;
        }
        std::fs::rename(&temp, path).map_err(io_err("renaming into place", path))?;
        Ok(listener)
    })();
    if bound.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    bound
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;
    use std::os::unix::net::UnixStream;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// A client connecting at `path` is accepted by `listener`.
    fn assert_accepts(listener: &UnixListener, path: &Path) {
        let _client = UnixStream::connect(path).unwrap();
        listener.accept().unwrap();
    }

    #[test]
    fn binds_with_the_mode_and_group_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/api.sock");
        // gid 1 ("daemon" on Debian) as root, else our own group.
        let gid = if std::fs::metadata("/proc/self").unwrap().uid() == 0 {
            1
        } else {
            std::fs::metadata("/proc/self").unwrap().gid()
        };
        let listener = bind_unix(&path, 0o660, Some(gid)).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o7777, 0o660);
        assert_eq!(meta.gid(), gid);
        assert_eq!(entries(&dir.path().join("run")), ["api.sock"]);
        assert_accepts(&listener, &path);
    }

    #[test]
    fn a_stale_socket_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        drop(UnixListener::bind(&path).unwrap());
        assert!(UnixStream::connect(&path).is_err(), "stale: nobody accepts");
        let listener = bind_unix(&path, 0o600, None).unwrap();
        assert_accepts(&listener, &path);
        assert_eq!(entries(dir.path()), ["s.sock"]);
    }

    #[test]
    fn a_live_socket_is_refused_and_keeps_working() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let first = bind_unix(&path, 0o660, None).unwrap();
        let err = bind_unix(&path, 0o660, None).unwrap_err();
        assert!(matches!(err, BindError::InUse { .. }), "{err}");
        assert!(err.to_string().contains("another process is listening"));
        assert!(err.to_string().contains("s.sock"));
        // The first listener still owns the path.
        assert_accepts(&first, &path);
        assert_eq!(entries(dir.path()), ["s.sock"]);
    }

    #[test]
    fn a_live_socket_too_busy_to_accept_is_refused_without_waiting() {
        use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let busy = UnixListener::bind(&path).unwrap();
        // Fill its backlog: a blocking connect would now wait for an accept
        // that never comes.
        let addr = SocketAddrUnix::new(&path).unwrap();
        let mut pending = Vec::new();
        loop {
            let fd = rustix::net::socket_with(
                AddressFamily::UNIX,
                SocketType::STREAM,
                SocketFlags::NONBLOCK,
                None,
            )
            .unwrap();
            match rustix::net::connect(&fd, &addr) {
                Ok(()) => pending.push(fd),
                Err(rustix::io::Errno::AGAIN) => break,
                Err(e) => panic!("filling the backlog: {e}"),
            }
            assert!(pending.len() < 100_000, "the backlog never filled");
        }
        let err = bind_unix(&path, 0o660, None).unwrap_err();
        assert!(matches!(err, BindError::InUse { .. }), "{err}");
        // The busy listener keeps its socket and its queue.
        assert!(
            std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_socket()
        );
        busy.accept().unwrap();
        drop(pending);
    }

    #[test]
    fn a_file_a_directory_or_a_symlink_at_the_path_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"keep me").unwrap();
        let sub = dir.path().join("dir");
        std::fs::create_dir(&sub).unwrap();
        // A symlink to a live socket: not ours to replace either.
        let live = dir.path().join("live.sock");
        let _live = UnixListener::bind(&live).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&live, &link).unwrap();
        for path in [&file, &sub, &link] {
            let err = bind_unix(path, 0o660, None).unwrap_err();
            assert!(matches!(err, BindError::NotASocket { .. }), "{err}");
        }
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
        assert!(sub.is_dir());
        assert_eq!(std::fs::read_link(&link).unwrap(), live);
        assert_eq!(entries(dir.path()), ["dir", "file", "link", "live.sock"]);
    }

    #[test]
    fn a_path_under_a_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let parent_file = dir.path().join("notadir");
        std::fs::write(&parent_file, b"").unwrap();
        let err = bind_unix(&parent_file.join("s.sock"), 0o660, None).unwrap_err();
        assert!(matches!(err, BindError::Io { .. }), "{err}");
        assert!(err.to_string().contains("notadir/s.sock"), "{err}");
        assert_eq!(entries(dir.path()), ["notadir"]);
    }
}
