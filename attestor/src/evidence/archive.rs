//! The packs' archive format: a deterministic `.tar.gz` written from an
//! in-memory file set, and a strict reader for `pack verify`.
//!
//! Writer: the snapshot tar's header rules (`cloister_inputs::tarfmt`: GNU
//! format, `./`-prefixed names, mtime fixed, uid/gid 0 with numeric owners,
//! modes 0644 for files and 0755 for directories, end-of-archive padding to
//! the 10240-byte record), entries in the order GNU tar's `--sort=name`
//! walks a tree (depth first, names sorted bytewise within a directory), so
//! the uncompressed tar equals what the cookbook's GNU tar command writes
//! for the extracted tree; gzip (libdeflate) with mtime 0 and no name, one
//! member per [`GZIP_CHUNK`] of the tar compressed in parallel (a
//! concatenation of members is one gzip stream for `gzip -d`, `tar -xz` and
//! Python; chunk boundaries depend only on the input, so the bytes do not
//! depend on the number of threads). The same file set therefore always
//! gives the same bytes.
//!
//! Reader: refuses anything but regular files and directories, absolute
//! names, `..`, a name twice, and more than [`MAX_FILES`] files or
//! [`MAX_UNPACKED`] bytes (the decompressed stream is counted, so a gzip
//! bomb stops early).

use cloister_inputs::tarfmt::{self, Type};
use std::collections::BTreeMap;
use std::io::Read;

/// Most files a pack may hold when read.
pub const MAX_FILES: usize = 100_000;
/// Most decompressed bytes read from a pack.
pub const MAX_UNPACKED: u64 = 4 << 30;
/// gzip level (libdeflate's scale; 6 is gzip's default, `tar czf`'s).
pub const GZIP_LEVEL: i32 = 6;
/// Bytes of tar per gzip member.
pub const GZIP_CHUNK: usize = 1 << 20;

/// Why an archive cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("invalid file name {0:?} (relative, no '..', no empty or '.' components)")]
    BadName(String),
    #[error("{0:?} is both a file and a directory")]
    FileIsDir(String),
    #[error("not a gzip-compressed tar: {0}")]
    Format(String),
    #[error("entry {0:?} is not a regular file or directory")]
    EntryType(String),
    #[error("entry {0:?} appears twice")]
    Duplicate(String),
    #[error("more than {MAX_FILES} files")]
    TooManyFiles,
    #[error("more than {MAX_UNPACKED} bytes unpacked")]
    TooLarge,
    #[error("gzip compression failed: {0}")]
    Compress(String),
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 4096
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'))
}

/// The uncompressed tar of `files` (name → content); `mtime` is every
/// entry's modification time (seconds since the epoch).
pub fn tar_bytes(files: &BTreeMap<String, Vec<u8>>, mtime: u64) -> Result<Vec<u8>, ArchiveError> {
    // Directories implied by the file names, then everything in GNU tar's
    // --sort=name order: path components compared one by one.
    let mut entries: BTreeMap<Vec<&str>, Option<&[u8]>> = BTreeMap::new();
    for (name, data) in files {
        if !valid_name(name) {
            return Err(ArchiveError::BadName(name.clone()));
        }
        let parts: Vec<&str> = name.split('/').collect();
        for i in 1..parts.len() {
            if let Some(Some(_)) = entries.insert(parts[..i].to_vec(), None) {
                return Err(ArchiveError::FileIsDir(parts[..i].join("/")));
            }
        }
        if let Some(None) = entries.get(&parts) {
            return Err(ArchiveError::FileIsDir(name.clone()));
        }
        entries.insert(parts, Some(data));
    }
    let size: usize = files.values().map(|d| d.len() + 1024).sum();
    let mut out = Vec::with_capacity(size + tarfmt::RECORD as usize);
    tarfmt::append_header(&mut out, b"./", Type::Dir, 0o755, 0, mtime, b"");
    for (parts, data) in &entries {
        let mut name = format!("./{}", parts.join("/"));
        match data {
            None => {
                name.push('/');
                tarfmt::append_header(&mut out, name.as_bytes(), Type::Dir, 0o755, 0, mtime, b"");
            }
            Some(data) => {
                tarfmt::append_header(
                    &mut out,
                    name.as_bytes(),
                    Type::File,
                    tarfmt::normalized_mode(Type::File, false),
                    data.len() as u64,
                    mtime,
                    b"",
                );
                out.extend_from_slice(data);
                out.resize(out.len() + tarfmt::padding_for(data.len() as u64), 0);
            }
        }
    }
    let trailer = tarfmt::trailer_len(out.len() as u64) as usize;
    out.resize(out.len() + trailer, 0);
    Ok(out)
}

/// One gzip member of `data` (mtime 0, no file name).
fn gzip_member(data: &[u8]) -> Result<Vec<u8>, ArchiveError> {
    let level = libdeflater::CompressionLvl::new(GZIP_LEVEL)
        .map_err(|e| ArchiveError::Compress(format!("{e:?}")))?;
    let mut c = libdeflater::Compressor::new(level);
    let mut out = vec![0u8; c.gzip_compress_bound(data.len())];
    let n = c
        .gzip_compress(data, &mut out)
        .map_err(|e| ArchiveError::Compress(format!("{e:?}")))?;
    out.truncate(n);
    Ok(out)
}

/// gzip of `data`: one member per [`GZIP_CHUNK`], compressed on every core.
pub fn gzip(data: &[u8]) -> Result<Vec<u8>, ArchiveError> {
    let chunks: Vec<&[u8]> = if data.is_empty() {
        vec![data]
    } else {
        data.chunks(GZIP_CHUNK).collect()
    };
    let members = super::parallel_map(&chunks, |c| gzip_member(c));
    let mut out = Vec::with_capacity(data.len() / 3);
    for m in members {
        out.extend_from_slice(&m?);
    }
    Ok(out)
}

/// The `.tar.gz` of `files`.
pub fn write(files: &BTreeMap<String, Vec<u8>>, mtime: u64) -> Result<Vec<u8>, ArchiveError> {
    gzip(&tar_bytes(files, mtime)?)
}

/// Reads a `.tar.gz` strictly into name → content (directories dropped,
/// names without the `./` prefix).
pub fn read(bytes: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, ArchiveError> {
    let gz = flate2::read::MultiGzDecoder::new(bytes);
    // One byte past the limit tells "too large" from "exactly the limit".
    let mut limited = gz.take(MAX_UNPACKED + 1);
    let mut tar_data = Vec::new();
    limited
        .read_to_end(&mut tar_data)
        .map_err(|e| ArchiveError::Format(e.to_string()))?;
    if tar_data.len() as u64 > MAX_UNPACKED {
        return Err(ArchiveError::TooLarge);
    }
    let mut archive = tar::Archive::new(tar_data.as_slice());
    let mut out = BTreeMap::new();
    let mut dirs = std::collections::BTreeSet::new();
    let entries = archive
        .entries()
        .map_err(|e| ArchiveError::Format(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ArchiveError::Format(e.to_string()))?;
        let raw = entry.path_bytes().into_owned();
        let raw = String::from_utf8(raw).map_err(|e| {
            ArchiveError::BadName(String::from_utf8_lossy(e.as_bytes()).into_owned())
        })?;
        let kind = entry.header().entry_type();
        let name = raw.strip_prefix("./").unwrap_or(&raw);
        let name = name.strip_suffix('/').unwrap_or(name);
        if name.is_empty() && kind.is_dir() {
            continue;
        }
        if !valid_name(name) {
            return Err(ArchiveError::BadName(raw));
        }
        if kind.is_dir() {
            if out.contains_key(name) || !dirs.insert(name.to_owned()) {
                return Err(ArchiveError::Duplicate(name.to_owned()));
            }
            continue;
        }
        if !kind.is_file() {
            return Err(ArchiveError::EntryType(name.to_owned()));
        }
        if out.len() >= MAX_FILES {
            return Err(ArchiveError::TooManyFiles);
        }
        if dirs.contains(name) || out.contains_key(name) {
            return Err(ArchiveError::Duplicate(name.to_owned()));
        }
        let mut data = Vec::with_capacity(entry.size().min(64 << 20) as usize);
        entry
            .read_to_end(&mut data)
            .map_err(|e| ArchiveError::Format(e.to_string()))?;
        out.insert(name.to_owned(), data);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        list.iter()
            .map(|(n, d)| (n.to_string(), d.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn same_files_same_bytes_and_they_read_back() {
        let f = files(&[("b.txt", "b"), ("a/x.json", "{}"), ("a-b", "dash")]);
        let one = write(&f, 0).unwrap();
        let two = write(&f.clone(), 0).unwrap();
        assert_eq!(one, two);
        // gzip header: no mtime, no name
        assert_eq!(&one[..4], &[0x1f, 0x8b, 8, 0]);
        assert_eq!(&one[4..8], &[0, 0, 0, 0]);
        // several members (one per chunk) read back as one stream
        let big: Vec<u8> = (0..3 * GZIP_CHUNK + 7)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let gz = gzip(&big).unwrap();
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(gz.as_slice())
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == big);
        assert_eq!(read(&one).unwrap(), f);
        // GNU --sort=name order: "a/" and its children before "a-b"
        let tar = tar_bytes(&f, 0).unwrap();
        let names: Vec<String> = tar::Archive::new(tar.as_slice())
            .entries()
            .unwrap()
            .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
            .collect();
        assert_eq!(names, ["./", "./a/", "./a/x.json", "./a-b", "./b.txt"]);
        assert_eq!(tar.len() % tarfmt::RECORD as usize, 0);
    }

    #[test]
    fn bad_names_and_file_dir_clashes_are_refused() {
        for bad in ["/abs", "a/../b", "./a", "a//b", ""] {
            assert!(tar_bytes(&files(&[(bad, "x")]), 0).is_err(), "{bad}");
        }
        assert!(matches!(
            tar_bytes(&files(&[("a", "x"), ("a/b", "y")]), 0),
            Err(ArchiveError::FileIsDir(_))
        ));
    }

    #[test]
    fn reader_refuses_links_traversal_and_garbage() {
        assert!(matches!(read(b"not gzip"), Err(ArchiveError::Format(_))));
        let mut tar = Vec::new();
        tarfmt::append_header(
            &mut tar,
            b"./link",
            Type::Symlink,
            0o755,
            0,
            0,
            b"/etc/passwd",
        );
        tar.resize(
            tar.len() + tarfmt::trailer_len(tar.len() as u64) as usize,
            0,
        );
        assert!(matches!(
            read(&gzip(&tar).unwrap()),
            Err(ArchiveError::EntryType(_))
        ));
        let mut tar = Vec::new();
        tarfmt::append_header(&mut tar, b"../evil", Type::File, 0o644, 1, 0, b"");
        tar.push(b'x');
        tar.resize(tar.len() + tarfmt::padding_for(1), 0);
        tar.resize(
            tar.len() + tarfmt::trailer_len(tar.len() as u64) as usize,
            0,
        );
        assert!(matches!(
            read(&gzip(&tar).unwrap()),
            Err(ArchiveError::BadName(_))
        ));
        // the same name twice
        let mut tar = Vec::new();
        for _ in 0..2 {
            tarfmt::append_header(&mut tar, b"./a", Type::File, 0o644, 1, 0, b"");
            tar.push(b'x');
            tar.resize(tar.len() + tarfmt::padding_for(1), 0);
        }
        tar.resize(
            tar.len() + tarfmt::trailer_len(tar.len() as u64) as usize,
            0,
        );
        assert!(matches!(
            read(&gzip(&tar).unwrap()),
            Err(ArchiveError::Duplicate(_))
        ));
    }
}
