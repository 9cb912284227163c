//! The one safe tar extractor, used for snapshot imports and OCI image layers.
//!
//! Architecture invariant: nothing is ever written outside the target
//! directory. Every entry path is checked lexically (no absolute paths, no
//! `..`), every parent directory is opened component by component with
//! `O_NOFOLLOW | O_DIRECTORY` relative to the target's file descriptor (so a
//! symlink planted by an earlier entry is never followed), and the final
//! component is created with `O_CREAT | O_EXCL | O_NOFOLLOW`, `symlinkat`,
//! `mkdirat` or `linkat` relative to that parent. Device nodes, fifos,
//! setuid/setgid bits, links that leave the tree and absurd sizes or entry
//! counts are rejected with an error naming the entry.

use crate::Digest;
use crate::progress::Progress;
use crate::walk::link_stays_inside;
use rustix::fs::Timespec as Timestamp;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timestamps};
use sha2::{Digest as _, Sha256};
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// What kind of archive is being unpacked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtractMode {
    /// A snapshot: only directories, regular files and symlinks that stay in
    /// the tree; modes become read-only (0444/0555 by the owner-execute bit).
    Snapshot,
    /// An OCI image layer: also hard links and whiteouts (`.wh.NAME`,
    /// `.wh..wh..opq`); absolute symlink targets are allowed (in a rootfs they
    /// name paths inside it); entries replace what lower layers left.
    Layer,
}

/// Whether reading the archive stopped at `max_archive_bytes` (the counting
/// reader's marker error).
fn is_too_large(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|i| i.is::<TooLargeMarker>())
}

/// An error reading the archive stream itself (not an entry's contents),
/// after the entry named `last`.
fn stream_error(source: io::Error, last: &str, limits: &Limits) -> ExtractError {
    if is_too_large(&source) {
        ExtractError::ArchiveTooLarge(limits.max_archive_bytes)
    } else {
        ExtractError::Archive {
            after: last.to_string(),
            source,
        }
    }
}

/// Bounds on what an archive may contain.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most entries (headers) in one archive.
    pub max_entries: u64,
    /// Largest single file.
    pub max_entry_bytes: u64,
    /// Most uncompressed bytes in one archive stream, headers included.
    pub max_archive_bytes: u64,
    /// Longest entry path or link target.
    pub max_path_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 2_000_000,
            max_entry_bytes: 16 << 30,
            max_archive_bytes: 64 << 30,
            max_path_bytes: 4096,
        }
    }
}

/// Options for one extraction.
#[derive(Clone, Copy, Debug)]
pub struct ExtractOptions {
    pub mode: ExtractMode,
    pub limits: Limits,
    /// Clear setuid/setgid bits instead of rejecting them (image import's
    /// explicit `--strip-setid`; never the default).
    pub strip_setid: bool,
}

impl ExtractOptions {
    pub fn new(mode: ExtractMode) -> Self {
        ExtractOptions {
            mode,
            limits: Limits::default(),
            strip_setid: false,
        }
    }
}

/// Why an entry was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Reject {
    #[error("absolute path")]
    Absolute,
    #[error("path contains '..'")]
    DotDot,
    #[error("path contains a NUL byte")]
    Nul,
    #[error("path or link target longer than {0} bytes")]
    PathTooLong(usize),
    #[error("path component longer than 255 bytes")]
    NameTooLong,
    #[error("link target {0:?} leaves the tree")]
    LinkEscapes(String),
    #[error("device nodes are not allowed")]
    Device,
    #[error("fifos are not allowed")]
    Fifo,
    #[error("setuid/setgid bits are not allowed (mode {0:o})")]
    SetId(u32),
    #[error("size {size} exceeds the limit of {limit} bytes per entry")]
    TooLarge { size: u64, limit: u64 },
    #[error("more than {0} entries")]
    TooManyEntries(u64),
    #[error("hard links are not allowed in snapshots")]
    HardLink,
    #[error("hard link target {0:?} is not a regular file extracted earlier")]
    BadHardLink(String),
    #[error("parent {0:?} is a symlink or not a directory")]
    ParentNotDir(String),
    #[error("duplicate entry")]
    Duplicate,
    #[error("unsupported entry type {0:?}")]
    Unsupported(char),
    #[error("sparse files are not supported")]
    Sparse,
    #[error("the root of the tree must be a directory")]
    RootNotDir,
    #[error("invalid whiteout")]
    BadWhiteout,
}

/// Why an extraction failed.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("entry {entry:?}: {reason}")]
    Rejected { entry: String, reason: Reject },
    #[error("entry {entry:?}: {source}")]
    Io { entry: String, source: io::Error },
    #[error("reading archive (after entry {after:?}): {source}")]
    Archive { after: String, source: io::Error },
    #[error("archive is larger than {0} bytes uncompressed")]
    ArchiveTooLarge(u64),
    #[error("opening target {path}: {source}")]
    Target { path: PathBuf, source: io::Error },
}

/// What an archive held.
#[derive(Clone, Debug)]
pub struct Extracted {
    /// SHA-256 of the whole uncompressed stream, trailer included.
    pub stream_digest: Digest,
    pub stream_bytes: u64,
    pub entries: u64,
    pub files: u64,
    pub bytes: u64,
    /// The mtime of the first entry (a snapshot's root), if any.
    pub first_mtime: Option<u64>,
}

/// Unpacks one or more archives (image layers, in order) into `target`, an
/// existing directory. Directory modes and mtimes are applied by
/// [`Unpacker::finish`], deepest first, so that directories stay writable
/// while later layers land.
pub struct Unpacker {
    root: OwnedFd,
    root_path: PathBuf,
    opts: ExtractOptions,
    parent_cache: Option<(Vec<u8>, Rc<OwnedFd>)>,
    dirs: HashMap<Vec<u8>, (u32, u64)>,
}

impl Unpacker {
    pub fn new(target: &Path, opts: ExtractOptions) -> Result<Self, ExtractError> {
        let root = rustix::fs::open(
            target,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ExtractError::Target {
            path: target.to_path_buf(),
            source: e.into(),
        })?;
        Ok(Unpacker {
            root,
            root_path: target.to_path_buf(),
            opts,
            parent_cache: None,
            dirs: HashMap::new(),
        })
    }

    /// Extracts one archive stream.
    pub fn unpack<R: Read>(
        &mut self,
        reader: R,
        progress: &dyn Progress,
    ) -> Result<Extracted, ExtractError> {
        let limits = self.opts.limits;
        let hashing = HashingReader {
            inner: reader,
            hasher: Sha256::new(),
            count: 0,
            limit: limits.max_archive_bytes,
        };
        let mut archive = tar::Archive::new(hashing);
        let mut created: HashSet<Vec<u8>> = HashSet::new();
        let mut summary = Extracted {
            stream_digest: Digest::from_bytes([0; 32]),
            stream_bytes: 0,
            entries: 0,
            files: 0,
            bytes: 0,
            first_mtime: None,
        };
        let mut last = String::from("<start>");
        {
            let entries = archive
                .entries()
                .map_err(|e| stream_error(e, &last, &limits))?;
            for entry in entries {
                let mut entry = entry.map_err(|e| stream_error(e, &last, &limits))?;
                let raw = entry.path_bytes().into_owned();
                last = String::from_utf8_lossy(&raw).into_owned();
                summary.entries += 1;
                let reject = |reason| ExtractError::Rejected {
                    entry: last.clone(),
                    reason,
                };
                if summary.entries > limits.max_entries {
                    return Err(reject(Reject::TooManyEntries(limits.max_entries)));
                }
                if summary.first_mtime.is_none() {
                    summary.first_mtime = entry.header().mtime().ok();
                }
                let res = self.one(&mut entry, &raw, &mut created, &mut summary, progress);
                match res {
                    Ok(()) => {}
                    Err(Fail::Reject(r)) => return Err(reject(r)),
                    Err(Fail::Io(source)) if is_too_large(&source) => {
                        return Err(ExtractError::ArchiveTooLarge(limits.max_archive_bytes));
                    }
                    Err(Fail::Io(source)) => {
                        return Err(ExtractError::Io {
                            entry: last.clone(),
                            source,
                        });
                    }
                }
            }
        }
        // Hash the rest: end-of-archive blocks and record padding are part of
        // the stream's identity.
        let mut rest = archive.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(|e| stream_error(e, &last, &limits))?;
        summary.stream_bytes = rest.count;
        summary.stream_digest = Digest::from(rest.hasher);
        Ok(summary)
    }

    /// Applies directory modes and mtimes, deepest first.
    pub fn finish(mut self) -> Result<(), ExtractError> {
        self.parent_cache = None;
        let mut dirs: Vec<_> = std::mem::take(&mut self.dirs).into_iter().collect();
        dirs.sort_by(|a, b| depth(&b.0).cmp(&depth(&a.0)).then_with(|| b.0.cmp(&a.0)));
        for (rel, (mode, mtime)) in dirs {
            let entry = String::from_utf8_lossy(&rel).into_owned();
            let io_err = |source: io::Error| ExtractError::Io {
                entry: entry.clone(),
                source,
            };
            let fd = if rel.is_empty() {
                rustix::io::dup(&self.root).map_err(|e| io_err(e.into()))?
            } else {
                let comps: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
                let Ok(parent) = self.open_parent(&comps[..comps.len() - 1], false) else {
                    continue;
                };
                match rustix::fs::openat(
                    parent.as_fd(),
                    comps[comps.len() - 1],
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    // removed by a later whiteout or replaced by a non-directory
                    Err(_) => continue,
                }
            };
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| io_err(e.into()))?;
            rustix::fs::futimens(&fd, &times(mtime)).map_err(|e| io_err(e.into()))?;
        }
        Ok(())
    }

    /// Extracts one entry: its mode and type checked, then the archive's
    /// root, a whiteout (layer mode), or a directory, file, symlink or hard
    /// link created in place of what was there (layer mode) or nowhere
    /// anything was (snapshot mode).
    fn one<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: &[u8],
        created: &mut HashSet<Vec<u8>>,
        summary: &mut Extracted,
        progress: &dyn Progress,
    ) -> Result<(), Fail> {
        let limits = self.opts.limits;
        let layer = self.opts.mode == ExtractMode::Layer;
        let comps = split_path(raw, limits.max_path_bytes)?;
        let header = entry.header();
        let etype = header.entry_type();
        let mtime = header.mtime().unwrap_or(0);
        let mode = self.checked_mode(header.mode().map_err(Fail::Io)?)?;
        use tar::EntryType as T;
        match etype {
            T::Char | T::Block => return Err(Fail::Reject(Reject::Device)),
            T::Fifo => return Err(Fail::Reject(Reject::Fifo)),
            T::GNUSparse => return Err(Fail::Reject(Reject::Sparse)),
            T::XGlobalHeader => return Ok(()),
            T::Regular | T::Continuous | T::Directory | T::Symlink | T::Link => {}
            other => return Err(Fail::Reject(Reject::Unsupported(other.as_byte() as char))),
        }
        if comps.is_empty() {
            // the `./` entry: the target itself
            if etype != T::Directory {
                return Err(Fail::Reject(Reject::RootNotDir));
            }
            let m = if layer { mode } else { 0o555 };
            self.dirs.insert(Vec::new(), (m, mtime));
            return Ok(());
        }
        let rel = comps.join(&b'/');
        let (name, parents) = comps.split_last().expect("non-empty");
        if layer && let Some(target) = name.strip_prefix(b".wh.") {
            return self.whiteout(parents, target, created);
        }
        let parent = self.open_parent(parents, true)?;
        let existing_is_dir = self.make_room(&parent, name, &rel, etype == T::Directory)?;
        match etype {
            T::Directory => {
                if !existing_is_dir {
                    rustix::fs::mkdirat(parent.as_fd(), *name, Mode::from_raw_mode(0o700))
                        .map_err(io_of)?;
                }
                let m = if layer { mode } else { 0o555 };
                self.dirs.insert(rel.clone(), (m, mtime));
            }
            T::Regular | T::Continuous => {
                let size = self.write_file(entry, &parent, name, mode, mtime)?;
                summary.files += 1;
                summary.bytes += size;
                progress.advance(1, size);
            }
            T::Symlink => self.write_symlink(entry, &parent, name, parents.len(), mtime)?,
            T::Link => self.write_hard_link(entry, &parent, name)?,
            _ => unreachable!("filtered above"),
        }
        created.insert(rel);
        Ok(())
    }

    /// The entry's permission bits: set-id bits stripped when the options
    /// say so, refused otherwise.
    fn checked_mode(&self, mode: u32) -> Result<u32, Fail> {
        let mode = mode & 0o7777;
        if mode & 0o6000 != 0 {
            if self.opts.strip_setid {
                return Ok(mode & !0o6000);
            }
            return Err(Fail::Reject(Reject::SetId(mode)));
        }
        Ok(mode)
    }

    /// A whiteout entry (layer mode): `.wh..opq` empties its directory of
    /// what earlier layers put there, `.wh.NAME` removes NAME (unless this
    /// layer made it).
    fn whiteout(
        &mut self,
        parents: &[&[u8]],
        target: &[u8],
        created: &HashSet<Vec<u8>>,
    ) -> Result<(), Fail> {
        let parent = self.open_parent(parents, true)?;
        let parent_rel = parents.join(&b'/');
        if target == b".wh..opq" {
            return self.opaque(&parent_rel, created);
        }
        if target.is_empty() || target == b"." || target == b".." || target.starts_with(b".wh.") {
            return Err(Fail::Reject(Reject::BadWhiteout));
        }
        let mut victim = parent_rel.clone();
        if !victim.is_empty() {
            victim.push(b'/');
        }
        victim.extend_from_slice(target);
        if !created.contains(&victim) {
            self.remove(&parent, target, &victim)?;
        }
        Ok(())
    }

    /// What already exists at `name`: a directory stays for a directory
    /// entry; anything else is a duplicate (snapshot mode) or is replaced
    /// (layer mode). Returns whether a directory is there.
    fn make_room(
        &mut self,
        parent: &OwnedFd,
        name: &[u8],
        rel: &[u8],
        entry_is_dir: bool,
    ) -> Result<bool, Fail> {
        let layer = self.opts.mode == ExtractMode::Layer;
        let existing = rustix::fs::statat(parent.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW).ok();
        let existing_is_dir = existing
            .as_ref()
            .is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
        if existing.is_some() {
            let keep_dir = entry_is_dir && existing_is_dir;
            if !layer && !keep_dir {
                return Err(Fail::Reject(Reject::Duplicate));
            }
            if layer && !keep_dir {
                self.remove(parent, name, rel)?;
            }
        }
        Ok(existing_is_dir)
    }

    /// A regular file: created exclusively, its content copied (within the
    /// size limit), then its mode (normalized in snapshot mode) and mtime
    /// set. Returns its size.
    fn write_file<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        parent: &OwnedFd,
        name: &[u8],
        mode: u32,
        mtime: u64,
    ) -> Result<u64, Fail> {
        let limits = self.opts.limits;
        let size = entry.size();
        if size > limits.max_entry_bytes {
            return Err(Fail::Reject(Reject::TooLarge {
                size,
                limit: limits.max_entry_bytes,
            }));
        }
        let fd = rustix::fs::openat(
            parent.as_fd(),
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(io_of)?;
        let mut f = File::from(fd);
        let n = io::copy(&mut entry.take(size), &mut f).map_err(Fail::Io)?;
        if n != size {
            return Err(Fail::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive ends inside this entry",
            )));
        }
        let m = if self.opts.mode == ExtractMode::Layer {
            mode
        } else if mode & 0o100 != 0 {
            0o555
        } else {
            0o444
        };
        rustix::fs::fchmod(&f, Mode::from_raw_mode(m)).map_err(io_of)?;
        rustix::fs::futimens(&f, &times(mtime)).map_err(io_of)?;
        Ok(size)
    }

    /// A symlink: its target must stay inside the tree (an absolute target
    /// is allowed in layer mode: it resolves inside the image's root, never
    /// on the host).
    fn write_symlink<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        parent: &OwnedFd,
        name: &[u8],
        depth: usize,
        mtime: u64,
    ) -> Result<(), Fail> {
        let limits = self.opts.limits;
        let layer = self.opts.mode == ExtractMode::Layer;
        let target = entry
            .link_name_bytes()
            .map(|c| c.into_owned())
            .unwrap_or_default();
        if target.len() > limits.max_path_bytes {
            return Err(Fail::Reject(Reject::PathTooLong(limits.max_path_bytes)));
        }
        if target.contains(&0) {
            return Err(Fail::Reject(Reject::Nul));
        }
        let absolute_ok = layer && target.first() == Some(&b'/');
        if !absolute_ok && !link_stays_inside(depth, &target) {
            return Err(Fail::Reject(Reject::LinkEscapes(
                String::from_utf8_lossy(&target).into_owned(),
            )));
        }
        rustix::fs::symlinkat(target.as_slice(), parent.as_fd(), name).map_err(io_of)?;
        rustix::fs::utimensat(
            parent.as_fd(),
            name,
            &times(mtime),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(io_of)?;
        Ok(())
    }

    /// A hard link (layer mode only) to a regular file already extracted
    /// below the root, found without following a symlink.
    fn write_hard_link<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        parent: &OwnedFd,
        name: &[u8],
    ) -> Result<(), Fail> {
        if self.opts.mode != ExtractMode::Layer {
            return Err(Fail::Reject(Reject::HardLink));
        }
        let target = entry
            .link_name_bytes()
            .map(|c| c.into_owned())
            .unwrap_or_default();
        let bad = || {
            Fail::Reject(Reject::BadHardLink(
                String::from_utf8_lossy(&target).into_owned(),
            ))
        };
        let tcomps = split_path(&target, self.opts.limits.max_path_bytes)?;
        let Some((tname, tparents)) = tcomps.split_last() else {
            return Err(bad());
        };
        let tparent = self.open_parent(tparents, false).map_err(|_| bad())?;
        let st = rustix::fs::statat(tparent.as_fd(), *tname, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|_| bad())?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(bad());
        }
        rustix::fs::linkat(
            tparent.as_fd(),
            *tname,
            parent.as_fd(),
            name,
            AtFlags::empty(),
        )
        .map_err(io_of)?;
        Ok(())
    }

    /// Opens the directory at `parents` below the root without following any
    /// symlink, creating missing directories when `create` is set.
    fn open_parent(&mut self, parents: &[&[u8]], create: bool) -> Result<Rc<OwnedFd>, Fail> {
        let key = parents.join(&b'/');
        if let Some((k, fd)) = &self.parent_cache
            && *k == key
        {
            return Ok(Rc::clone(fd));
        }
        let mut cur = rustix::io::dup(&self.root).map_err(io_of)?;
        let mut so_far: Vec<u8> = Vec::new();
        for comp in parents {
            if !so_far.is_empty() {
                so_far.push(b'/');
            }
            so_far.extend_from_slice(comp);
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let next = match rustix::fs::openat(cur.as_fd(), *comp, flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) if create => {
                    rustix::fs::mkdirat(cur.as_fd(), *comp, Mode::from_raw_mode(0o700))
                        .map_err(io_of)?;
                    let m = if self.opts.mode == ExtractMode::Layer {
                        0o755
                    } else {
                        0o555
                    };
                    self.dirs.insert(so_far.clone(), (m, 0));
                    rustix::fs::openat(cur.as_fd(), *comp, flags, Mode::empty()).map_err(io_of)?
                }
                Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
                    return Err(Fail::Reject(Reject::ParentNotDir(
                        String::from_utf8_lossy(&so_far).into_owned(),
                    )));
                }
                Err(e) => return Err(io_of(e)),
            };
            cur = next;
        }
        let fd = Rc::new(cur);
        self.parent_cache = Some((key, Rc::clone(&fd)));
        Ok(fd)
    }

    /// Removes `name` (recursively) from `parent`; `rel` is its path.
    fn remove(&mut self, parent: &OwnedFd, name: &[u8], rel: &[u8]) -> Result<(), Fail> {
        let Ok(st) = rustix::fs::statat(parent.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW) else {
            return Ok(());
        };
        self.parent_cache = None;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            // Every parent on the way was opened with O_NOFOLLOW just now and
            // the staging tree is private, so the path names the same directory;
            // remove_dir_all itself never follows symlinks.
            let path = self.root_path.join(OsStr::from_bytes(rel));
            std::fs::remove_dir_all(&path).map_err(Fail::Io)?;
        } else {
            rustix::fs::unlinkat(parent.as_fd(), name, AtFlags::empty()).map_err(io_of)?;
        }
        Ok(())
    }

    /// An opaque-directory marker: everything below `dir_rel` that this layer
    /// did not create goes.
    fn opaque(&mut self, dir_rel: &[u8], created: &HashSet<Vec<u8>>) -> Result<(), Fail> {
        let comps: Vec<&[u8]> = if dir_rel.is_empty() {
            Vec::new()
        } else {
            dir_rel.split(|&b| b == b'/').collect()
        };
        let dir = self.open_parent(&comps, false)?;
        let names: Vec<Vec<u8>> = {
            let path = self.root_path.join(OsStr::from_bytes(dir_rel));
            let rd = std::fs::read_dir(&path).map_err(Fail::Io)?;
            let mut v = Vec::new();
            for de in rd {
                v.push(de.map_err(Fail::Io)?.file_name().as_bytes().to_vec());
            }
            v
        };
        for name in names {
            let mut rel = dir_rel.to_vec();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(&name);
            if !created.contains(&rel) {
                self.remove(&dir, &name, &rel)?;
            } else if rustix::fs::statat(dir.as_fd(), name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
            {
                self.opaque(&rel, created)?;
            }
        }
        Ok(())
    }
}

/// Extracts one archive into `target` (an existing, empty directory) and
/// applies directory modes.
pub fn extract<R: Read>(
    reader: R,
    target: &Path,
    opts: &ExtractOptions,
    progress: &dyn Progress,
) -> Result<Extracted, ExtractError> {
    let mut u = Unpacker::new(target, *opts)?;
    let res = u.unpack(reader, progress)?;
    u.finish()?;
    Ok(res)
}

enum Fail {
    Reject(Reject),
    Io(io::Error),
}

impl From<Reject> for Fail {
    fn from(r: Reject) -> Self {
        Fail::Reject(r)
    }
}

fn io_of(e: rustix::io::Errno) -> Fail {
    Fail::Io(e.into())
}

fn depth(rel: &[u8]) -> usize {
    if rel.is_empty() {
        0
    } else {
        1 + rel.iter().filter(|&&b| b == b'/').count()
    }
}

fn times(mtime: u64) -> Timestamps {
    let ts = Timestamp {
        tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    Timestamps {
        last_access: ts,
        last_modification: ts,
    }
}

/// Splits an entry path into normal components; `.` and empty components
/// are dropped.
fn split_path(raw: &[u8], max: usize) -> Result<Vec<&[u8]>, Reject> {
    if raw.len() > max {
        return Err(Reject::PathTooLong(max));
    }
    if raw.contains(&0) {
        return Err(Reject::Nul);
    }
    if raw.first() == Some(&b'/') {
        return Err(Reject::Absolute);
    }
    let mut out = Vec::new();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err(Reject::DotDot),
            c if c.len() > 255 => return Err(Reject::NameTooLong),
            c => out.push(c),
        }
    }
    Ok(out)
}

#[derive(Debug)]
struct TooLargeMarker;
impl std::fmt::Display for TooLargeMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("archive exceeds its size limit")
    }
}
impl std::error::Error for TooLargeMarker {}

/// Hashes and counts everything read through it, failing past `limit` bytes.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    limit: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if self.count > self.limit {
            return Err(io::Error::other(TooLargeMarker));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_path_rules() {
        assert_eq!(
            split_path(b"./a//b/./c", 100).unwrap(),
            vec![&b"a"[..], b"b", b"c"]
        );
        assert!(split_path(b"./", 100).unwrap().is_empty());
        assert_eq!(split_path(b"/etc/passwd", 100), Err(Reject::Absolute));
        assert_eq!(split_path(b"a/../../x", 100), Err(Reject::DotDot));
        assert_eq!(split_path(b"a\0b", 100), Err(Reject::Nul));
        assert_eq!(split_path(&[b'a'; 101], 100), Err(Reject::PathTooLong(100)));
        assert_eq!(split_path(&[b'a'; 256], 1000), Err(Reject::NameTooLong));
    }
}
