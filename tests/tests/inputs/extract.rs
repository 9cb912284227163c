//! The safe extractor against hostile archives, one crafted tarball per
//! rejection rule: the error names the entry, nothing is written outside the
//! target, and a rejected import leaves nothing in the store.

use crate::util::*;
use cloister_inputs::NoProgress;
use cloister_inputs::extract::{
    ExtractError, ExtractMode, ExtractOptions, Limits, Reject, extract,
};
use std::fs;
use std::path::Path;

/// Imports `tar` (gzipped) through the CLI and expects a rejection naming
/// `entry` with `reason`; checks the store and the surroundings are untouched.
fn rejected(tar: &[u8], entry: &str, reason: &str) {
    let env = Env::new();
    let file = env.path("hostile.tar.gz");
    fs::write(&file, gzip(tar)).unwrap();
    let before = listing(env.tmp.path());
    let err = env.fails(&["snapshot", "import", s(&file)]);
    assert!(
        err.contains(&format!("entry {entry:?}")),
        "error must name {entry:?}: {err}"
    );
    assert!(err.contains(reason), "error must say {reason:?}: {err}");
    assert!(err.lines().count() == 1, "one-line error: {err}");
    assert!(
        listing(&env.store().join("snapshots")).is_empty(),
        "nothing stored"
    );
    assert!(
        listing(&env.store().join("tmp")).is_empty(),
        "no staging left behind"
    );
    let after: Vec<String> = listing(env.tmp.path())
        .into_iter()
        .filter(|p| !p.starts_with("store"))
        .collect();
    let before: Vec<String> = before
        .into_iter()
        .filter(|p| !p.starts_with("store"))
        .collect();
    assert_eq!(after, before, "nothing written outside the store");
    assert!(!Path::new("/tmp/cloister-pwned").exists());
}

#[test]
fn absolute_paths_are_rejected() {
    let tar = RawTar::default()
        .dir("./")
        .entry(b"/tmp/cloister-pwned", b'0', 0o644, b"x", b"")
        .finish();
    rejected(&tar, "/tmp/cloister-pwned", "absolute path");
}

#[test]
fn dotdot_paths_are_rejected() {
    let tar = RawTar::default()
        .dir("./")
        .file("../../../../cloister-pwned", b"x")
        .finish();
    rejected(&tar, "../../../../cloister-pwned", "'..'");
    let tar = RawTar::default()
        .dir("./")
        .dir("./a/")
        .file("./a/../../cloister-pwned", b"x")
        .finish();
    rejected(&tar, "./a/../../cloister-pwned", "'..'");
}

#[test]
fn symlinks_leaving_the_tree_are_rejected() {
    let tar = RawTar::default()
        .dir("./")
        .symlink("./evil", "/etc")
        .finish();
    rejected(&tar, "./evil", "leaves the tree");
    let tar = RawTar::default()
        .dir("./")
        .dir("./d/")
        .symlink("./d/evil", "../../..")
        .finish();
    rejected(&tar, "./d/evil", "leaves the tree");
    let tar = RawTar::default()
        .dir("./")
        .symlink("./evil", "x/../../y")
        .finish();
    rejected(&tar, "./evil", "leaves the tree");
}

#[test]
fn writing_through_a_symlink_is_rejected() {
    // An inside link is fine on its own, but nothing may be written through it.
    let tar = RawTar::default()
        .dir("./")
        .dir("./sub/")
        .symlink("./link", "sub")
        .file("./link/x", b"x")
        .finish();
    rejected(&tar, "./link/x", "is a symlink or not a directory");
    // A file replaced by a symlink and then written: duplicate in a snapshot.
    let tar = RawTar::default()
        .dir("./")
        .symlink("./f", "sub")
        .file("./f", b"x")
        .finish();
    rejected(&tar, "./f", "duplicate entry");
}

#[test]
fn layer_symlink_then_write_through_is_rejected_and_nothing_escapes() {
    // In a layer an absolute target is allowed (it names a path in the
    // rootfs), but the extractor never follows it on the host.
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let target = tmp.path().join("rootfs");
    fs::create_dir(&target).unwrap();
    let tar = RawTar::default()
        .symlink("etc", outside.to_str().unwrap())
        .file("etc/passwd", b"root::0:0::/:/bin/sh\n")
        .finish();
    let err = extract(
        &tar[..],
        &target,
        &ExtractOptions::new(ExtractMode::Layer),
        &NoProgress,
    )
    .unwrap_err();
    match &err {
        ExtractError::Rejected {
            entry,
            reason: Reject::ParentNotDir(p),
        } => {
            assert_eq!(entry, "etc/passwd");
            assert_eq!(p, "etc");
        }
        other => panic!("unexpected {other}"),
    }
    assert!(
        listing(&outside).is_empty(),
        "nothing written through the link"
    );
}

#[test]
fn hard_links_are_rejected_in_snapshots_and_confined_in_layers() {
    let tar = RawTar::default()
        .dir("./")
        .file("./a", b"x")
        .entry(b"./b", b'1', 0o644, b"", b"./a")
        .finish();
    rejected(&tar, "./b", "hard links are not allowed");

    let tmp = tempfile::tempdir().unwrap();
    for (target, why) in [
        ("/etc/passwd", Reject::Absolute),
        ("../../etc/passwd", Reject::DotDot),
    ] {
        let root = tmp.path().join(format!("r{}", target.len()));
        fs::create_dir(&root).unwrap();
        let tar = RawTar::default()
            .entry(b"h", b'1', 0o644, b"", target.as_bytes())
            .finish();
        let err = extract(
            &tar[..],
            &root,
            &ExtractOptions::new(ExtractMode::Layer),
            &NoProgress,
        )
        .unwrap_err();
        assert!(
            matches!(&err, ExtractError::Rejected { entry, reason } if entry == "h" && *reason == why),
            "{err}"
        );
    }
    // a link to a symlink (not a regular file extracted earlier) is refused
    let root = tmp.path().join("rl");
    fs::create_dir(&root).unwrap();
    let tar = RawTar::default()
        .symlink("s", "/etc/shadow")
        .entry(b"h", b'1', 0o644, b"", b"s")
        .finish();
    let err = extract(
        &tar[..],
        &root,
        &ExtractOptions::new(ExtractMode::Layer),
        &NoProgress,
    )
    .unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    // a proper hard link inside a layer works
    let root = tmp.path().join("ok");
    fs::create_dir(&root).unwrap();
    let tar = RawTar::default()
        .file("a", b"same")
        .entry(b"b", b'1', 0o644, b"", b"a")
        .finish();
    extract(
        &tar[..],
        &root,
        &ExtractOptions::new(ExtractMode::Layer),
        &NoProgress,
    )
    .unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(root.join("b")).unwrap().nlink(), 2);
}

#[test]
fn device_nodes_are_rejected() {
    let tar = RawTar::default()
        .dir("./")
        .entry(b"./null", b'3', 0o666, b"", b"")
        .finish();
    rejected(&tar, "./null", "device nodes are not allowed");
    let tar = RawTar::default()
        .dir("./")
        .entry(b"./sda", b'4', 0o660, b"", b"")
        .finish();
    rejected(&tar, "./sda", "device nodes are not allowed");
}

#[test]
fn fifos_are_rejected() {
    let tar = RawTar::default()
        .dir("./")
        .entry(b"./pipe", b'6', 0o644, b"", b"")
        .finish();
    rejected(&tar, "./pipe", "fifos are not allowed");
}

#[test]
fn setuid_and_setgid_bits_are_rejected() {
    let tar = RawTar::default()
        .dir("./")
        .entry(b"./su", b'0', 0o4755, b"x", b"")
        .finish();
    rejected(
        &tar,
        "./su",
        "setuid/setgid bits are not allowed (mode 4755)",
    );
    let tar = RawTar::default()
        .dir("./")
        .entry(b"./sg/", b'5', 0o2755, b"", b"")
        .finish();
    rejected(
        &tar,
        "./sg/",
        "setuid/setgid bits are not allowed (mode 2755)",
    );
}

#[test]
fn absurd_sizes_are_rejected_before_reading() {
    // The header claims 1 TiB; the archive holds a few bytes.
    let tar = RawTar::default()
        .dir("./")
        .entry_sized(b"./huge", b'0', 0o644, b"", b"", 1 << 40)
        .finish();
    rejected(&tar, "./huge", "exceeds the limit");
}

#[test]
fn entry_count_and_archive_size_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = RawTar::default();
    t.dir("./");
    for i in 0..20 {
        t.file(&format!("./f{i}"), b"x");
    }
    let tar = t.finish();
    let mut opts = ExtractOptions::new(ExtractMode::Snapshot);
    opts.limits = Limits {
        max_entries: 10,
        ..Limits::default()
    };
    let root = tmp.path().join("a");
    fs::create_dir(&root).unwrap();
    let err = extract(&tar[..], &root, &opts, &NoProgress).unwrap_err();
    assert!(
        matches!(&err, ExtractError::Rejected { entry, reason: Reject::TooManyEntries(10) } if entry == "./f9"),
        "{err}"
    );

    let mut opts = ExtractOptions::new(ExtractMode::Snapshot);
    opts.limits = Limits {
        max_archive_bytes: 4096,
        ..Limits::default()
    };
    let root = tmp.path().join("b");
    fs::create_dir(&root).unwrap();
    let err = extract(&tar[..], &root, &opts, &NoProgress).unwrap_err();
    assert!(matches!(err, ExtractError::ArchiveTooLarge(4096)), "{err}");

    // a gzip bomb: small compressed, huge uncompressed, stopped by the same limit
    let zeros = vec![0u8; 8 << 20];
    let mut bomb = RawTar::default();
    bomb.dir("./").entry(b"./z", b'0', 0o644, &zeros, b"");
    let gz = gzip(&bomb.finish());
    assert!(gz.len() < 100_000);
    let mut opts = ExtractOptions::new(ExtractMode::Snapshot);
    opts.limits = Limits {
        max_archive_bytes: 1 << 20,
        ..Limits::default()
    };
    let root = tmp.path().join("c");
    fs::create_dir(&root).unwrap();
    let err = extract(
        flate2::read::GzDecoder::new(&gz[..]),
        &root,
        &opts,
        &NoProgress,
    )
    .unwrap_err();
    assert!(matches!(err, ExtractError::ArchiveTooLarge(_)), "{err}");
}

#[test]
fn non_canonical_archives_are_refused_on_import() {
    let env = Env::new();
    let t = env.path("t");
    fs::create_dir(&t).unwrap();
    write(&t, "f", b"content\n", 0o644);
    // plain GNU tar without normalization: real mtimes and owner names
    let file = env.path("plain.tar");
    let st = std::process::Command::new("tar")
        .args(["-cf", s(&file), "-C", s(&t), "."])
        .status()
        .unwrap();
    assert!(st.success());
    let err = env.fails(&["snapshot", "import", s(&file)]);
    assert!(err.contains("not a canonical snapshot"), "{err}");
    assert!(listing(&env.store().join("snapshots")).is_empty());
    assert!(listing(&env.store().join("tmp")).is_empty());
    // the normalized GNU tar command line produces an importable archive
    fs::write(&file, gnu_tar(&t, 0)).unwrap();
    let d = env.ok(&["snapshot", "import", s(&file)]);
    assert_eq!(d.trim(), env.ok(&["snapshot", "--no-store", s(&t)]).trim());
}

#[test]
fn garbage_and_truncated_archives_fail_cleanly() {
    let env = Env::new();
    let file = env.path("junk.tar.gz");
    fs::write(&file, gzip(&[0x55; 2048])).unwrap();
    let err = env.fails(&["snapshot", "import", s(&file)]);
    assert!(err.contains("reading archive"), "{err}");
    let tar = RawTar::default()
        .dir("./")
        .file("./f", &[b'y'; 5000])
        .finish();
    fs::write(&file, gzip(&tar[..1500])).unwrap();
    let err = env.fails(&["snapshot", "import", s(&file)]);
    assert!(err.contains("./f"), "{err}");
    assert!(listing(&env.store().join("snapshots")).is_empty());
    assert!(listing(&env.store().join("tmp")).is_empty());
}
