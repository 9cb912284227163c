//! The API's boundary: who may connect, what they may send.

use crate::harness::{Daemon, spec, submit};
use cloister_runner::client::{ClientError, Endpoint};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

/// The daemon answers `/healthz` on its socket.
async fn assert_healthy(d: &Daemon) {
    let health: serde_json::Value = d
        .endpoint()
        .json(hyper::Method::GET, "/healthz", None)
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
}

#[tokio::test]
async fn unix_socket_is_0660_with_the_configured_group() {
    // gid 100 ("users" on Debian) given numerically: no need for the group to have a name.
    let d = Daemon::start("", "socket_group = \"100\"");
    let meta = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), 100);
    assert_healthy(&d).await;
}

#[tokio::test]
async fn tcp_requires_the_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token-for-tests-0123456789\n").unwrap();
    let d = Daemon::start(
        "",
        &format!(
            "tcp = \"127.0.0.1:0\"\ntoken_file = {:?}",
            token_file.display().to_string()
        ),
    );
    let addr = std::fs::read_to_string(d.state.join("tcp.addr")).unwrap();
    for token in [None, Some("wrong-token-wrong-token-wrong")] {
        let ep = Endpoint::Tcp {
            addr: addr.clone(),
            token: token.map(str::to_string),
        };
        for (method, path) in [
            (hyper::Method::GET, "/v1/jobs"),
            (hyper::Method::POST, "/v1/jobs"),
            (hyper::Method::GET, "/healthz"),
        ] {
            match ep.call(method, path, Some(b"{}".to_vec())).await {
                Err(ClientError::Status { status, body, .. }) => {
                    assert_eq!(status, 401, "{path} with {token:?}");
                    assert!(body.contains("bearer token"), "{body}");
                }
                other => panic!("{path} with {token:?}: expected 401, got {other:?}"),
            }
        }
    }
    let ep = Endpoint::Tcp {
        addr,
        token: Some("s3cret-token-for-tests-0123456789".into()),
    };
    let jobs: Vec<serde_json::Value> = ep.json(hyper::Method::GET, "/v1/jobs", None).await.unwrap();
    assert!(jobs.is_empty());
}

#[tokio::test]
async fn job_spec_with_unknown_field_is_rejected_and_nothing_is_queued() {
    let d = Daemon::start("", "");
    let ep = d.endpoint();
    let mut s = spec(
        std::path::Path::new("/src/x"),
        &"a".repeat(40),
        &["true"],
        &["out"],
    );
    s["network"] = serde_json::json!("host");
    match ep
        .call(
            hyper::Method::POST,
            "/v1/jobs",
            Some(s.to_string().into_bytes()),
        )
        .await
    {
        Err(ClientError::Status { status, body, .. }) => {
            assert_eq!(status, 422);
            assert!(body.contains("unknown field `network`"), "{body}");
        }
        other => panic!("expected 422, got {other:?}"),
    }
    let mut s = spec(
        std::path::Path::new("/src/x"),
        &"a".repeat(40),
        &["true"],
        &["out"],
    );
    s["limits"] = serde_json::json!({"timeoutSecs": 10, "privileged": true});
    let err = ep
        .call(
            hyper::Method::POST,
            "/v1/jobs",
            Some(s.to_string().into_bytes()),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown field `privileged`"),
        "{err}"
    );
    let jobs: Vec<serde_json::Value> = ep.json(hyper::Method::GET, "/v1/jobs", None).await.unwrap();
    assert!(jobs.is_empty(), "a rejected spec queues nothing: {jobs:?}");
    // Not JSON at all.
    let err = ep
        .call(hyper::Method::POST, "/v1/jobs", Some(b"not json".to_vec()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Status { status, .. } if status == 422),
        "{err}"
    );
    // Unknown job.
    let err = ep
        .call(hyper::Method::GET, "/v1/jobs/nope", None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Status { status, .. } if status == 404),
        "{err}"
    );
    let _ = submit; // used by other modules
}

/// READY=1 once listening, STOPPING=1 on SIGTERM, then a clean exit.
#[test]
fn sd_notify_ready_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut d = Daemon::start("", "");
    d.stop();
    d.spawn(&[("NOTIFY_SOCKET", notify.to_str().unwrap())]);
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(std::str::from_utf8(&buf[..n]).unwrap().trim(), "READY=1");
    let status = d.stop();
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(std::str::from_utf8(&buf[..n]).unwrap().trim(), "STOPPING=1");
    assert!(status.success(), "{status}");
    assert!(!d.socket.exists(), "the socket is removed on exit");
}

/// Runs `serve` with `config` but its own state dir, expecting it to stop
/// at start; returns its exit code and stderr. One that keeps running is
/// killed and fails the test (instead of hanging it).
fn serve_again(config: &std::path::Path) -> (Option<i32>, String) {
    use std::time::{Duration, Instant};
    let other = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(crate::harness::RUNNER)
        .args(["serve", "--config"])
        .arg(config)
        .arg("--state-dir")
        .arg(other.path().join("state"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the second daemon kept running: it was expected to refuse to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A second daemon pointed at a live daemon's socket stops with a clear
/// error; it neither unlinks nor takes over the first one's socket.
#[tokio::test]
async fn a_second_daemon_on_a_live_socket_is_refused_and_the_first_keeps_serving() {
    let d = Daemon::start("", "");
    let before = std::fs::metadata(&d.socket).unwrap().ino();
    let (code, err) = serve_again(&d.config);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("another process is listening"), "{err}");
    assert!(err.contains(&d.socket.display().to_string()), "{err}");
    assert_eq!(std::fs::metadata(&d.socket).unwrap().ino(), before);
    assert_healthy(&d).await;
}

/// Something other than a socket at the socket path (a mistyped config
/// pointing at a file) is refused and left as it was.
#[test]
fn a_file_at_the_socket_path_is_refused_and_kept() {
    let mut d = Daemon::start("", "");
    d.stop();
    std::fs::write(&d.socket, b"not a socket").unwrap();
    let (code, err) = serve_again(&d.config);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read(&d.socket).unwrap(), b"not a socket");
}

/// A SIGTERM sent the moment the socket appears drains the daemon and
/// removes the socket: the signal handlers are in place before any listener
/// exists (they were installed after, and a stop that came early killed the
/// process with the socket left behind).
#[test]
fn sigterm_as_soon_as_the_socket_appears_removes_it() {
    use std::time::{Duration, Instant};
    let mut d = Daemon::start("", "");
    d.stop();
    assert!(!d.socket.exists(), "a drained daemon removes its socket");
    let other = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(crate::harness::RUNNER)
        .args(["serve", "--config"])
        .arg(&d.config)
        .arg("--state-dir")
        .arg(other.path().join("state"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !d.socket.exists() {
        assert!(
            Instant::now() < deadline,
            "the daemon never bound its socket"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the daemon exited early"
        );
        std::thread::sleep(Duration::from_micros(100));
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "SIGTERM drains and exits 0: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!d.socket.exists(), "the socket was left behind");
}
