//! The tar extractor (snapshot imports, image layers) on hostile archives:
//! never panics, and whatever the archive says and however extraction ends,
//! nothing outside the target directory is created or changed, and nothing
//! inside it is a device, a fifo, set-id, or (snapshot mode) a symlink that
//! leaves the tree.
//!
//! The input is either raw archive bytes or, more usefully, a list of entries
//! the target turns into a well-formed ustar stream (valid checksums), with
//! paths and link targets built from components that matter (`..`, `.`, empty,
//! whiteouts, absolute roots) so the fuzzer reaches the extractor's checks
//! instead of the tar header parser's.
//!
//! It writes below a temporary directory on every run: run it inside a
//! throwaway mount namespace (see README.md), not on a machine's real root.
#![no_main]
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use cloister_inputs::NoProgress;
use cloister_inputs::extract::{ExtractMode, ExtractOptions, Limits, extract};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Input {
    Raw { layer: bool, bytes: Vec<u8> },
    Entries { layer: bool, entries: Vec<Entry> },
}

#[derive(Arbitrary, Debug)]
struct Entry {
    kind: Kind,
    path: Vec<Part>,
    link: Vec<Part>,
    mode: u16,
    data: Vec<u8>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Fifo,
    CharDevice,
    BlockDevice,
    Other(u8),
}

#[derive(Arbitrary, Debug)]
enum Part {
    Name(u8),
    DotDot,
    Dot,
    Empty,
    Root,
    Whiteout(u8),
    OpaqueWhiteout,
    Bytes(Vec<u8>),
}

fn join(parts: &[Part]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        match p {
            Part::Name(n) => out.extend_from_slice(format!("n{}", n % 4).as_bytes()),
            Part::DotDot => out.extend_from_slice(b".."),
            Part::Dot => out.push(b'.'),
            Part::Empty => {}
            Part::Root => out.push(b'/'),
            Part::Whiteout(n) => out.extend_from_slice(format!(".wh.n{}", n % 4).as_bytes()),
            Part::OpaqueWhiteout => out.extend_from_slice(b".wh..wh..opq"),
            Part::Bytes(b) => out.extend_from_slice(b),
        }
    }
    out
}

fn octal(field: &mut [u8], v: u64) {
    let s = format!("{:0w$o}", v, w = field.len() - 1);
    let s = &s.as_bytes()[s.len().saturating_sub(field.len() - 1)..];
    field[..s.len()].copy_from_slice(s);
    field[s.len()] = 0;
}

/// One ustar header (names cut at 100 bytes) and the entry's data, padded.
fn ustar(e: &Entry, out: &mut Vec<u8>) {
    let mut h = [0u8; 512];
    let name = join(&e.path);
    let link = join(&e.link);
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    octal(&mut h[100..108], u64::from(e.mode) & 0o7777);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    let data: &[u8] = match e.kind {
        Kind::File | Kind::Other(_) => &e.data,
        _ => &[],
    };
    octal(&mut h[124..136], data.len() as u64);
    octal(&mut h[136..148], 1_700_000_000);
    h[156] = match e.kind {
        Kind::File => b'0',
        Kind::Hardlink => b'1',
        Kind::Symlink => b'2',
        Kind::CharDevice => b'3',
        Kind::BlockDevice => b'4',
        Kind::Dir => b'5',
        Kind::Fifo => b'6',
        Kind::Other(t) => t,
    };
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link[..l]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    octal(&mut h[148..155], sum);
    h[155] = b' ';
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(512), 0);
}

/// Whether a relative symlink target, read in directory `dir` (relative to
/// the tree's root), names a path inside the tree.
fn resolves_inside(dir: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth = dir.components().count() as i64;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

fn check_tree(root: &Path, rel: &Path, layer: bool) {
    let dir = root.join(rel);
    let Ok(entries) = fs::read_dir(&dir) else {
        return;
    };
    for entry in entries {
        let entry = entry.expect("readdir");
        let rel_path = rel.join(entry.file_name());
        let md = fs::symlink_metadata(entry.path()).expect("lstat");
        let ft = md.file_type();
        assert!(
            !(ft.is_fifo() || ft.is_char_device() || ft.is_block_device() || ft.is_socket()),
            "{rel_path:?}: a special file was created"
        );
        assert_eq!(
            md.permissions().mode() & 0o6000,
            0,
            "{rel_path:?}: set-id bits"
        );
        if ft.is_symlink() {
            let target = fs::read_link(entry.path()).expect("readlink");
            if !(layer && target.is_absolute()) {
                assert!(
                    resolves_inside(rel, &target),
                    "{rel_path:?} -> {target:?} leaves the tree"
                );
            }
        } else if ft.is_dir() {
            check_tree(root, &rel_path, layer);
        }
    }
}

/// Everything below `dir`, as (path, size, mode, nlink): what "unchanged" means.
fn listing(dir: &Path) -> Vec<(PathBuf, u64, u32, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)
            .expect("readdir")
            .map(|e| e.expect("entry"))
        {
            let md = fs::symlink_metadata(e.path()).expect("lstat");
            if md.is_dir() {
                stack.push(e.path());
            }
            out.push((e.path(), md.len(), md.mode(), md.nlink()));
        }
    }
    out.sort();
    out
}

fuzz_target!(|input: Input| {
    let (layer, bytes) = match input {
        Input::Raw { layer, bytes } => (layer, bytes),
        Input::Entries { layer, entries } => {
            let mut out = Vec::new();
            for e in &entries {
                ustar(e, &mut out);
            }
            out.extend_from_slice(&[0u8; 1024]);
            (layer, out)
        }
    };
    let base = tempfile::tempdir().expect("tempdir");
    // The tree is two levels down, so an escape of one or two `..` lands in
    // directories this target watches.
    let target = base.path().join("a/target");
    let outside = base.path().join("a/outside");
    fs::create_dir_all(&target).expect("mkdir");
    fs::create_dir_all(&outside).expect("mkdir");
    fs::write(outside.join("n0"), b"keep").expect("write");
    fs::write(base.path().join("n0"), b"keep").expect("write");
    let before: Vec<_> = listing(base.path())
        .into_iter()
        .filter(|(p, ..)| !p.starts_with(&target))
        .collect();

    let mut opts = ExtractOptions::new(if layer {
        ExtractMode::Layer
    } else {
        ExtractMode::Snapshot
    });
    opts.limits = Limits {
        max_entries: 256,
        max_entry_bytes: 1 << 20,
        max_archive_bytes: 4 << 20,
        max_path_bytes: 4096,
    };
    let _ = extract(bytes.as_slice(), &target, &opts, &NoProgress);

    let after: Vec<_> = listing(base.path())
        .into_iter()
        .filter(|(p, ..)| !p.starts_with(&target))
        .collect();
    assert_eq!(before, after, "something outside the target changed");
    check_tree(&target, Path::new(""), layer);
});
