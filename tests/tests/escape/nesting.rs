//! Binds nested in binds: a read-only bind inside a writable one, a writable
//! bind inside a read-only one, and three levels alternating, each given in
//! every order on the command line. Mounts are made parents first whatever
//! the order given, and each bind's flags apply to that bind only, so every
//! layer ends up with its own flags: the probe finds each read-only layer
//! unwritable (EROFS), `ro` in mountinfo and neither remountable nor
//! detachable, and each writable layer writable; and a file written at each
//! layer lands in that layer's host directory and nowhere else. A
//! `--snapshot` tree inside a writable bind gets the same checks.

use crate::harness::*;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// One bind of a nesting: writable or not, and where it goes inside.
#[derive(Clone, Copy)]
struct Layer {
    writable: bool,
    dest: &'static str,
}

const RW: bool = true;
const RO: bool = false;

/// Every order of `items` (Heap's algorithm; a handful of items at most).
fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    fn go<T: Clone>(k: usize, a: &mut Vec<T>, out: &mut Vec<Vec<T>>) {
        if k <= 1 {
            out.push(a.clone());
            return;
        }
        for i in 0..k {
            go(k - 1, a, out);
            let j = if k % 2 == 0 { i } else { 0 };
            a.swap(j, k - 1);
        }
    }
    let mut a = items.to_vec();
    let mut out = Vec::new();
    go(a.len(), &mut a, &mut out);
    out
}

fn run_in(mode: Mode, deleg: &Delegation, binds: &[String], cmd: &[&str]) -> std::process::Output {
    let mut args: Vec<&str> = vec!["--cgroup-parent", &deleg.parent_arg];
    args.extend(binds.iter().map(String::as_str));
    args.push("--");
    args.extend_from_slice(cmd);
    let mut c = runner(mode);
    c.args(run_args(&args));
    output_within(c, Duration::from_secs(60))
}

fn nesting(mode: Mode, layers: &[Layer]) {
    let deleg = Delegation::new(mode);
    // Every layer's host directory is writable by the test user, so a
    // refused write inside can only come from the mount (EROFS).
    let dirs: Vec<tempfile::TempDir> = layers.iter().map(|_| shared_dir(true)).collect();
    // The mount point of each layer exists in the layer it lies in (mount
    // points are never created inside a bind).
    for l in layers {
        let parent = layers
            .iter()
            .enumerate()
            .filter(|(_, p)| p.dest != l.dest && Path::new(l.dest).starts_with(p.dest))
            .max_by_key(|(_, p)| p.dest.len());
        if let Some((j, p)) = parent {
            let rel = Path::new(l.dest).strip_prefix(p.dest).unwrap();
            std::fs::create_dir_all(dirs[j].path().join(rel)).unwrap();
        }
    }
    let indices: Vec<usize> = (0..layers.len()).collect();
    for order in permutations(&indices) {
        let binds: Vec<String> = order
            .iter()
            .flat_map(|&i| {
                let flag = if layers[i].writable {
                    "--bind"
                } else {
                    "--ro-bind"
                };
                [
                    flag.to_string(),
                    format!("{}:{}", dirs[i].path().display(), layers[i].dest),
                ]
            })
            .collect();
        let what = format!("{mode:?}, binds given as {binds:?}");

        // What the build sees.
        let mut probe = vec![PROBE, "mounts"];
        for l in layers {
            probe.push(if l.writable { "--rw" } else { "--ro" });
            probe.push(l.dest);
        }
        let out = run_in(mode, &deleg, &binds, &probe);
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("probe JSON");
        let checks = v["checks"].as_array().unwrap();
        assert_eq!(
            checks.len(),
            layers
                .iter()
                .map(|l| if l.writable { 2 } else { 4 })
                .sum::<usize>(),
            "{what}: {v}"
        );
        let failed: Vec<&Value> = checks.iter().filter(|c| c["ok"] != true).collect();
        assert!(failed.is_empty(), "{what}: {failed:#?}");

        // Where writes land on the host.
        let script: String = layers
            .iter()
            .enumerate()
            .map(|(i, l)| format!("echo {i} > {}/written-{i} 2>/dev/null; ", l.dest))
            .collect();
        let out = run_in(
            mode,
            &deleg,
            &binds,
            &["/bin/sh", "-c", &format!("{script}true")],
        );
        assert!(out.status.success(), "{what}: {out:?}");
        for (i, l) in layers.iter().enumerate() {
            for (j, d) in dirs.iter().enumerate() {
                let file = d.path().join(format!("written-{i}"));
                let expected = i == j && l.writable;
                assert_eq!(
                    file.exists(),
                    expected,
                    "{what}: a write to {} {} the host directory of layer {j}",
                    l.dest,
                    if expected { "did not reach" } else { "reached" }
                );
                if expected {
                    assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("{i}\n"));
                    std::fs::remove_file(&file).unwrap();
                }
            }
        }
    }
}

fn read_only_inside_writable(mode: Mode) {
    nesting(
        mode,
        &[
            Layer {
                writable: RW,
                dest: "/src",
            },
            Layer {
                writable: RO,
                dest: "/src/vendor",
            },
        ],
    );
}

both_modes!(
    read_only_bind_inside_a_writable_one,
    super::read_only_inside_writable
);

fn writable_inside_read_only(mode: Mode) {
    nesting(
        mode,
        &[
            Layer {
                writable: RO,
                dest: "/src",
            },
            Layer {
                writable: RW,
                dest: "/src/out",
            },
        ],
    );
}

both_modes!(
    writable_bind_inside_a_read_only_one,
    super::writable_inside_read_only
);

fn three_levels(mode: Mode) {
    nesting(
        mode,
        &[
            Layer {
                writable: RW,
                dest: "/w",
            },
            Layer {
                writable: RO,
                dest: "/w/ro",
            },
            Layer {
                writable: RW,
                dest: "/w/ro/rw",
            },
        ],
    );
}

both_modes!(three_nested_binds_in_every_order, super::three_levels);

/// The probe's read-only check is not vacuous: the same checks fail for a
/// read-only layer that the run makes writable.
fn probe_tells_writable_from_read_only(mode: Mode) {
    let deleg = Delegation::new(mode);
    let dir = shared_dir(true);
    let bind = vec![
        "--bind".to_string(),
        format!("{}:/src", dir.path().display()),
    ];
    let out = run_in(mode, &deleg, &bind, &[PROBE, "mounts", "--ro", "/src"]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_name = |n: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("no check {n}: {v}"))
    };
    assert_eq!(by_name("read-only /src")["ok"], false, "{v}");
    assert_eq!(by_name("mounted ro /src")["ok"], false, "{v}");
}

both_modes!(
    the_probe_sees_a_writable_bind_as_writable,
    super::probe_tells_writable_from_read_only
);

/// A `--snapshot` tree (a read-only bind of a store entry) inside a writable
/// bind, given in both orders: the snapshot stays read-only, the bind around
/// it writable.
fn snapshot_inside_writable(mode: Mode) {
    let deleg = Delegation::new(mode);
    let store = shared_dir(true);
    let src = shared_dir(true);
    std::fs::write(src.path().join("lib.txt"), "vendored\n").unwrap();
    let mut cmd = runner(mode);
    cmd.arg("snapshot")
        .arg("--store")
        .arg(store.path())
        .arg(src.path());
    let out = output_within(cmd, Duration::from_secs(60));
    assert!(out.status.success(), "snapshot: {out:?}");
    let digest = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(digest.starts_with("sha256:"), "{digest}");
    let rw = shared_dir(true);
    std::fs::create_dir(rw.path().join("vendor")).unwrap();
    let bind = [
        "--bind".to_string(),
        format!("{}:/src", rw.path().display()),
    ];
    let snap = ["--snapshot".to_string(), format!("{digest}:/src/vendor")];
    let store_arg = ["--store".to_string(), store.path().display().to_string()];
    for order in [[&bind, &snap], [&snap, &bind]] {
        let mut binds: Vec<String> = store_arg.to_vec();
        binds.extend(order.into_iter().flatten().cloned());
        let what = format!("{mode:?}, {binds:?}");
        let out = run_in(
            mode,
            &deleg,
            &binds,
            &[PROBE, "mounts", "--rw", "/src", "--ro", "/src/vendor"],
        );
        assert!(out.status.success(), "{what}: {out:?}");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let failed: Vec<&Value> = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["ok"] != true)
            .collect();
        assert!(failed.is_empty(), "{what}: {failed:#?}");
        let out = run_in(
            mode,
            &deleg,
            &binds,
            &[
                "/bin/sh",
                "-c",
                "cat /src/vendor/lib.txt && echo out > /src/built",
            ],
        );
        assert!(out.status.success(), "{what}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "vendored\n");
        assert_eq!(
            std::fs::read_to_string(rw.path().join("built")).unwrap(),
            "out\n"
        );
        std::fs::remove_file(rw.path().join("built")).unwrap();
    }
}

both_modes!(
    snapshot_inside_a_writable_bind_stays_read_only,
    super::snapshot_inside_writable
);
