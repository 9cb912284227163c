//! Configuration errors stop the daemon at start with a clear message; the
//! shipped systemd units pass `systemd-analyze verify`.

use crate::harness::{RUNNER, workspace_root};
use std::process::Command;

fn serve_with(toml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runner.toml");
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(RUNNER)
        .args(["serve", "--config"])
        .arg(&path)
        .args(["--state-dir"])
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_config_key_stops_the_daemon() {
    let (code, err) = serve_with("concurency = 4\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown field `concurency`"), "{err}");
    assert_eq!(err.lines().count(), 1, "one-line error: {err}");
}

#[test]
fn tcp_without_token_stops_the_daemon() {
    let (code, err) = serve_with("[api]\ntcp = \"127.0.0.1:0\"\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("api.tcp needs api.token_file"), "{err}");
}

#[test]
fn missing_config_file_stops_the_daemon() {
    let out = Command::new(RUNNER)
        .args(["serve", "--config", "/nonexistent/runner.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read config /nonexistent/runner.toml"),
        "{err}"
    );
}

#[test]
fn toolchain_that_cannot_be_snapshotted_stops_the_daemon() {
    let tc = tempfile::tempdir().unwrap();
    let demo = tc.path().join("demo");
    std::fs::create_dir(&demo).unwrap();
    nix::unistd::mkfifo(
        &demo.join("pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let (code, err) = serve_with(&format!(
        "[toolchains]\ndemo = {:?}\n",
        demo.display().to_string()
    ));
    assert_eq!(code, 1, "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("cloister-runner serve: toolchain demo:")
            && last.contains("pipe")
            && last.contains("cannot be snapshotted"),
        "{err}"
    );
}

/// `systemd-analyze verify` on the shipped units (with ExecStart pointed at
/// the built binary, since verify checks that the executable exists); any
/// warning counts as a failure. The sysusers file is checked too.
#[test]
fn systemd_units_verify() {
    let dir = tempfile::tempdir().unwrap();
    let src = workspace_root().join("systemd");
    let mut units = Vec::new();
    for name in ["cloister-runner.service", "cloister-attestor.service"] {
        let text = std::fs::read_to_string(src.join(name)).unwrap();
        let text = text
            .replace("/usr/bin/cloister-runner", RUNNER)
            .replace("/usr/bin/cloister-attestor", RUNNER);
        for key in [
            "Type=notify",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ReadWritePaths=",
            "User=",
        ] {
            assert!(text.contains(key), "{name} lacks {key}");
        }
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        units.push(path);
    }
    assert!(
        std::fs::read_to_string(&units[0])
            .unwrap()
            .contains("Delegate=yes")
    );
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .output()
        .expect("systemd-analyze is installed (.ci/setup.d/50-daemon.sh installs systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );

    // A typo is caught (the check above can fail).
    let bad = dir.path().join("bad.service");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&units[1])
            .unwrap()
            .replace("NoNewPrivileges", "NoNewPrivilege"),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unknown key"));

    let out = Command::new("systemd-sysusers")
        .arg("--dry-run")
        .arg(src.join("cloister.sysusers.conf"))
        .output()
        .expect("systemd-sysusers");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("rror"),
        "sysusers: {stderr}"
    );
}
