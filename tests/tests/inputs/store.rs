//! The content-addressed store through the CLI: materialized read-only trees,
//! the warm path and its invalidation, gc policies, export/import round trips,
//! crash safety (kill -9 mid-snapshot and mid-import) and progress output.

use crate::util::*;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn snapshot_is_stored_once_as_a_read_only_tree() {
    let env = Env::new();
    let t = env.path("t");
    make_tree(&t);
    let j = env.json(&["snapshot", s(&t)]);
    let digest = j["digest"].as_str().unwrap().to_owned();
    let tree = PathBuf::from(j["tree"].as_str().unwrap());
    assert_eq!(
        tree,
        env.store()
            .join("snapshots")
            .join(&digest[7..])
            .join("tree")
    );
    assert_eq!(fs::read(tree.join("README")).unwrap(), b"hello\n");
    assert_eq!(
        fs::read_link(tree.join("a/up-link")).unwrap(),
        Path::new("../README")
    );
    // read-only modes, normalized mtime
    for (rel, mode) in [
        ("README", 0o444),
        ("a/b/run.sh", 0o555),
        ("a/data.bin", 0o444),
        ("a", 0o555),
        ("", 0o555),
    ] {
        let md = fs::metadata(tree.join(rel)).unwrap();
        assert_eq!(md.permissions().mode() & 0o7777, mode, "{rel}");
        assert_eq!(md.mtime(), 0, "{rel}");
    }
    // the stored tree snapshots to its own digest
    assert_eq!(env.ok(&["snapshot", "--no-store", s(&tree)]).trim(), digest);
    // a second source with the same content shares the entry
    let copy = env.path("copy");
    assert!(
        Command::new("cp")
            .args(["-a", s(&t), s(&copy)])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(env.ok(&["snapshot", s(&copy)]).trim(), digest);
    assert_eq!(env.store_entries("snapshots"), vec![digest[7..].to_owned()]);
    assert!(
        env.store_entries("tmp").is_empty(),
        "no staging left: {:?}",
        env.store_entries("tmp")
    );
}

#[test]
fn warm_path_reuses_the_digest_and_any_change_invalidates_it() {
    let env = Env::new();
    let t = env.path("t");
    make_tree(&t);
    settle();
    let cold = env.json(&["snapshot", s(&t)]);
    assert_eq!(cold["cached"], false);
    let warm = env.json(&["snapshot", s(&t)]);
    assert_eq!(
        warm["cached"], true,
        "unchanged tree must hit the stat cache"
    );
    assert_eq!(warm["digest"], cold["digest"]);

    // Change one byte, keep the size, put the old mtime back: only ctime moves.
    let f = t.join("a/data.bin");
    let before = fs::metadata(&f).unwrap();
    let mut data = fs::read(&f).unwrap();
    data[1000] ^= 0xff;
    fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .write_all(&data)
        .unwrap();
    fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_times(
            fs::FileTimes::new()
                .set_modified(before.modified().unwrap())
                .set_accessed(before.accessed().unwrap()),
        )
        .unwrap();
    let after = fs::metadata(&f).unwrap();
    assert_eq!(
        (after.len(), after.mtime(), after.mtime_nsec()),
        (before.len(), before.mtime(), before.mtime_nsec())
    );
    let changed = env.json(&["snapshot", s(&t)]);
    assert_eq!(
        changed["cached"], false,
        "a ctime change must invalidate the cache"
    );
    assert_ne!(changed["digest"], cold["digest"]);
    assert_eq!(changed["digest"].as_str().unwrap(), sha256(&gnu_tar(&t, 0)));

    // Other changes miss too: a new empty file, a chmod, a rename.
    settle();
    assert_eq!(env.json(&["snapshot", s(&t)])["cached"], true);
    fs::write(t.join("new-empty"), b"").unwrap();
    assert_eq!(env.json(&["snapshot", s(&t)])["cached"], false);
    settle();
    assert_eq!(env.json(&["snapshot", s(&t)])["cached"], true);
    fs::set_permissions(t.join("README"), fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(env.json(&["snapshot", s(&t)])["cached"], false);

    // A collected entry is not trusted either: the tree is snapshotted again.
    settle();
    let d = env.json(&["snapshot", s(&t)]);
    assert_eq!(d["cached"], true);
    let gc = env.json(&["store", "gc", "--max-bytes", "0"]);
    assert!(
        gc["removed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["digest"] == d["digest"])
    );
    let again = env.json(&["snapshot", s(&t)]);
    assert_eq!(again["cached"], false);
    assert_eq!(again["digest"], d["digest"]);
}

/// A warm-path record written by an older format version (version 1 could
/// hold a wrong digest for trees with long names) is never reused.
#[test]
fn warm_records_of_an_older_version_are_ignored() {
    let env = Env::new();
    let t = env.path("t");
    make_tree(&t);
    settle();
    let cold = env.json(&["snapshot", s(&t)]);
    assert_eq!(env.json(&["snapshot", s(&t)])["cached"], true);
    let records = env.store_entries("statcache");
    assert_eq!(records.len(), 1, "{records:?}");
    let file = env.store().join("statcache").join(&records[0]);
    let mut rec: serde_json::Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
    assert_eq!(rec["version"], 2);
    rec["version"] = 1.into();
    rec["digest"] = format!("sha256:{}", "0".repeat(64)).into();
    fs::write(&file, serde_json::to_vec(&rec).unwrap()).unwrap();
    let again = env.json(&["snapshot", s(&t)]);
    assert_eq!(
        again["cached"], false,
        "a version-1 record must not be used"
    );
    assert_eq!(again["digest"], cold["digest"]);
}

#[test]
fn export_and_import_round_trip_between_stores() {
    let env = Env::new();
    let t = env.path("t");
    make_tree(&t);
    let out = env.path("snap.tar.gz");
    let j = env.json(&["snapshot", "--out", s(&out), s(&t)]);
    let digest = j["digest"].as_str().unwrap().to_owned();
    assert!(j["outBytes"].as_u64().unwrap() > 0);

    let other = env.path("other-store");
    let imp = env.json(&[
        "snapshot",
        "import",
        s(&out),
        "--store",
        s(&other),
        "--digest",
        &digest,
    ]);
    assert_eq!(imp["digest"].as_str().unwrap(), digest);
    let tree = PathBuf::from(imp["tree"].as_str().unwrap());
    assert!(tree.starts_with(&other));
    assert_eq!(
        fs::read(tree.join("a/b/run.sh")).unwrap(),
        fs::read(t.join("a/b/run.sh")).unwrap()
    );
    assert_eq!(
        fs::metadata(tree.join("a/b/run.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o555
    );

    // export from the importing store gives a file that imports to the same digest
    let out2 = env.path("again.tar.gz");
    env.ok(&[
        "snapshot",
        "export",
        &digest,
        "--out",
        s(&out2),
        "--store",
        s(&other),
    ]);
    let third = env.path("third-store");
    assert_eq!(
        env.ok(&["snapshot", "import", s(&out2), "--store", s(&third)])
            .trim(),
        digest
    );

    // export regenerates the .tar.gz when the store never had one
    let fourth = env.path("fourth-store");
    env.ok(&["snapshot", "--store", s(&fourth), s(&t)]);
    let out3 = env.path("regen.tar.gz");
    env.ok(&[
        "snapshot",
        "export",
        &digest,
        "--out",
        s(&out3),
        "--store",
        s(&fourth),
    ]);
    let gz = Command::new("gzip")
        .args(["-dc", s(&out3)])
        .output()
        .unwrap();
    assert_eq!(sha256(&gz.stdout), digest);

    // wrong expected digest: refused, nothing stored
    let fifth = env.path("fifth-store");
    let wrong = format!("sha256:{}", "0".repeat(64));
    let err = env.fails(&[
        "snapshot",
        "import",
        s(&out),
        "--store",
        s(&fifth),
        "--digest",
        &wrong,
    ]);
    assert!(err.contains("digest mismatch"), "{err}");
    assert!(listing(&fifth.join("snapshots")).is_empty() && listing(&fifth.join("tmp")).is_empty());
    // unknown digest
    let err = env.fails(&[
        "snapshot",
        "export",
        &wrong,
        "--out",
        s(&env.path("x.tar.gz")),
    ]);
    assert!(err.contains("not in the store"), "{err}");
}

#[test]
fn gc_by_age_and_size_with_dry_run_and_json() {
    let env = Env::new();
    let mut digests = Vec::new();
    for i in 0..3 {
        let t = env.path(&format!("t{i}"));
        fs::create_dir(&t).unwrap();
        write(&t, "data", &vec![b'a' + i as u8; 1000 * (i + 1)], 0o644);
        digests.push(env.ok(&["snapshot", s(&t)]).trim().to_owned());
    }
    // make t0 old, t1 recent-ish, t2 newest (last use = lock file mtime)
    let age = |d: &str, secs: u64| {
        let lock = env.store().join("snapshots").join(&d[7..]).join("lock");
        let when = std::time::SystemTime::now() - Duration::from_secs(secs);
        fs::File::options()
            .append(true)
            .open(lock)
            .unwrap()
            .set_modified(when)
            .unwrap();
    };
    age(&digests[0], 40 * 86400);
    age(&digests[1], 3600);

    let err = env.fails(&["store", "gc"]);
    assert!(
        err.contains("--max-bytes") && err.contains("--max-age"),
        "{err}"
    );
    assert!(
        env.fails(&["store", "gc", "--max-age", "soon"])
            .contains("not an age")
    );

    let dry = env.json(&["store", "gc", "--max-age", "30d", "--dry-run"]);
    assert_eq!(dry["dryRun"], true);
    assert_eq!(dry["removed"][0]["digest"].as_str().unwrap(), digests[0]);
    assert_eq!(dry["freedBytes"], 1000);
    assert_eq!(
        env.store_entries("snapshots").len(),
        3,
        "dry run removes nothing"
    );

    let real = env.json(&["store", "gc", "--max-age", "30d"]);
    assert_eq!(real["removed"].as_array().unwrap().len(), 1);
    assert_eq!(env.store_entries("snapshots").len(), 2);
    assert!(
        env.fails(&[
            "snapshot",
            "export",
            &digests[0],
            "--out",
            s(&env.path("o"))
        ])
        .contains("not in the store")
    );

    // size: keep at most 3500 bytes → the least recently used (t1, 2000) goes, t2 (3000) stays
    let sized = env.json(&["store", "gc", "--max-bytes", "3500"]);
    let removed: Vec<&str> = sized["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["digest"].as_str().unwrap())
        .collect();
    assert_eq!(removed, vec![digests[1].as_str()]);
    assert_eq!(sized["keptBytes"], 3000);
    let list = env.json(&["store", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["digest"].as_str().unwrap(), digests[2]);
    assert!(
        env.ok(&["store", "gc", "--max-bytes", "1K"])
            .contains("removed 1 entries")
    );
}

#[test]
fn gc_skips_entries_pinned_by_a_running_build() {
    let env = Env::new();
    let t = env.path("t");
    fs::create_dir(&t).unwrap();
    write(&t, "f", b"pinned", 0o644);
    let d: cloister_inputs::Digest = env.ok(&["snapshot", s(&t)]).trim().parse().unwrap();
    let store = cloister_inputs::Store::open(&env.store()).unwrap();
    let pin = store.pin(cloister_inputs::EntryKind::Snapshot, &d).unwrap();
    let gc = env.json(&["store", "gc", "--max-bytes", "0"]);
    assert_eq!(gc["busy"].as_array().unwrap().len(), 1);
    assert!(pin.path().join("f").is_file());
    drop(pin);
    let gc = env.json(&["store", "gc", "--max-bytes", "0"]);
    assert_eq!(gc["removed"].as_array().unwrap().len(), 1);
    assert!(store.tree(&d).is_err());
}

/// Polls until `cond` holds (a crash test's "the process is mid-way" probe).
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn kill_9_mid_snapshot_leaves_nothing_that_looks_complete() {
    let env = Env::new();
    let t = env.path("t");
    fs::create_dir(&t).unwrap();
    write(&t, "a-small", b"first\n", 0o644);
    // A 256 MiB sparse file: slow enough to be caught mid-copy, cheap to
    // make (the store's free-space check wants its size free on the disk).
    let big = fs::File::create(t.join("big")).unwrap();
    big.set_len(256 << 20).unwrap();
    drop(big);
    let mut child = env
        .cmd(&["snapshot", s(&t)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let tmp = env.store().join("tmp");
    wait_for("the staging copy of the big file", || {
        fs::read_dir(&tmp)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| fs::metadata(e.path().join("tree/big")).is_ok_and(|m| m.len() > 0))
    });
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert!(
        env.store_entries("snapshots").is_empty(),
        "a killed snapshot must not appear in snapshots/"
    );
    assert_eq!(env.json(&["store", "list"]), serde_json::json!([]));
    assert_eq!(
        env.store_entries("tmp").len(),
        1,
        "the staging dir is what is left"
    );
    // gc removes staging of dead processes; a new snapshot then succeeds
    let gc = env.json(&["store", "gc", "--max-age", "3650d"]);
    assert_eq!(gc["staleStaging"], 1);
    assert!(env.store_entries("tmp").is_empty());
    fs::remove_file(t.join("big")).unwrap();
    env.ok(&["snapshot", s(&t)]);
    assert_eq!(env.store_entries("snapshots").len(), 1);
}

/// In a private mount namespace with a 4 MiB tmpfs as the store, runs
/// `cloister-runner ARGS BIG` and then `cloister-runner ARGS FITS`, listing
/// the store's `tmp/` and `snapshots/` between the two. Checks the first
/// failed (exit 1) leaving both empty and the second succeeded; returns
/// (stdout, stderr).
fn first_does_not_fit_second_does(
    env: &Env,
    args: &str,
    big: &Path,
    fits: &Path,
) -> (String, String) {
    fs::create_dir(env.store()).unwrap();
    let script = r#"set -u
mount -t tmpfs -o size=4m cloister-test "$STORE" || exit 99
"$RUNNER" $ARGS "$BIG"; echo "big-rc=$?"
echo "tmp=[$(ls -A "$STORE/tmp")] snapshots=[$(ls -A "$STORE/snapshots")]"
"$RUNNER" $ARGS "$FITS"; echo "fits-rc=$?"
"#;
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env("STORE", env.store())
        .env("RUNNER", cloister_tests::bin("cloister-runner"))
        .env("ARGS", args)
        .env("BIG", big)
        .env("FITS", fits)
        .env("CLOISTER_STORE", env.store())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("big-rc=1\n"), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("tmp=[] snapshots=[]"),
        "nothing left behind: {stdout}"
    );
    assert!(stdout.contains("fits-rc=0\n"), "{stdout}\n{stderr}");
    (stdout, stderr)
}

/// A store on a 4 MiB tmpfs (in a private mount namespace): a tree that
/// cannot fit is refused before anything is copied, with an error that says
/// how much it needs and how much is free, and leaves no staging; a tree
/// that fits is stored.
#[test]
fn a_snapshot_that_cannot_fit_is_refused_up_front() {
    let env = Env::new();
    let big = env.path("big");
    fs::create_dir(&big).unwrap();
    write(&big, "small", b"small\n", 0o644);
    fs::File::create(big.join("sparse"))
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let fits = env.path("fits");
    make_tree(&fits);
    let (_, stderr) = first_does_not_fit_second_does(&env, "snapshot", &big, &fits);
    assert!(
        stderr.contains("not enough free space for this snapshot (3 entries): it needs 64.0 MiB"),
        "{stderr}"
    );
    assert!(stderr.contains("MiB free"), "{stderr}");
}

/// An import whose content does not fit (its size is only known while
/// streaming) fails naming the cause, removes its staging and leaves the
/// store usable: an archive that fits is imported right after.
#[test]
fn an_import_that_runs_out_of_space_fails_clearly_and_leaves_nothing() {
    let env = Env::new();
    let big = env.path("big");
    fs::create_dir(&big).unwrap();
    for i in 0..3 {
        write(&big, &format!("f{i}"), &vec![b'x'; 3 << 20], 0o644);
    }
    let big_tar = env.path("big.tar");
    fs::write(&big_tar, gzip(&gnu_tar(&big, 0))).unwrap();
    let small = env.path("small");
    make_tree(&small);
    let small_tar = env.path("small.tar");
    let small_bytes = gnu_tar(&small, 0);
    fs::write(&small_tar, &small_bytes).unwrap();
    let (stdout, stderr) =
        first_does_not_fit_second_does(&env, "snapshot import", &big_tar, &small_tar);
    // Said once: the cause is not repeated after the message holding it.
    assert_eq!(
        stderr.matches("No space left on device").count(),
        1,
        "{stderr}"
    );
    assert!(stdout.contains(&sha256(&small_bytes)), "{stdout}");
}

#[test]
fn kill_9_mid_import_leaves_nothing_that_looks_complete() {
    let env = Env::new();
    let t = env.path("t");
    fs::create_dir(&t).unwrap();
    for i in 0..50 {
        write(&t, &format!("f{i:02}"), &vec![b'x'; 100_000], 0o644);
    }
    let tar = gnu_tar(&t, 0);
    let mut child = env
        .cmd(&["snapshot", "import", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // feed half the archive, then wait until the importer has written files
    stdin.write_all(&tar[..tar.len() / 2]).unwrap();
    stdin.flush().unwrap();
    let tmp = env.store().join("tmp");
    wait_for("import staging with files", || {
        fs::read_dir(&tmp)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.path().join("tree/f10").exists())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    assert!(env.store_entries("snapshots").is_empty());
    assert_eq!(env.json(&["store", "list"]), serde_json::json!([]));
    // and a complete import through stdin works
    let mut child = env
        .cmd(&["snapshot", "import", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&gzip(&tar)).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), sha256(&tar));
}

#[test]
fn progress_is_drawn_on_a_tty_and_quiet_otherwise() {
    let env = Env::new();
    let t = env.path("t");
    make_tree(&t);
    // not a TTY: stderr stays empty
    let out = env.run(&["snapshot", s(&t)]);
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "no progress off a TTY: {:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    // a TTY (util-linux `script` gives the command a pseudo-terminal)
    let runner = cloister_tests::bin("cloister-runner");
    let other = env.path("tty-store");
    let cmd = format!(
        "{} snapshot --store {} {}",
        runner.display(),
        s(&other),
        s(&t)
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("script (util-linux) is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        screen.contains("snapshot: 8/8 files"),
        "progress with file counts on the TTY: {screen:?}"
    );
}

/// The `--json` objects are a wire format (the runner daemon reads them):
/// their keys are fixed here.
#[test]
fn json_output_shapes_are_stable() {
    let env = Env::new();
    let t = env.path("t");
    fs::create_dir(&t).unwrap();
    write(&t, "f", b"x", 0o644);
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
        k.sort();
        k.join(",")
    };
    let out = env.path("t.tar.gz");
    assert_eq!(
        keys(&env.json(&["snapshot", s(&t)])),
        "bytes,cached,digest,files,tree"
    );
    assert_eq!(
        keys(&env.json(&["snapshot", "--out", s(&out), s(&t)])),
        "bytes,cached,digest,files,out,outBytes,tree"
    );
    assert_eq!(
        keys(&env.json(&["snapshot", "--no-store", s(&t)])),
        "bytes,cached,digest,files"
    );
    let other = env.path("other");
    assert_eq!(
        keys(&env.json(&["snapshot", "import", s(&out), "--store", s(&other)])),
        "bytes,cached,digest,files,tree"
    );
    let d = env.json(&["snapshot", s(&t)])["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        keys(&env.json(&["snapshot", "export", &d, "--out", s(&env.path("e.tar.gz"))])),
        "digest,out,outBytes"
    );
    let list = env.json(&["store", "list"]);
    assert_eq!(keys(&list[0]), "bytes,digest,kind,lastUsed,path");
    assert_eq!(
        keys(&env.json(&["store", "gc", "--max-age", "1d"])),
        "busy,dryRun,freedBytes,kept,keptBytes,removed,staleStaging"
    );
}

/// The materialized tree is written from the tar stream's chunks by a
/// separate thread: files larger than a chunk, and many small files whose
/// bytes straddle chunk boundaries, must come out byte for byte, in the
/// right directories.
#[test]
fn materialized_tree_equals_the_source_across_chunk_boundaries() {
    let env = Env::new();
    let t = env.path("t");
    fs::create_dir(&t).unwrap();
    // 3.5 MiB with a position-dependent pattern (a misplaced piece shows)
    let big: Vec<u8> = (0..(7u32 << 19))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    write(&t, "big.bin", &big, 0o644);
    for d in 0..12 {
        fs::create_dir_all(t.join(format!("d{d:02}/sub"))).unwrap();
        for f in 0..25 {
            let len = (d * 25 + f) * 1031 % 97_000;
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + d * 13 + f) as u8).collect();
            write(&t, &format!("d{d:02}/sub/f{f:02}"), &data, 0o644);
            write(&t, &format!("d{d:02}/g{f:02}"), &data[..len / 3], 0o755);
        }
    }
    let j = env.json(&["snapshot", s(&t)]);
    let tree = PathBuf::from(j["tree"].as_str().unwrap());
    assert_eq!(listing(&tree), listing(&t));
    for rel in listing(&t) {
        let (src, dst) = (t.join(&rel), tree.join(&rel));
        let md = fs::symlink_metadata(&src).unwrap();
        if md.is_file() {
            assert_eq!(fs::read(&dst).unwrap(), fs::read(&src).unwrap(), "{rel}");
            let want = if md.mode() & 0o100 != 0 { 0o555 } else { 0o444 };
            let got = fs::metadata(&dst).unwrap().mode() & 0o7777;
            assert_eq!(got, want, "{rel}");
        }
    }
    assert_eq!(
        env.ok(&["snapshot", "--no-store", s(&tree)]).trim(),
        j["digest"].as_str().unwrap()
    );
}

/// Store files are created read-only; a restrictive umask must not make them
/// unreadable to the build user (0444/0555 files, 0555 directories whatever
/// the umask).
#[test]
fn materialized_modes_do_not_depend_on_the_umask() {
    let env = Env::new();
    let t = env.path("t");
    make_tree(&t);
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 0777 && exec \"$0\" snapshot --json \"$1\"")
        .arg(cloister_tests::bin("cloister-runner"))
        .arg(&t)
        .env("CLOISTER_STORE", env.store())
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tree = PathBuf::from(j["tree"].as_str().unwrap());
    for (rel, mode) in [
        ("README", 0o444),
        ("a/b/run.sh", 0o555),
        ("a/data.bin", 0o444),
        ("a", 0o555),
        ("nested/empty/deeper", 0o555),
        ("", 0o555),
    ] {
        let md = fs::metadata(tree.join(rel)).unwrap();
        assert_eq!(md.permissions().mode() & 0o7777, mode, "{rel}");
        assert_eq!(md.mtime(), 0, "{rel}");
    }
    assert_eq!(
        env.ok(&["snapshot", "--no-store", s(&tree)]).trim(),
        j["digest"].as_str().unwrap()
    );
}

/// The `.tar.gz` a cold snapshot writes into the store and to `--out`, at
/// the default level and at level 6 (the size-for-size comparison with
/// `gzip -6`), is standard gzip that `gzip -t` accepts and GNU tar lists
/// entry for entry, and it decompresses to exactly the bytes the digest
/// names. The tree (~35 MiB) spans more 1 MiB chunks than the pipeline
/// keeps buffers in flight, so recycled chunk buffers are exercised: a stale byte from an
/// earlier chunk would change the digest.
#[test]
fn store_tar_gz_is_standard_gzip_and_holds_the_digested_tar() {
    let env = Env::new();
    let t = env.path("t");
    fs::create_dir(&t).unwrap();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut entries = 1; // "./"
    for d in 0..4 {
        let dir = format!("d{d}");
        fs::create_dir(t.join(&dir)).unwrap();
        entries += 1;
        for f in 0..10 {
            // compressible but position-dependent text, 0.25–1.5 MiB
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (256 << 10) + (seed % (5 << 18)) as usize;
            let mut data = Vec::with_capacity(len);
            let mut line = 0u64;
            while data.len() < len {
                data.extend_from_slice(format!("{d}/{f} line {line} {}\n", line % 977).as_bytes());
                line += 1;
            }
            data.truncate(len);
            write(&t, &format!("{dir}/f{f:02}.txt"), &data, 0o644);
            entries += 1;
        }
    }
    let want = cloister_tests::gnu_tar_digest(&t);
    for (i, level) in [None, Some("6")].into_iter().enumerate() {
        let store = env.path(&format!("store-{i}"));
        let out = env.path(&format!("out-{i}.tar.gz"));
        let mut args = vec!["snapshot", "--store", s(&store), "--out", s(&out)];
        if let Some(l) = level {
            args.extend(["--level", l]);
        }
        args.push(s(&t));
        let j = env.json(&args);
        assert_eq!(j["digest"].as_str().unwrap(), want, "level {level:?}");
        let kept = store
            .join("snapshots")
            .join(want.strip_prefix("sha256:").unwrap())
            .join("snapshot.tar.gz");
        assert_eq!(fs::read(&kept).unwrap(), fs::read(&out).unwrap());
        let tested = Command::new("gzip").args(["-t", s(&out)]).output().unwrap();
        assert!(
            tested.status.success(),
            "gzip -t: {}",
            String::from_utf8_lossy(&tested.stderr)
        );
        let listed = Command::new("tar")
            .args(["-tzf", s(&out)])
            .output()
            .unwrap();
        assert!(
            listed.status.success(),
            "{}",
            String::from_utf8_lossy(&listed.stderr)
        );
        assert_eq!(
            listed.stdout.iter().filter(|b| **b == b'\n').count(),
            entries
        );
        let gz = Command::new("gzip")
            .args(["-dc", s(&out)])
            .output()
            .unwrap();
        assert!(gz.status.success());
        assert_eq!(sha256(&gz.stdout), want, "level {level:?}");
    }
}
