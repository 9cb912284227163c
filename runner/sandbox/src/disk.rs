//! The workspace disk limit: how much the writable binds may grow during a
//! run. No kernel mechanism bounds a directory tree for an unprivileged
//! user (project quotas need root and a filesystem mounted with them; a
//! tmpfs or overlay upper layer would hold the workspace in memory), so the
//! limit is watched: a watcher process forked by the runner measures the
//! trees (every inode's allocated blocks, once, never following a symlink)
//! and reports when they have grown past the limit; the runner then stops
//! the run. The baseline is measured by the runner before the clone, so
//! nothing the build writes counts as the starting point.
//!
//! A rootless runner cannot read a directory the build made unreadable
//! (mode 000): the watcher joins the sandbox's user namespace first, where
//! it holds every capability over the files the build can create (all owned
//! by the one mapped uid), so nothing is hidden from it. It joins nothing
//! else: it sees the host's mount tree and is invisible from the sandbox.
//!
//! Between two measurements a build can write at disk speed, so the limit
//! can be passed by what it writes in one interval; intervals start at
//! 20 ms and grow with the cost of a walk (20× its time, at most 2 s), so
//! watching costs at most ~5% of a core. The runner measures once more at
//! the end: a run that ended past the limit is reported as having hit it.

use crate::sys::{self, Forked};
use nix::dir::Dir;
use nix::fcntl::OFlag;
use nix::sys::stat::{FileStat, Mode, SFlag};
use std::collections::HashSet;
use std::io::Write as _;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Directories deeper than this below a root end the walk with an error
/// (each level holds one open descriptor).
const MAX_DEPTH: usize = 512;
const FIRST_INTERVAL: Duration = Duration::from_millis(20);
const MAX_INTERVAL: Duration = Duration::from_secs(2);

/// Why a tree could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: nix::Error },
    #[error("{0}: directories nested deeper than {MAX_DEPTH} levels")]
    TooDeep(PathBuf),
}

/// One writable bind's host tree, opened by the runner.
#[derive(Debug)]
pub(crate) struct Root {
    pub path: PathBuf,
    pub fd: OwnedFd,
}

impl Root {
    /// Opens `path` (a canonical bind source) without following a symlink.
    pub(crate) fn open(path: &Path) -> Result<Root, DiskError> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|source| DiskError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Root {
            path: path.to_path_buf(),
            fd,
        })
    }
}

fn blocks(st: &FileStat) -> u64 {
    (st.st_blocks as u64).saturating_mul(512)
}

/// Bytes allocated to everything in `roots` (a file root counts itself).
pub(crate) fn usage(roots: &[Root]) -> Result<u64, DiskError> {
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut total = 0u64;
    for root in roots {
        let io = |source| DiskError::Io {
            path: root.path.clone(),
            source,
        };
        let st = nix::sys::stat::fstat(&root.fd).map_err(io)?;
        total = total.saturating_add(blocks(&st));
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
            continue;
        }
        let dir = Dir::openat(
            root.fd.as_fd(),
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io)?;
        total = total.saturating_add(walk(root, dir, &mut seen)?);
    }
    Ok(total)
}

/// Depth first, one open directory per level.
fn walk(root: &Root, top: Dir, seen: &mut HashSet<(u64, u64)>) -> Result<u64, DiskError> {
    let mut total = 0u64;
    // Each level: the open directory and the names of its subdirectories
    // still to visit (read in full before descending, so a level holds one
    // descriptor, not a directory stream and a child).
    let mut stack: Vec<(Dir, Vec<std::ffi::CString>)> = Vec::new();
    let mut current = Some(top);
    loop {
        if let Some(mut dir) = current.take() {
            if stack.len() >= MAX_DEPTH {
                return Err(DiskError::TooDeep(root.path.clone()));
            }
            let mut names = Vec::new();
            for entry in dir.iter() {
                let entry = entry.map_err(|source| DiskError::Io {
                    path: root.path.clone(),
                    source,
                })?;
                let name = entry.file_name();
                if name.to_bytes() != b"." && name.to_bytes() != b".." {
                    names.push(name.to_owned());
                }
            }
            let mut subdirs = Vec::new();
            for name in names {
                let st = match nix::sys::stat::fstatat(
                    &dir,
                    name.as_c_str(),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                ) {
                    Ok(st) => st,
                    // removed since it was listed: nothing to count
                    Err(nix::Error::ENOENT) => continue,
                    Err(source) => {
                        return Err(DiskError::Io {
                            path: root.path.clone(),
                            source,
                        });
                    }
                };
                let is_dir =
                    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
                if st.st_nlink > 1 && !is_dir && !seen.insert((st.st_dev as u64, st.st_ino as u64))
                {
                    continue;
                }
                total = total.saturating_add(blocks(&st));
                if is_dir {
                    subdirs.push(name);
                }
            }
            stack.push((dir, subdirs));
        }
        let Some((dir, subdirs)) = stack.last_mut() else {
            return Ok(total);
        };
        let Some(name) = subdirs.pop() else {
            stack.pop();
            continue;
        };
        match Dir::openat(
            dir.as_fd(),
            name.as_c_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(sub) => current = Some(sub),
            // removed, or swapped for a symlink or a file since it was
            // listed: not a directory to descend into
            Err(nix::Error::ENOENT | nix::Error::ENOTDIR | nix::Error::ELOOP) => {}
            Err(source) => {
                return Err(DiskError::Io {
                    path: root.path.clone(),
                    source,
                });
            }
        }
    }
}

/// What the watcher reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Report {
    /// The trees grew by this many bytes, past the limit.
    Over(u64),
    /// The final measurement (asked for by the runner): the growth.
    Final(u64),
    /// A measurement failed.
    Error(String),
}

impl Report {
    fn encode(&self) -> String {
        match self {
            Report::Over(n) => format!("over {n}\n"),
            Report::Final(n) => format!("final {n}\n"),
            Report::Error(m) => format!("error {}\n", m.replace('\n', " ")),
        }
    }

    /// The first whole line of `text`, if one has arrived.
    pub(crate) fn decode(text: &[u8]) -> Option<Report> {
        let line = text.split(|b| *b == b'\n').next()?;
        if !text.contains(&b'\n') {
            return None;
        }
        let line = String::from_utf8_lossy(line);
        let (kind, rest) = line.split_once(' ').unwrap_or((&line, ""));
        Some(match (kind, rest.parse::<u64>()) {
            ("over", Ok(n)) => Report::Over(n),
            ("final", Ok(n)) => Report::Final(n),
            ("error", _) => Report::Error(rest.to_string()),
            _ => Report::Error(format!("unreadable watcher report {line:?}")),
        })
    }
}

/// The runner's handle on a running watcher.
#[derive(Debug)]
pub(crate) struct Watcher {
    pub pid: libc::pid_t,
    /// Readable when the watcher has reported (or died).
    pub report: OwnedFd,
    /// Written (one byte) to ask for the final measurement.
    stop: Option<OwnedFd>,
}

impl Watcher {
    /// Forks the watcher: it joins `userns` when given (a rootless runner),
    /// then measures `roots` until their growth over `baseline` passes
    /// `limit` or the runner asks for the final measurement. The caller is
    /// single-threaded (`run` checks).
    pub(crate) fn spawn(
        roots: &[Root],
        userns: Option<&OwnedFd>,
        baseline: u64,
        limit: u64,
    ) -> std::io::Result<Watcher> {
        let (report_r, report_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let (stop_r, stop_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        match sys::clone_fork(0)? {
            Forked::Child => {
                let mut keep: Vec<RawFd> = roots.iter().map(|r| r.fd.as_raw_fd()).collect();
                keep.extend([report_w.as_raw_fd(), stop_r.as_raw_fd()]);
                keep.extend(userns.map(AsRawFd::as_raw_fd));
                watch(roots, userns, &keep, report_w, stop_r, baseline, limit)
            }
            Forked::Parent(pid) => Ok(Watcher {
                pid,
                report: report_r,
                stop: Some(stop_w),
            }),
        }
    }

    /// Asks for the final measurement (the answer arrives on `report`).
    pub(crate) fn ask_final(&mut self) {
        if let Some(stop) = self.stop.take() {
            // (a watcher already gone has reported, or died: both show on `report`)
            let _ = nix::unistd::write(&stop, b"f");
        }
    }

    /// Kills and reaps the watcher.
    pub(crate) fn end(self) {
        let _ = sys::kill(self.pid, libc::SIGKILL);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(self.pid), None);
    }
}

/// The watcher process: never returns.
fn watch(
    roots: &[Root],
    userns: Option<&OwnedFd>,
    keep: &[RawFd],
    report: OwnedFd,
    stop: OwnedFd,
    baseline: u64,
    limit: u64,
) -> ! {
    let send = |r: Report| -> ! {
        let mut f = std::fs::File::from(report.try_clone().expect("dup the report pipe"));
        let _ = f.write_all(r.encode().as_bytes());
        sys::exit_now(0)
    };
    // Dies with the runner; holds nothing of the run but what it measures
    // (not the command's streams, whose readers wait for every holder).
    if nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).is_err()
        || close_all_but(keep).is_err()
    {
        send(Report::Error(
            "the workspace watcher could not start".into(),
        ));
    }
    if let Some(ns) = userns
        && let Err(e) = nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWUSER)
    {
        send(Report::Error(format!(
            "the workspace watcher could not join the sandbox's user namespace: {e}"
        )));
    }
    let mut interval = FIRST_INTERVAL;
    loop {
        let stop_asked = sys::poll_two(stop.as_raw_fd(), -1, interval)
            .map(|(readable, _)| readable)
            .unwrap_or(false);
        let started = Instant::now();
        let growth = match usage(roots) {
            Ok(now) => now.saturating_sub(baseline),
            Err(e) => send(Report::Error(format!("measuring the workspace: {e}"))),
        };
        if stop_asked {
            send(Report::Final(growth));
        }
        if growth > limit {
            send(Report::Over(growth));
        }
        interval = (started.elapsed() * 20).clamp(FIRST_INTERVAL, MAX_INTERVAL);
    }
}

/// Closes every descriptor but `keep`.
fn close_all_but(keep: &[RawFd]) -> std::io::Result<()> {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|fd| u32::try_from(*fd).ok())
        .collect();
    keep.sort_unstable();
    let mut from = 0u32;
    for k in keep {
        if k > from {
            sys::close_range(from, k - 1)?;
        }
        from = k + 1;
    }
    sys::close_range(from, u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn roots(paths: &[&Path]) -> Vec<Root> {
        paths.iter().map(|p| Root::open(p).unwrap()).collect()
    }

    /// Growth is what was added, each hard-linked inode once; symlinks are
    /// not followed out of the tree.
    #[test]
    fn usage_counts_allocated_blocks_once_per_inode() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("big"), vec![1u8; 1 << 20]).unwrap();
        std::fs::create_dir_all(dir.path().join("a/b/c")).unwrap();
        let r = roots(&[dir.path()]);
        let before = usage(&r).unwrap();
        std::fs::write(dir.path().join("a/b/c/f"), vec![7u8; 256 << 10]).unwrap();
        std::fs::hard_link(dir.path().join("a/b/c/f"), dir.path().join("a/g")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("a/out")).unwrap();
        let after = usage(&r).unwrap();
        let grown = after - before;
        assert!(
            (256 << 10..(256 << 10) + (64 << 10)).contains(&grown),
            "grew by {grown}"
        );
        // a file root counts itself
        let file = dir.path().join("a/g");
        assert!(usage(&roots(&[&file])).unwrap() >= 256 << 10);
    }

    /// A directory its owner cannot read is still measured by a walker
    /// with the capability to (root here; the watcher in the sandbox's
    /// user namespace for a rootless runner).
    #[test]
    fn unreadable_directories_are_measured_with_the_capability() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test runs as root (CI does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let hidden = dir.path().join("hidden");
        std::fs::create_dir(&hidden).unwrap();
        std::fs::write(hidden.join("f"), vec![1u8; 128 << 10]).unwrap();
        std::fs::set_permissions(&hidden, std::fs::Permissions::from_mode(0o000)).unwrap();
        assert!(usage(&roots(&[dir.path()])).unwrap() >= 128 << 10);
        std::fs::set_permissions(&hidden, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn a_tree_too_deep_to_walk_is_an_error_not_a_smaller_number() {
        let dir = tempfile::tempdir().unwrap();
        // (level by level: the path itself would grow past PATH_MAX)
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
        let mut cur = Dir::open(dir.path(), flags, Mode::empty()).unwrap();
        for _ in 0..MAX_DEPTH + 2 {
            nix::sys::stat::mkdirat(&cur, "d", Mode::from_bits_truncate(0o755)).unwrap();
            cur = Dir::openat(cur.as_fd(), "d", flags, Mode::empty()).unwrap();
        }
        let err = usage(&roots(&[dir.path()])).unwrap_err();
        assert!(matches!(err, DiskError::TooDeep(_)), "{err}");
        std::process::Command::new("rm")
            .arg("-rf")
            .arg(dir.path().join("d"))
            .status()
            .unwrap();
    }

    #[test]
    fn reports_round_trip() {
        for r in [
            Report::Over(42),
            Report::Final(0),
            Report::Error("x y".into()),
        ] {
            assert_eq!(Report::decode(r.encode().as_bytes()), Some(r));
        }
        assert_eq!(Report::decode(b"over 4"), None);
        assert!(matches!(Report::decode(b"what\n"), Some(Report::Error(_))));
    }
}
