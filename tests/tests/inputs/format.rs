//! The canonical snapshot format: byte-identical to the documented GNU tar
//! command line, independent of mtimes, owners, umask, creation order and
//! permission noise; special files and escaping links refused.

use crate::util::*;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

fn digest_of(env: &Env, dir: &Path) -> String {
    env.ok(&["snapshot", "--no-store", s(dir)])
        .trim()
        .to_owned()
}

#[test]
fn digest_equals_documented_gnu_tar_command() {
    let env = Env::new();
    let tree = env.path("tree");
    make_tree(&tree);
    let tar = gnu_tar(&tree, 0);
    assert_eq!(digest_of(&env, &tree), sha256(&tar));

    // byte-identical, not just the same hash: the .tar.gz decompresses to GNU tar's bytes
    let out = env.path("t.tar.gz");
    env.ok(&["snapshot", "--no-store", "--out", s(&out), s(&tree)]);
    let mut ours = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::MultiGzDecoder::new(fs::File::open(&out).unwrap()),
        &mut ours,
    )
    .unwrap();
    assert!(
        ours == tar,
        "uncompressed snapshot differs from GNU tar output"
    );
    // and gzip itself reads our multi-member file
    let gz = Command::new("gzip")
        .args(["-dc", s(&out)])
        .output()
        .unwrap();
    assert!(gz.status.success());
    assert!(gz.stdout == tar);
}

/// The stream is cut into 1 MiB chunks wherever a read ends, so entries
/// start at any offset within a chunk: a tree of several MiB with names over
/// 100 bytes (GNU `L` entries) and sizes that are not block multiples puts
/// long-name entries in chunks that do not start on a block boundary. (A
/// real `cargo vendor` tree once came out misaligned there.)
#[test]
fn multi_chunk_tree_with_long_names_matches_gnu_tar() {
    let env = Env::new();
    let tree = env.path("big");
    let deep = tree.join("d".repeat(60)).join("e".repeat(60));
    fs::create_dir_all(&deep).unwrap();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..400u32 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let size = (seed % 40_000) as usize + 1;
        let dir = if i % 2 == 0 { &deep } else { &tree };
        let name = format!("{i:04}-{}", "n".repeat(90 + (i % 20) as usize));
        let byte = (i % 251) as u8;
        fs::write(dir.join(name), vec![byte; size]).unwrap();
    }
    let tar = gnu_tar(&tree, 0);
    assert!(tar.len() > 4 << 20, "the tree spans several chunks");
    assert_eq!(digest_of(&env, &tree), sha256(&tar));
    // and GNU tar lists every entry of ours
    let out = env.path("big.tar.gz");
    env.ok(&["snapshot", "--no-store", "--out", s(&out), s(&tree)]);
    let listed = Command::new("tar")
        .args(["-tzf", s(&out)])
        .output()
        .unwrap();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert_eq!(listed.stdout.iter().filter(|b| **b == b'\n').count(), 403);
}

#[test]
fn source_date_epoch_sets_mtime_and_matches_gnu_tar() {
    let env = Env::new();
    let tree = env.path("tree");
    make_tree(&tree);
    let out = env
        .cmd(&["snapshot", "--no-store", s(&tree)])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(ours, sha256(&gnu_tar(&tree, 1_700_000_000)));
    assert_ne!(
        ours,
        digest_of(&env, &tree),
        "SOURCE_DATE_EPOCH must change the digest"
    );
    let bad = env
        .cmd(&["snapshot", "--no-store", s(&tree)])
        .env("SOURCE_DATE_EPOCH", "yesterday")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("SOURCE_DATE_EPOCH"));
}

#[test]
fn same_tree_same_digest_whatever_mtimes_owners_umask_order_and_mode_noise() {
    let env = Env::new();
    let a = env.path("a");
    make_tree(&a);
    let reference = digest_of(&env, &a);

    // A copy made in another order, under another umask, with other mtimes,
    // other owners and permission-bit noise that normalization erases.
    let b = env.path("b");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 077 && mkdir {b} && cd {a} && find . -mindepth 1 | sort -r > /tmp/.order-$$ && \
             tar --no-recursion -cf - -T /tmp/.order-$$ | (cd {b} && tar -xpf -) ; rm -f /tmp/.order-$$",
            a = s(&a),
            b = s(&b)
        ))
        .status()
        .unwrap();
    assert!(st.success());
    let touch = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {b} && find . -exec touch -h -d '2001-02-03 04:05:06' {{}} + && \
             chown -hR 12345:54321 . && chmod g+w,o+w README && chmod 0700 a/b/run.sh && \
             chmod 0400 zero && chmod 1777 empty && chmod 2755 a && chmod 4644 exactly-512",
            b = s(&b)
        ))
        .status()
        .unwrap();
    assert!(touch.success());
    assert_eq!(digest_of(&env, &b), reference);
    // Through the store too (warm cache keyed per source path).
    assert_eq!(env.ok(&["snapshot", s(&b)]).trim(), reference);
    assert_eq!(env.ok(&["snapshot", s(&a)]).trim(), reference);
}

#[test]
fn owner_execute_bit_and_content_change_the_digest() {
    let env = Env::new();
    let t = env.path("t");
    make_tree(&t);
    let d0 = digest_of(&env, &t);
    fs::set_permissions(t.join("README"), fs::Permissions::from_mode(0o744)).unwrap();
    let d1 = digest_of(&env, &t);
    assert_ne!(d0, d1);
    assert_eq!(d1, sha256(&gnu_tar(&t, 0)));
    fs::set_permissions(t.join("README"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(t.join("README"), b"hellO\n").unwrap();
    assert_ne!(digest_of(&env, &t), d0);
}

#[test]
fn hard_links_are_stored_as_separate_files_like_tar_hard_dereference() {
    let env = Env::new();
    let t = env.path("t");
    fs::create_dir(&t).unwrap();
    write(&t, "one", b"shared content\n", 0o644);
    fs::hard_link(t.join("one"), t.join("two")).unwrap();
    let linked = digest_of(&env, &t);
    assert_eq!(linked, sha256(&gnu_tar(&t, 0)));
    // the same tree without the link (two plain copies) has the same digest
    let c = env.path("c");
    fs::create_dir(&c).unwrap();
    write(&c, "one", b"shared content\n", 0o644);
    write(&c, "two", b"shared content\n", 0o644);
    assert_eq!(digest_of(&env, &c), linked);
    // and the materialized tree holds two independent files
    let j = env.json(&["snapshot", s(&t)]);
    let tree = Path::new(j["tree"].as_str().unwrap()).to_path_buf();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(tree.join("one")).unwrap().nlink(), 1);
    assert_eq!(fs::read(tree.join("two")).unwrap(), b"shared content\n");
}

#[test]
fn sockets_fifos_and_devices_are_refused_naming_the_path() {
    let env = Env::new();
    // socket
    let t = env.path("sock");
    fs::create_dir_all(t.join("sub")).unwrap();
    let _l = std::os::unix::net::UnixListener::bind(t.join("sub/app.sock")).unwrap();
    let err = env.fails(&["snapshot", s(&t)]);
    assert!(
        err.contains("sub/app.sock") && err.contains("socket"),
        "{err}"
    );
    // fifo
    let f = env.path("fifo");
    fs::create_dir(&f).unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(f.join("pipe"))
            .status()
            .unwrap()
            .success()
    );
    let err = env.fails(&["snapshot", s(&f)]);
    assert!(err.contains("pipe") && err.contains("fifo"), "{err}");
    // character device (needs CAP_MKNOD: the test suite runs as root in CI)
    let d = env.path("dev");
    fs::create_dir(&d).unwrap();
    let mk = Command::new("mknod")
        .arg(d.join("null"))
        .args(["c", "1", "3"])
        .status()
        .unwrap();
    assert!(
        mk.success(),
        "mknod failed: tests must run as root (CI does)"
    );
    let err = env.fails(&["snapshot", s(&d)]);
    assert!(
        err.contains("null") && err.contains("character device"),
        "{err}"
    );
    assert!(
        env.store_entries("snapshots").is_empty(),
        "refused snapshots store nothing"
    );
}

#[test]
fn symlinks_leaving_the_tree_are_refused() {
    let env = Env::new();
    for (i, target) in ["/etc/passwd", "../../outside", "x/../../y"]
        .iter()
        .enumerate()
    {
        let t = env.path(&format!("t{i}"));
        fs::create_dir_all(t.join("sub")).unwrap();
        symlink(target, t.join("sub/bad")).unwrap();
        let err = env.fails(&["snapshot", s(&t)]);
        assert!(
            err.contains(s(&t.join("sub/bad"))) && err.contains("leaves the tree"),
            "{target}: {err}"
        );
    }
    // one level up from sub/ stays inside: allowed
    let ok = env.path("ok");
    fs::create_dir_all(ok.join("sub")).unwrap();
    symlink("../sub", ok.join("sub/fine")).unwrap();
    env.ok(&["snapshot", s(&ok)]);
}

#[test]
fn digest_is_stable_across_runs_and_has_the_documented_form() {
    let env = Env::new();
    let t = env.path("t");
    make_tree(&t);
    let d1 = digest_of(&env, &t);
    let d2 = digest_of(&env, &t);
    assert_eq!(d1, d2);
    assert!(d1.starts_with("sha256:") && d1.len() == 71, "{d1}");
    // the library agrees with the CLI
    let lib =
        cloister_inputs::snapshot_digest(&t, &cloister_inputs::SnapshotOptions::default()).unwrap();
    assert_eq!(lib.to_string(), d1);
}
