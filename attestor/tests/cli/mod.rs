//! The operator commands through the real binary, `serve`'s start-up
//! validation, TLS, and that API keys never reach the logs.

use crate::support::{ARTIFACT, Client, bin, build_record, sign_at};
use bytes::Bytes;
use hyper::Method;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn run(state: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .env_remove("CLOISTER_ATTESTOR_CONFIG")
        .env_remove("CLOISTER_ATTESTOR_DATABASE_URL")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn tenants_keys_and_usage_commands() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path();
    let created = ok(&run(
        st,
        &[
            "tenants",
            "create",
            "acme",
            "--plan",
            "Enterprise",
            "--json",
        ],
    ));
    let t: serde_json::Value = serde_json::from_str(created.trim()).unwrap();
    assert_eq!(t["name"], "acme");
    assert_eq!(t["plan"], "Enterprise");
    // Duplicate names and unknown plans are one-line errors.
    let dup = run(st, &["tenants", "create", "acme", "--plan", "Pro"]);
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    assert!(
        !run(st, &["tenants", "create", "x", "--plan", "Gold"])
            .status
            .success()
    );
    assert!(
        !run(st, &["tenants", "create", "bad name", "--plan", "Pro"])
            .status
            .success()
    );
    let list = ok(&run(st, &["tenants", "list", "--json"]));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&list).unwrap()[0]["name"],
        "acme"
    );

    let issued = ok(&run(st, &["api-keys", "issue", "acme"]));
    let key = issued.lines().last().unwrap().to_owned();
    assert!(
        key.starts_with("clst_"),
        "the key is the last line: {issued}"
    );
    let key_id = key.split('_').nth(1).unwrap();
    assert!(!run(st, &["api-keys", "issue", "nobody"]).status.success());
    let keys: serde_json::Value =
        serde_json::from_str(&ok(&run(st, &["api-keys", "list", "acme", "--json"]))).unwrap();
    assert_eq!(keys[0]["id"], key_id);
    // Only the hash is stored: the key's text is nowhere in the database files.
    for f in std::fs::read_dir(st).unwrap() {
        let p = f.unwrap().path();
        if p.is_file() {
            let bytes = std::fs::read(&p).unwrap();
            assert!(
                !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
                "{} holds the key",
                p.display()
            );
        }
    }
    ok(&run(st, &["api-keys", "revoke", key_id]));
    let keys: serde_json::Value =
        serde_json::from_str(&ok(&run(st, &["api-keys", "list", "acme", "--json"]))).unwrap();
    assert!(keys[0]["revokedAtMs"].is_i64());
    assert!(!run(st, &["api-keys", "revoke", "nope"]).status.success());

    let usage = ok(&run(
        st,
        &["usage", "--tenant", "acme", "--period", "2026-04", "--json"],
    ));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(usage.trim()).unwrap(),
        serde_json::json!({"tenant": "acme", "events": {"attestation.verify": 0, "portal.download": 0}})
    );
    assert!(
        !run(st, &["usage", "--tenant", "acme", "--period", "April"])
            .status
            .success()
    );
    assert!(!run(st, &["usage", "--tenant", "nobody"]).status.success());
}

#[test]
fn serve_refuses_bad_config_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("a.toml");
    std::fs::write(&cfg, "[rate_limit]\nper_second = 0\n").unwrap();
    let out = run(dir.path(), &["serve", "--config", cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rate_limit.per_second"), "{err}");
    std::fs::write(&cfg, "colour = \"blue\"\n").unwrap();
    let out = run(dir.path(), &["serve", "--config", cfg.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field"));
}

/// A server child whose stderr (logs) is captured.
struct Served {
    child: std::process::Child,
    addr: String,
    stderr: std::path::PathBuf,
}

fn serve(state: &Path, extra_env: &[(&str, &str)]) -> Served {
    serve_with(state, &[], extra_env)
}

fn serve_with(state: &Path, args: &[&str], extra_env: &[(&str, &str)]) -> Served {
    let stderr = state.with_extension("log");
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(state)
        .args(args)
        .env_remove("CLOISTER_ATTESTOR_CONFIG")
        .env_remove("CLOISTER_ATTESTOR_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut line).unwrap();
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let addr = line.trim().rsplit("://").next().unwrap().to_owned();
    assert!(line.starts_with("listening on "), "{line}");
    Served {
        child,
        addr,
        stderr,
    }
}

fn sigterm_and_wait(mut s: Served) -> String {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(s.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = s.child.wait().unwrap();
    assert!(status.success(), "graceful exit on SIGTERM");
    std::fs::read_to_string(&s.stderr).unwrap()
}

/// `serve` on a keyring whose key is passphrase-encrypted: refused with a
/// clear error without the passphrase or with a wrong one; served with it
/// from a file (flag or config) or an environment variable, signing with
/// that key; the passphrase never reaches the logs, even at trace level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_loads_an_encrypted_keyring_with_its_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("state");
    let secret = "correct horse battery staple 7f3a9c";
    let pass = dir.path().join("pass");
    std::fs::write(&pass, format!("{secret}\n")).unwrap();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not the passphrase\n").unwrap();
    let made: serde_json::Value = serde_json::from_str(&ok(&run(
        &st,
        &[
            "keygen",
            "--json",
            "--passphrase-file",
            pass.to_str().unwrap(),
        ],
    )))
    .unwrap();
    assert_eq!(made["encrypted"], true);
    let keyid = made["keyid"].as_str().unwrap().to_owned();

    let refused = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(bin());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--state-dir"])
            .arg(&st)
            .args(args)
            .env_remove("CLOISTER_ATTESTOR_CONFIG")
            .env_remove("CLOISTER_ATTESTOR_DATABASE_URL");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "serve must refuse {args:?}");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !err.contains(secret),
            "the passphrase reached stderr: {err}"
        );
        err
    };
    let err = refused(&[], &[]);
    assert!(
        err.contains("passphrase is required") && err.contains("--passphrase-file"),
        "{err}"
    );
    let err = refused(&["--passphrase-file", wrong.to_str().unwrap()], &[]);
    assert!(err.contains("wrong passphrase"), "{err}");
    let err = refused(&["--passphrase-env", "CLOISTER_TEST_UNSET_PASS_VAR"], &[]);
    assert!(err.contains("CLOISTER_TEST_UNSET_PASS_VAR"), "{err}");
    let err = refused(
        &[
            "--passphrase-file",
            pass.to_str().unwrap(),
            "--passphrase-env",
            "X",
        ],
        &[],
    );
    assert!(err.contains("cannot be used with"), "{err}");

    let cfg = dir.path().join("attestor.toml");
    std::fs::write(
        &cfg,
        format!("key_passphrase_file = \"{}\"\n", pass.display()),
    )
    .unwrap();
    let cfg_s = cfg.to_str().unwrap().to_owned();
    let pass_s = pass.to_str().unwrap().to_owned();
    type Way<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>);
    let ways: Vec<Way<'_>> = vec![
        (vec!["--passphrase-file", &pass_s], vec![]),
        (
            vec!["--passphrase-env", "ATTESTOR_TEST_PASS"],
            vec![("ATTESTOR_TEST_PASS", secret)],
        ),
        (vec!["--config", &cfg_s], vec![]),
        (
            vec![],
            vec![
                ("CLOISTER_ATTESTOR_KEY_PASSPHRASE_ENV", "ATTESTOR_TEST_PASS"),
                ("ATTESTOR_TEST_PASS", secret),
            ],
        ),
    ];
    for (args, env) in ways {
        let mut env = env.clone();
        env.extend([
            ("CLOISTER_ATTESTOR_LOG_FORMAT", "json"),
            ("CLOISTER_ATTESTOR_LOG_LEVEL", "trace"),
        ]);
        let s = serve_with(&st, &args, &env);
        let signed = sign_at(&st.join("sign.sock"), &build_record()).await;
        assert_eq!(signed["keyid"], keyid.as_str(), "{args:?} {signed}");
        let logs = sigterm_and_wait(s);
        assert!(logs.contains("attestor serving"), "{logs}");
        assert!(!logs.contains(secret), "the passphrase reached the logs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_never_reach_the_logs_and_json_logs_work() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("state");
    ok(&run(&st, &["tenants", "create", "acme", "--plan", "Pro"]));
    let key = ok(&run(&st, &["api-keys", "issue", "acme"]))
        .lines()
        .last()
        .unwrap()
        .to_owned();
    let s = serve(
        &st,
        &[
            ("CLOISTER_ATTESTOR_LOG_FORMAT", "json"),
            ("CLOISTER_ATTESTOR_LOG_LEVEL", "trace"),
        ],
    );
    // The first run generated the signing key.
    assert!(st.join("keys").is_dir());
    let signed = sign_at(&st.join("sign.sock"), &build_record()).await;
    let c = Client::new();
    let wrong = format!("{}x", &key[..key.len() - 1]);
    for k in [&key, &wrong] {
        let h = vec![
            ("authorization".to_owned(), format!("Bearer {k}")),
            ("idempotency-key".to_owned(), "log-test".to_owned()),
        ];
        let body = serde_json::json!({"artifactDigest": ARTIFACT, "sourceUri": "github.com/example/repo-a", "provenance": signed["envelope"]});
        c.send(
            Method::POST,
            &format!("http://{}/v1/verify", s.addr),
            &h,
            Bytes::from(body.to_string()),
        )
        .await;
        c.send(
            Method::GET,
            &format!("http://{}/v1/usage", s.addr),
            &h,
            Bytes::new(),
        )
        .await;
    }
    let logs = sigterm_and_wait(s);
    assert!(!logs.is_empty());
    for line in logs.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }
    assert!(logs.contains("attestor serving"));
    // `clst_<hex id>_<base64url secret>`: the secret may itself hold a '_'
    // (splitting at the last one made this check flaky: a 1- or 2-character
    // tail is found in any log).
    let secret = key.splitn(3, '_').nth(2).unwrap();
    assert_eq!(secret.len(), 43, "{key}");
    assert!(!logs.contains(secret), "an API key reached the logs");
    assert!(
        !logs.contains(&wrong[wrong.len() - 20..]),
        "a rejected key reached the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_serves_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("state");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    std::fs::write(dir.path().join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), &key_pem).unwrap();
    ok(&run(&st, &["tenants", "create", "acme", "--plan", "Pro"]));
    let key = ok(&run(&st, &["api-keys", "issue", "acme"]))
        .lines()
        .last()
        .unwrap()
        .to_owned();
    let s = serve(
        &st,
        &[
            (
                "CLOISTER_ATTESTOR_TLS_CERT",
                dir.path().join("cert.pem").to_str().unwrap(),
            ),
            (
                "CLOISTER_ATTESTOR_TLS_KEY",
                dir.path().join("key.pem").to_str().unwrap(),
            ),
        ],
    );
    // A client trusting that certificate gets an answer over TLS.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(&s.addr).await.unwrap();
    let tls = connector
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "tls handshake: {e}; server log:\n{}",
                std::fs::read_to_string(&s.stderr).unwrap()
            )
        });
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri("/v1/usage")
        .header("host", "localhost")
        .header("authorization", format!("Bearer {key}"))
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain_client = Client::new();
    let plain_url = format!("http://{}/healthz", s.addr);
    let plain = plain_client.try_send(Method::GET, &plain_url, &[], Bytes::new());
    let plain = tokio::time::timeout(Duration::from_secs(15), plain).await;
    assert!(
        !matches!(plain, Ok(Ok(ref r)) if r.status == 200),
        "plain HTTP must not be served"
    );
    sigterm_and_wait(s);
}

/// Runs `serve` on `state` expecting it to stop at start: returns its
/// stderr. One that keeps running is killed and fails the test (instead of
/// hanging it).
fn serve_refused(state: &Path) -> String {
    let mut child = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(state)
        .env_remove("CLOISTER_ATTESTOR_CONFIG")
        .env_remove("CLOISTER_ATTESTOR_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve kept running: it was expected to refuse to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A second `serve` on a state dir whose attestor is running stops with a
/// clear error: it neither unlinks nor takes over the live signing socket,
/// and the first attestor keeps signing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_attestor_on_a_live_signing_socket_is_refused() {
    use std::os::unix::fs::MetadataExt as _;
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("state");
    let first = serve(&st, &[]);
    let sock = st.join("sign.sock");
    let before = std::fs::metadata(&sock).unwrap().ino();
    let err = serve_refused(&st);
    assert!(err.contains("another process is listening"), "{err}");
    assert!(err.contains(&sock.display().to_string()), "{err}");
    assert_eq!(std::fs::metadata(&sock).unwrap().ino(), before);
    let signed = sign_at(&sock, &build_record()).await;
    assert!(signed["keyid"].is_string(), "{signed}");
    sigterm_and_wait(first);
}

/// Something other than a socket at the signing socket's path is refused
/// and left as it was.
#[test]
fn a_file_at_the_signing_socket_path_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("state");
    std::fs::create_dir_all(&st).unwrap();
    std::fs::write(st.join("sign.sock"), b"not a socket").unwrap();
    let err = serve_refused(&st);
    assert_eq!(
        err.matches("is not a socket").count(),
        1,
        "said once: {err}"
    );
    assert_eq!(
        std::fs::read(st.join("sign.sock")).unwrap(),
        b"not a socket"
    );
}
