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
/// directory; nothing below it is followed.
pub fn walk(root: &Path) -> Result<Vec<Entry>, WalkError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WalkError::Io { path, source }
    };
    let meta = fs::metadata(root).map_err(io_err(root))?;
    if !meta.is_dir() {
        return Err(WalkError::NotADirectory(root.to_path_buf()));
    }
    let mut out = vec![Entry {
        rel: Vec::new(),
        kind: Kind::Dir,
        stat: StatKey::of(&meta),
    }];
    walk_dir(root, &[], &mut out)?;
    Ok(out)
}

fn walk_dir(dir: &Path, rel: &[u8], out: &mut Vec<Entry>) -> Result<(), WalkError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WalkError::Io { path, source }
    };
    let mut children: Vec<(Vec<u8>, fs::Metadata)> = Vec::new();
    for de in fs::read_dir(dir).map_err(io_err(dir))? {
        let de = de.map_err(io_err(dir))?;
        // DirEntry::metadata is an fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW).
        let md = de.metadata().map_err(io_err(&de.path()))?;
        children.push((de.file_name().as_bytes().to_vec(), md));
    }
    children.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (name, md) in children {
        let mut child_rel = Vec::with_capacity(rel.len() + 1 + name.len());
        if !rel.is_empty() {
            child_rel.extend_from_slice(rel);
            child_rel.push(b'/');
        }
        child_rel.extend_from_slice(&name);
        let path = dir.join(OsStr::from_bytes(&name));
        let ft = md.file_type();
        let stat = StatKey::of(&md);
        if ft.is_dir() {
            out.push(Entry {
                rel: child_rel.clone(),
                kind: Kind::Dir,
                stat,
            });
            walk_dir(&path, &child_rel, out)?;
        } else if ft.is_file() {
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
    }
    Ok(())
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
}
