//! `cloister-runner run` with store inputs: snapshots mounted read-only at
//! the requested path, builder images used as the root, both pinned against
//! gc while the run lasts, unknown digests refused before anything runs.

use crate::image::{base_layer, build_layout, upper_layer};
use crate::util::*;
use std::fs;

#[test]
fn snapshot_is_mounted_read_only_at_its_destination() {
    let env = Env::new();
    let t = env.path("t");
    make_tree(&t);
    let d = env.ok(&["snapshot", s(&t)]).trim().to_owned();
    let script = "cat /deps/tree/README && ls /deps/tree/a/b && readlink /deps/tree/link-to-readme && \
                  if touch /deps/tree/new 2>/dev/null; then echo WRITABLE; else echo read-only; fi && \
                  if rm /deps/tree/README 2>/dev/null; then echo REMOVED; else echo kept; fi";
    let out = env.run(&[
        "run",
        "--snapshot",
        &format!("{d}:/deps/tree"),
        "--",
        "/bin/sh",
        "-c",
        script,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, "hello\nrun.sh\nREADME\nread-only\nkept\n");
    // the source tree and the store are untouched
    assert!(!t.join("new").exists());
    let stored = env
        .store()
        .join("snapshots")
        .join(&d[7..])
        .join("tree/README");
    assert_eq!(fs::read(stored).unwrap(), b"hello\n");
}

#[test]
fn unknown_snapshots_and_images_are_refused_before_running() {
    let env = Env::new();
    let missing = format!("sha256:{}", "ab".repeat(32));
    let marker = env.path("ran");
    let cmd = format!("touch {}", s(&marker));
    let out = env.run(&[
        "run",
        "--snapshot",
        &format!("{missing}:/deps"),
        "--",
        "/bin/sh",
        "-c",
        &cmd,
    ]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&missing) && err.contains("not in the store"),
        "{err}"
    );
    let out = env.run(&["run", "--image", &missing, "--", "/bin/true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in the store"));
    assert!(!marker.exists());
    // malformed arguments are refused by the parser
    for bad in [
        "sha256:abc:/x",
        &format!("{missing}:relative"),
        &format!("{missing}/x"),
    ] {
        let out = env.run(&["run", "--snapshot", bad, "--", "/bin/true"]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
    }
}

#[test]
fn image_is_the_root_filesystem() {
    let env = Env::new();
    let layout = env.path("layout");
    let md = build_layout(
        &layout,
        &[(base_layer(), false), (upper_layer(), true)],
        &["v1"],
    );
    env.ok(&["image", "import", &format!("{}:v1", s(&layout))]);
    let out = env.run(&["run", "--image", &md, "--", "/bin/sh", "-c", "cat /etc/motd; ls /opt; test -e /etc/gone || echo no-gone; test -e /usr/bin/cargo || echo no-host-usr"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, "hi again\nnew\nno-gone\nno-host-usr\n");

    // a profile naming the image (org.cloister.image) selects it by default
    let profile_dir = env.path("profiles");
    fs::create_dir(&profile_dir).unwrap();
    let default = cloister_tests::workspace_root().join("sandbox-profiles/default.json");
    let mut p: serde_json::Value = serde_json::from_slice(&fs::read(default).unwrap()).unwrap();
    p["annotations"]["org.cloister.image"] = serde_json::json!(md);
    p["annotations"]["org.cloister.profile"] = serde_json::json!("with-image");
    fs::write(
        profile_dir.join("with-image.json"),
        serde_json::to_vec_pretty(&p).unwrap(),
    )
    .unwrap();
    let out = env
        .cmd(&[
            "run",
            "--profile",
            "with-image",
            "--",
            "/bin/sh",
            "-c",
            "cat /etc/motd",
        ])
        .env("CLOISTER_PROFILE_DIR", &profile_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"hi again\n");
    // and a profile naming an image that is not a digest is a clear error
    p["annotations"]["org.cloister.image"] = serde_json::json!("busybox:latest");
    fs::write(
        profile_dir.join("with-image.json"),
        serde_json::to_vec_pretty(&p).unwrap(),
    )
    .unwrap();
    let out = env
        .cmd(&["run", "--profile", "with-image", "--", "/bin/true"])
        .env("CLOISTER_PROFILE_DIR", &profile_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be a manifest digest"));
}

#[test]
fn gc_does_not_collect_inputs_of_a_running_build() {
    let env = Env::new();
    let t = env.path("t");
    fs::create_dir(&t).unwrap();
    write(&t, "f", b"in use\n", 0o644);
    let d = env.ok(&["snapshot", s(&t)]).trim().to_owned();
    let gate = env.path("gate");
    fs::create_dir(&gate).unwrap();
    // the build waits until the test has run gc, then reads its input
    let script = "while [ ! -e /gate/go ]; do sleep 0.05; done; cat /deps/f";
    // the run touches the lock's mtime as it pins: read it before the run
    // starts, or a quick run pins before the test looks and it waits forever
    let lock = env.store().join("snapshots").join(&d[7..]).join("lock");
    let t0 = fs::metadata(&lock).unwrap().modified().unwrap();
    let child = env
        .cmd(&[
            "run",
            "--snapshot",
            &format!("{d}:/deps"),
            "--bind",
            &format!("{}:/gate", s(&gate)),
            "--",
            "/bin/sh",
            "-c",
            script,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // wait until the run holds its pin
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while fs::metadata(&lock).unwrap().modified().unwrap() == t0 {
        assert!(
            std::time::Instant::now() < deadline,
            "run never pinned its snapshot"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let gc = env.json(&["store", "gc", "--max-bytes", "0"]);
    assert_eq!(gc["busy"].as_array().unwrap().len(), 1, "{gc}");
    fs::write(gate.join("go"), b"").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, b"in use\n");
    let gc = env.json(&["store", "gc", "--max-bytes", "0"]);
    assert_eq!(gc["removed"].as_array().unwrap().len(), 1, "{gc}");
}
