//! The vendoring cookbook pages (cookbook/vendoring-*.md), each as a real
//! offline build inside the sandbox from a read-only snapshot: cargo (repo A),
//! npm and pnpm, Go and pip. The "vendor" step that needs a registry ran in
//! CI setup (.ci/setup.d/20-inputs.sh, $CLOISTER_TEST_VENDOR_CACHE); the
//! sandbox has no network at all, so a build that tried to fetch would fail.

use crate::util::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where CI setup left the downloaded caches.
fn vendor_cache(name: &str) -> PathBuf {
    let root = std::env::var("CLOISTER_TEST_VENDOR_CACHE")
        .unwrap_or_else(|_| "/var/cache/cloister-tests/vendor".into());
    let p = Path::new(&root).join(name);
    assert!(
        p.is_dir(),
        "{} missing: run .ci/setup.d/20-inputs.sh (CI does)",
        p.display()
    );
    p
}

/// A writable copy of a fixture without the given entries.
/// Snapshots the vendored cache `name` into the env's store; its digest.
fn vendor_snapshot(env: &Env, name: &str) -> String {
    env.ok(&["snapshot", s(&vendor_cache(name))])
        .trim()
        .to_owned()
}

/// The build failed and its stderr names `what` (the missing dependency).
#[track_caller]
fn assert_failed_naming(out: &Output, what: &str) {
    assert!(!out.status.success(), "{}", text(out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(what),
        "{}",
        text(out)
    );
}

fn checkout(env: &Env, fixture: &str, drop: &[&str]) -> PathBuf {
    let dst = env.path(fixture);
    let st = Command::new("cp")
        .arg("-a")
        .arg(cloister_tests::fixture(fixture))
        .arg(&dst)
        .status()
        .unwrap();
    assert!(st.success());
    for d in drop {
        let p = dst.join(d);
        if p.is_dir() {
            fs::remove_dir_all(&p).unwrap();
        } else {
            let _ = fs::remove_file(&p);
        }
    }
    dst
}

/// `cloister-runner run` with the checkout at /src (writable) and snapshots.
fn sandboxed(
    env: &Env,
    src: &Path,
    snapshots: &[(&str, &str)],
    extra: &[&str],
    script: &str,
) -> Output {
    let mut args: Vec<String> = vec![
        "run".into(),
        "--bind".into(),
        format!("{}:/src", s(src)),
        "--workdir".into(),
        "/src".into(),
    ];
    for (d, dest) in snapshots {
        args.push("--snapshot".into());
        args.push(format!("{d}:{dest}"));
    }
    args.extend(extra.iter().map(|e| e.to_string()));
    args.extend(["--".into(), "/bin/sh".into(), "-c".into(), script.into()]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    env.run(&a)
}

fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The Rust toolchain this test suite was built with, mounted read-only.
fn rust_toolchain() -> Vec<String> {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .expect("rustc");
    let sysroot = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    vec![
        "--ro-bind".into(),
        format!("{sysroot}:/opt/rust"),
        "--env".into(),
        "PATH=/opt/rust/bin:/usr/bin:/bin".into(),
        "--env".into(),
        "CARGO_HOME=/tmp/cargo-home".into(),
    ]
}

const CARGO_BUILD: &str =
    "cargo build --release --frozen --config 'source.vendored-sources.directory=\"/deps/vendor\"'";

#[test]
fn cargo_vendor_builds_offline_in_the_sandbox() {
    let env = Env::new();
    let digest = env
        .ok(&["snapshot", s(&cloister_tests::fixture("repo-a/vendor"))])
        .trim()
        .to_owned();
    let src = checkout(&env, "repo-a", &["vendor", "target"]);
    let tc = rust_toolchain();
    let extra: Vec<&str> = tc.iter().map(String::as_str).collect();
    let out = sandboxed(
        &env,
        &src,
        &[(&digest, "/deps/vendor")],
        &extra,
        &format!("{CARGO_BUILD} && ./target/release/repo-a a b a"),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 a\n1 b\n");
    assert!(src.join("target/release/repo-a").is_file());
}

#[test]
fn cargo_build_fails_when_the_snapshot_lacks_a_dependency() {
    let env = Env::new();
    // a vendor snapshot with fnv but not itoa: nothing may be fetched instead
    let partial = env.path("partial");
    fs::create_dir(&partial).unwrap();
    let st = Command::new("cp")
        .arg("-a")
        .arg(cloister_tests::fixture("repo-a/vendor/fnv"))
        .arg(&partial)
        .status()
        .unwrap();
    assert!(st.success());
    let digest = env.ok(&["snapshot", s(&partial)]).trim().to_owned();
    let src = checkout(&env, "repo-a", &["vendor", "target"]);
    let tc = rust_toolchain();
    let extra: Vec<&str> = tc.iter().map(String::as_str).collect();
    let out = sandboxed(
        &env,
        &src,
        &[(&digest, "/deps/vendor")],
        &extra,
        CARGO_BUILD,
    );
    assert_failed_naming(&out, "itoa");
}

#[test]
fn npm_ci_offline_from_a_snapshot_of_the_cache() {
    let env = Env::new();
    let digest = vendor_snapshot(&env, "npm-cache");
    let src = checkout(&env, "npm-app", &["pnpm-lock.yaml", "node_modules", "dist"]);
    let out = sandboxed(
        &env,
        &src,
        &[(&digest, "/deps/npm-cache")],
        &[],
        "npm ci --offline --no-audit --no-fund --cache /deps/npm-cache --logs-dir /tmp/npm-logs && npm run --silent build",
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        fs::read_to_string(src.join("dist/out.txt")).unwrap(),
        "42 true\n\"42\" true\n\"x\" false\n"
    );
    assert!(src.join("node_modules/is-number/package.json").is_file());
}

#[test]
fn pnpm_install_offline_from_a_snapshot_of_the_store() {
    let env = Env::new();
    let digest = vendor_snapshot(&env, "pnpm-store");
    let src = checkout(
        &env,
        "npm-app",
        &["package-lock.json", "node_modules", "dist"],
    );
    let out = sandboxed(
        &env,
        &src,
        &[(&digest, "/deps/pnpm-store")],
        &[],
        "pnpm install --offline --frozen-lockfile --store-dir /deps/pnpm-store && pnpm run --silent build",
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        fs::read_to_string(src.join("dist/out.txt")).unwrap(),
        "42 true\n\"42\" true\n\"x\" false\n"
    );
}

#[test]
fn go_mod_vendor_builds_offline_in_the_sandbox() {
    let env = Env::new();
    let digest = env
        .ok(&["snapshot", s(&cloister_tests::fixture("go-app/vendor"))])
        .trim()
        .to_owned();
    let src = checkout(&env, "go-app", &["vendor"]);
    // the mount point: Go wants vendor/ at the module root. The checkout is
    // mounted read-only so that the snapshot can be mounted inside it (the
    // sandbox mounts read-only binds before writable ones); the binary goes
    // to a separate writable /out.
    fs::create_dir(src.join("vendor")).unwrap();
    let out_dir = env.path("out");
    fs::create_dir(&out_dir).unwrap();
    let go = |snapshots: &[(&str, &str)]| {
        let mut args: Vec<String> = vec![
            "run".into(),
            "--ro-bind".into(),
            format!("{}:/src", s(&src)),
        ];
        for (d, dest) in snapshots {
            args.extend(["--snapshot".into(), format!("{d}:{dest}")]);
        }
        args.extend(
            [
                "--bind",
                &format!("{}:/out", s(&out_dir)),
                "--workdir",
                "/src",
                "--env",
                "GOFLAGS=-mod=vendor",
                "--env",
                "GOPROXY=off",
                "--env",
                "GOCACHE=/tmp/go-cache",
                "--",
                "/bin/sh",
                "-c",
                "go build -o /out/app . && /out/app",
            ]
            .map(String::from),
        );
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        env.run(&a)
    };
    let out = go(&[(&digest, "/src/vendor")]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello, vendored world\n"
    );
    assert!(out_dir.join("app").is_file());
    // without the snapshot (an empty vendor/) the same build cannot resolve the module
    fs::remove_file(out_dir.join("app")).unwrap();
    let out = go(&[]);
    assert_failed_naming(&out, "example.com/greet");
}

#[test]
fn pip_install_offline_with_required_hashes() {
    let env = Env::new();
    let digest = vendor_snapshot(&env, "wheelhouse");
    let src = checkout(&env, "pip-app", &["build"]);
    let install = "/usr/bin/python3 -m pip install --quiet --disable-pip-version-check --no-index \
                   --find-links /deps/wheelhouse --require-hashes -r requirements.txt --target /src/build/site";
    let out = sandboxed(
        &env,
        &src,
        &[(&digest, "/deps/wheelhouse")],
        &[],
        &format!("{install} && PYTHONPATH=/src/build/site /usr/bin/python3 app.py"),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "six 1.16.0 py3\n");
    // a requirement whose hash does not match the wheel is refused
    fs::write(
        src.join("requirements.txt"),
        format!("six==1.16.0 --hash=sha256:{}\n", "0".repeat(64)),
    )
    .unwrap();
    let out = sandboxed(&env, &src, &[(&digest, "/deps/wheelhouse")], &[], install);
    assert_failed_naming(&out, "HASHES");
}
