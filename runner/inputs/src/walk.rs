//! Walking a directory in canonical order: depth first, each directory's entries
//! sorted bytewise by name (what `tar --sort=name` does), refusing file types a
//! snapshot cannot hold and symlinks that leave the tree. The walk only stats;
//! it reads no file contents, which is what makes the warm path cheap.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// What an entry is, with what the canonical tar records of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File { size: u64, owner_exec: bool },
    Symlink { target: Vec<u8> },
}

/// The stat fields the warm-path cache compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct StatKey {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub size: u64,
    pub nlink: u64,
    pub mtime: i64,
    pub mtime_ns: i64,
    pub ctime: i64,
    pub ctime_ns: i64,
}

impl StatKey {
    pub fn of(m: &fs::Metadata) -> Self {
        StatKey {
            dev: m.dev(),
            ino: m.ino(),
            mode: m.mode(),
            size: m.size(),
            nlink: m.nlink(),
            mtime: m.mtime(),
            mtime_ns: m.mtime_nsec(),
            ctime: m.ctime(),
            ctime_ns: m.ctime_nsec(),
        }
    }

    /// ctime in nanoseconds since the epoch.
    pub fn ctime_nanos(&self) -> i128 {
        i128::from(self.ctime) * 1_000_000_000 + i128::from(self.ctime_ns)
    }
}

/// One entry of the tree. `rel` is the path below the root with `/`
/// separators (empty for the root itself).
#[derive(Clone, Debug)]
pub struct Entry {
    pub rel: Vec<u8>,
    pub kind: Kind,
    pub stat: StatKey,
}

impl Entry {
    /// The entry's name in the tar stream: `./`, `./dir/`, `./dir/file`.
    pub fn tar_name(&self) -> Vec<u8> {
        let mut n = Vec::with_capacity(self.rel.len() + 3);
        n.extend_from_slice(b"./");
        n.extend_from_slice(&self.rel);
        if matches!(self.kind, Kind::Dir) && !self.rel.is_empty() {
            n.push(b'/');
        }
        n
    }

    /// Depth of the directory holding this entry (0 for entries of the root).
    pub fn parent_depth(&self) -> usize {
        self.rel.iter().filter(|&&b| b == b'/').count()
    }
}

/// Why a tree cannot be snapshotted.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0}: not a directory")]
    NotADirectory(PathBuf),
    #[error("{path}: {kind} cannot be snapshotted (only files, directories and symlinks can)")]
    Special { path: PathBuf, kind: &'static str },
    #[error(
        "{path}: symlink target {target:?} leaves the tree (targets must be relative, with '..' only at the start, and stay inside)"
    )]
    LinkEscapes { path: PathBuf, target: String },
}

/// Walks `root` in canonical order. The root itself may be a symlink to a
/// directory; nothing below it is followed. The subtrees of the root's
/// directories are walked on [`crate::gz::threads`] threads and joined in
/// order: the result, and the error when there is one (the first in
/// canonical order), are those of a walk on one thread.
pub fn walk(root: &Path) -> Result<Vec<Entry>, WalkError> {
    walk_on(root, crate::gz::threads())
}

fn walk_on(root: &Path, threads: usize) -> Result<Vec<Entry>, WalkError> {
    let meta = fs::metadata(root).map_err(io_err(root))?;
    if !meta.is_dir() {
        return Err(WalkError::NotADirectory(root.to_path_buf()));
    }
    let mut out = vec![Entry {
        rel: Vec::new(),
        kind: Kind::Dir,
        stat: StatKey::of(&meta),
    }];
    let children = read_sorted(root)?;
    // The root's entries in order, each directory followed by a slot for
    // its subtree.
    let mut parts: Vec<Result<Vec<Entry>, WalkError>> = Vec::new();
    let mut subtrees: Vec<(usize, PathBuf, Vec<u8>)> = Vec::new();
    for (name, md) in children {
        let mut head = Vec::new();
        match add_child(root, &[], &name, &md, &mut head) {
            Ok(sub) => {
                parts.push(Ok(head));
                if let Some((path, rel)) = sub {
                    subtrees.push((parts.len(), path, rel));
                    parts.push(Ok(Vec::new()));
                }
            }
            Err(e) => parts.push(Err(e)),
        }
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        while let Some((slot, path, rel)) = subtrees.get(next.fetch_add(1, Ordering::Relaxed)) {
            let mut sub = Vec::new();
            done.push((*slot, walk_dir(path, rel, &mut sub).map(|()| sub)));
        }
        done
    };
    let done: Vec<_> = std::thread::scope(|s| {
        // Helpers that fail to start leave their share to this thread.
        let helpers: Vec<_> = (1..threads.min(subtrees.len()))
            .filter_map(|_| crate::gz::spawn_named(s, "snap-walk", work).ok())
            .collect();
        let mut done = work();
        for h in helpers {
            done.extend(h.join().expect("walk thread panicked"));
        }
        done
    });
    for (slot, sub) in done {
        parts[slot] = sub;
    }
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalkError + use<> {
    let path = path.to_path_buf();
    move |source| WalkError::Io { path, source }
}

/// The entries of `dir` with their `lstat`, sorted bytewise by name.
fn read_sorted(dir: &Path) -> Result<Vec<(Vec<u8>, fs::Metadata)>, WalkError> {
    let mut children: Vec<(Vec<u8>, fs::Metadata)> = Vec::new();
    for de in fs::read_dir(dir).map_err(io_err(dir))? {
        let de = de.map_err(io_err(dir))?;
        // DirEntry::metadata is an fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW).
        let md = de.metadata().map_err(io_err(&de.path()))?;
        children.push((de.file_name().as_bytes().to_vec(), md));
    }
    children.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(children)
}

fn walk_dir(dir: &Path, rel: &[u8], out: &mut Vec<Entry>) -> Result<(), WalkError> {
    for (name, md) in read_sorted(dir)? {
        if let Some((path, child_rel)) = add_child(dir, rel, &name, &md, out)? {
            walk_dir(&path, &child_rel, out)?;
        }
    }
    Ok(())
}

/// Appends the entry for `name` in `dir` (at `rel` below the root); for a
/// directory, returns its path and `rel`, to be walked next.
fn add_child(
    dir: &Path,
    rel: &[u8],
    name: &[u8],
    md: &fs::Metadata,
    out: &mut Vec<Entry>,
) -> Result<Option<(PathBuf, Vec<u8>)>, WalkError> {
    let mut child_rel = Vec::with_capacity(rel.len() + 1 + name.len());
    if !rel.is_empty() {
        child_rel.extend_from_slice(rel);
        child_rel.push(b'/');
    }
    child_rel.extend_from_slice(name);
    let path = dir.join(OsStr::from_bytes(name));
    let ft = md.file_type();
    let stat = StatKey::of(md);
    if ft.is_dir() {
        out.push(Entry {
            rel: child_rel.clone(),
            kind: Kind::Dir,
            stat,
        });
        return Ok(Some((path, child_rel)));
    }
    if ft.is_file() {
        let kind = Kind::File {
            size: md.len(),
            owner_exec: md.mode() & 0o100 != 0,
        };
        out.push(Entry {
            rel: child_rel,
            kind,
            stat,
        });
    } else if ft.is_symlink() {
        let target = fs::read_link(&path).map_err(io_err(&path))?;
        let target = target.as_os_str().as_bytes().to_vec();
        let entry = Entry {
            rel: child_rel,
            kind: Kind::Symlink {
                target: target.clone(),
            },
            stat,
        };
        if !link_stays_inside(entry.parent_depth(), &target) {
            return Err(WalkError::LinkEscapes {
                path,
                target: String::from_utf8_lossy(&target).into_owned(),
            });
        }
        out.push(entry);
    } else {
        let kind = if ft.is_socket() {
            "socket"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_block_device() {
            "block device"
        } else if ft.is_char_device() {
            "character device"
        } else {
            "special file"
        };
        return Err(WalkError::Special { path, kind });
    }
    Ok(None)
}

/// Whether a relative symlink target, read from a link whose directory is
/// `depth` levels below the root, stays inside the tree: not absolute, not
/// empty, `..` only as leading components and no more of them than `depth`.
/// With every link in a tree obeying this, no path inside it resolves outside.
pub fn link_stays_inside(depth: usize, target: &[u8]) -> bool {
    if target.is_empty() || target[0] == b'/' {
        return false;
    }
    let mut ups = 0usize;
    let mut seen_name = false;
    for comp in target.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if seen_name {
                    return false;
                }
                ups += 1;
            }
            _ => seen_name = true,
        }
    }
    ups <= depth
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_rules() {
        assert!(link_stays_inside(0, b"a"));
        assert!(link_stays_inside(0, b"./a/b"));
        assert!(link_stays_inside(1, b"../a"));
        assert!(link_stays_inside(2, b"../../a"));
        assert!(!link_stays_inside(1, b"../../a"));
        assert!(!link_stays_inside(0, b"../a"));
        assert!(!link_stays_inside(3, b"/etc/passwd"));
        assert!(!link_stays_inside(3, b"a/../../b"));
        assert!(!link_stays_inside(3, b""));
    }

    fn summary(entries: &[Entry]) -> Vec<(Vec<u8>, Kind)> {
        entries
            .iter()
            .map(|e| (e.rel.clone(), e.kind.clone()))
            .collect()
    }

    /// The walk on several threads lists exactly what the walk on one does,
    /// in the same order, whatever the shape of the tree's top level.
    #[test]
    fn walking_on_threads_gives_the_one_thread_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["b", "a", "c/x", "c/y/z", "e", "d-empty"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        for (f, body) in [
            ("top.txt", "t"),
            ("a/1", "1"),
            ("a/2", "22"),
            ("b/only", "b"),
            ("c/x/deep", "d"),
            ("c/y/z/deeper", "dd"),
            ("e/f", "f"),
            ("zz", "z"),
        ] {
            fs::write(root.join(f), body).unwrap();
        }
        std::os::unix::fs::symlink("../top.txt", root.join("a/link")).unwrap();
        let one = walk_on(root, 1).unwrap();
        assert_eq!(one.len(), 18);
        for threads in [2, 3, 8] {
            assert_eq!(summary(&walk_on(root, threads).unwrap()), summary(&one));
        }
        // a root with one directory, and an empty root
        let sub = root.join("c");
        assert_eq!(
            summary(&walk_on(&sub, 4).unwrap()),
            summary(&walk_on(&sub, 1).unwrap())
        );
        assert_eq!(walk_on(&root.join("d-empty"), 4).unwrap().len(), 1);
    }

    /// With bad entries in several subtrees, the walk on threads reports the
    /// first in canonical order, as the walk on one thread does.
    #[test]
    fn walking_on_threads_reports_the_first_bad_entry_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["a", "b", "c"] {
            fs::create_dir(root.join(d)).unwrap();
            fs::write(root.join(d).join("ok"), "x").unwrap();
        }
        std::os::unix::fs::symlink("../../etc/passwd", root.join("c/escape")).unwrap();
        std::os::unix::net::UnixListener::bind(root.join("b/sock")).unwrap();
        // a top-level bad entry after both subtrees
        std::os::unix::fs::symlink("/etc", root.join("d-abs")).unwrap();
        for threads in [1, 2, 4] {
            let err = walk_on(root, threads).unwrap_err();
            assert!(
                matches!(&err, WalkError::Special { path, kind: "socket" } if path.ends_with("b/sock")),
                "{threads} threads: {err}"
            );
        }
        fs::remove_file(root.join("b/sock")).unwrap();
        let err = walk_on(root, 2).unwrap_err();
        assert!(
            matches!(&err, WalkError::LinkEscapes { path, .. } if path.ends_with("c/escape")),
            "{err}"
        );
    }
}
