//! The offline commands through the real binary: `keygen`, `keys`, `sign`
//! and `verify` (exit codes 0 / 1 / 2, text and JSON output, file modes,
//! encrypted and cosign keys, keyring rotation).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cloister_attestor_core::keys::{Algorithm, EncryptionParams, KeyPair, PublicKey};

const STATEMENT: &str = include_str!("../core/tests/golden/statement.json");
const DIGEST: &str = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cloister-attestor"));
    c.env_remove("CLOISTER_ATTESTOR_STATE_DIR");
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run cloister-attestor")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[track_caller]
fn code(o: &Output) -> i32 {
    o.status.code().expect("exited")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `o` exited with `expected` and said `needle` on stderr.
#[track_caller]
fn assert_fails(o: &Output, expected: i32, needle: &str) {
    assert_eq!(code(o), expected, "{}", stderr(o));
    assert!(stderr(o).contains(needle), "{}", stderr(o));
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        fs::write(root.join("statement.json"), STATEMENT).unwrap();
        Self { _dir: dir, root }
    }
    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

fn verify_args<'a>(prov: &'a str, key: &'a str) -> Vec<&'a str> {
    vec![
        "verify",
        "--provenance",
        prov,
        "--public-key",
        key,
        "--artifact-digest",
        DIGEST,
        "--source-uri",
        "github.com/example/repo-a",
    ]
}

#[test]
fn keygen_out_writes_owner_only_private_key_and_public_key() {
    for alg in ["ecdsa-p256", "ed25519"] {
        let t = Setup::new();
        let out = t.p("k");
        let o = run(&["keygen", "--alg", alg, "--out", s(&out), "--json"]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(v["algorithm"], alg);
        assert_eq!(mode(&out.join("private.pem")), 0o600);
        let public =
            PublicKey::from_pem(&fs::read_to_string(out.join("public.pem")).unwrap()).unwrap();
        assert_eq!(v["keyid"], public.keyid());
        let kp =
            KeyPair::from_pem(&fs::read_to_string(out.join("private.pem")).unwrap(), None).unwrap();
        assert_eq!(kp.keyid(), public.keyid());
        // Never overwrites a key.
        let again = run(&["keygen", "--out", s(&out)]);
        assert_fails(&again, 1, "refusing to overwrite");
    }
}

#[test]
fn keygen_encrypts_with_a_passphrase_from_file_or_env() {
    let t = Setup::new();
    fs::write(t.p("pass"), "hunter2\n").unwrap();
    let o = run(&[
        "keygen",
        "--out",
        s(&t.p("a")),
        "--passphrase-file",
        s(&t.p("pass")),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let pem = fs::read_to_string(t.p("a/private.pem")).unwrap();
    assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    KeyPair::from_pem(&pem, Some(b"hunter2")).unwrap();

    let o = bin()
        .args([
            "keygen",
            "--alg",
            "ed25519",
            "--out",
            s(&t.p("b")),
            "--passphrase-env",
            "TEST_PASS",
        ])
        .env("TEST_PASS", "from-env")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    KeyPair::from_pem(
        &fs::read_to_string(t.p("b/private.pem")).unwrap(),
        Some(b"from-env"),
    )
    .unwrap();

    let o = run(&[
        "keygen",
        "--out",
        s(&t.p("c")),
        "--passphrase-env",
        "SURELY_UNSET_VAR_4711",
    ]);
    assert_fails(&o, 1, "SURELY_UNSET_VAR_4711");
}

#[test]
fn sign_then_verify_both_outputs_both_algorithms() {
    for alg in ["ecdsa-p256", "ed25519"] {
        let t = Setup::new();
        assert_eq!(
            code(&run(&["keygen", "--alg", alg, "--out", s(&t.p("k"))])),
            0
        );
        let o = run(&[
            "sign",
            "--key",
            s(&t.p("k/private.pem")),
            "--statement",
            s(&t.p("statement.json")),
            "--out",
            s(&t.p("out/repo-a")),
        ]);
        assert_eq!(
            code(&o),
            1,
            "a missing output directory is an error: {}",
            stderr(&o)
        );
        fs::create_dir(t.p("out")).unwrap();
        let o = run(&[
            "sign",
            "--key",
            s(&t.p("k/private.pem")),
            "--statement",
            s(&t.p("statement.json")),
            "--out",
            s(&t.p("out/repo-a")),
        ]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let jsonl = fs::read_to_string(t.p("out/repo-a.intoto.jsonl")).unwrap();
        assert_eq!(jsonl.lines().count(), 1);
        let bundle: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(t.p("out/repo-a.sigstore.json")).unwrap())
                .unwrap();
        assert_eq!(
            bundle["mediaType"],
            "application/vnd.dev.sigstore.bundle.v0.3+json"
        );
        assert_eq!(
            bundle["verificationMaterial"]["tlogEntries"],
            serde_json::json!([])
        );

        for file in ["out/repo-a.intoto.jsonl", "out/repo-a.sigstore.json"] {
            let o = run(&verify_args(s(&t.p(file)), s(&t.p("k/public.pem"))));
            assert_eq!(code(&o), 0, "{file}: {}{}", stdout(&o), stderr(&o));
            assert!(stdout(&o).starts_with("PASSED: "), "{}", stdout(&o));
        }
    }
}

fn sign(t: &Setup, key: &str, extra: &[&str]) -> Output {
    let statement = t.p("statement.json");
    let out = t.p("prov");
    let mut v: Vec<String> = vec!["sign".into()];
    if !key.is_empty() {
        v.extend(["--key".into(), key.into()]);
    }
    v.extend([
        "--statement".into(),
        s(&statement).into(),
        "--out".into(),
        s(&out).into(),
    ]);
    v.extend(extra.iter().map(|x| x.to_string()));
    bin().args(&v).output().unwrap()
}

#[test]
fn verify_json_and_print_provenance() {
    let t = Setup::new();
    run(&["keygen", "--out", s(&t.p("k"))]);
    assert_eq!(code(&sign(&t, s(&t.p("k/private.pem")), &[])), 0);
    let prov = t.p("prov.intoto.jsonl");

    let public = t.p("k/public.pem");
    let mut args = verify_args(s(&prov), s(&public));
    args.push("--json");
    let o = run(&args);
    assert_eq!(code(&o), 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["verified"], true);
    assert_eq!(v["reasons"], serde_json::json!([]));
    assert_eq!(v["slsaLevel"], 3);
    assert_eq!(
        v["builderId"],
        "https://cloister.example.com/builders/isolated@v1"
    );
    assert_eq!(v["subject"]["name"], "repo-a");

    // --print-provenance: stdout is exactly the signed statement bytes.
    let public = t.p("k/public.pem");
    let mut args = verify_args(s(&prov), s(&public));
    args.push("--print-provenance");
    let o = run(&args);
    assert_eq!(code(&o), 0);
    let env: serde_json::Value =
        serde_json::from_str(fs::read_to_string(&prov).unwrap().trim()).unwrap();
    let payload = cloister_attestor_core::b64::decode(env["payload"].as_str().unwrap()).unwrap();
    assert_eq!(o.stdout, [payload.as_slice(), b"\n"].concat());
    assert!(stderr(&o).starts_with("PASSED: "));
}

#[test]
fn verify_failures_exit_one_with_reason_codes() {
    let t = Setup::new();
    run(&["keygen", "--out", s(&t.p("k"))]);
    run(&["keygen", "--out", s(&t.p("other"))]);
    assert_eq!(code(&sign(&t, s(&t.p("k/private.pem")), &[])), 0);
    let prov = t.p("prov.sigstore.json");

    // Untrusted key.
    let o = run(&verify_args(s(&prov), s(&t.p("other/public.pem"))));
    assert_eq!(code(&o), 1);
    assert!(
        stdout(&o).starts_with("FAILED: ") && stdout(&o).contains("(untrusted_key)"),
        "{}",
        stdout(&o)
    );

    // Wrong source, tag, builder: all reasons reported, in JSON too.
    let public = t.p("k/public.pem");
    let mut args = verify_args(s(&prov), s(&public));
    args.extend([
        "--source-tag",
        "v9.9.9",
        "--builder-id",
        "https://elsewhere/b",
        "--json",
    ]);
    let o = run(&args);
    assert_eq!(code(&o), 1);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["verified"], false);
    let codes: Vec<&str> = v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["source_tag_mismatch", "builder_id_mismatch"]);
    assert!(v["slsaLevel"].is_null());

    // Wrong artifact file.
    fs::write(t.p("artifact"), b"not the artifact").unwrap();
    let o = run(&[
        "verify",
        "--provenance",
        s(&prov),
        "--public-key",
        s(&t.p("k/public.pem")),
        "--artifact",
        s(&t.p("artifact")),
        "--source-uri",
        "github.com/example/repo-a",
    ]);
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).contains("(artifact_digest_mismatch)"));

    // The right artifact file ("abc" hashes to the golden subject digest).
    fs::write(t.p("artifact"), b"abc").unwrap();
    let o = run(&[
        "verify",
        "--provenance",
        s(&prov),
        "--public-key",
        s(&t.p("k/public.pem")),
        "--artifact",
        s(&t.p("artifact")),
        "--source-uri",
        "github.com/example/repo-a",
        "--source-versioned-tag",
        "v1.2",
    ]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));

    // Tampered bytes.
    let text = fs::read_to_string(&prov).unwrap().replace(
        "\"payloadType\": \"application/vnd.in-toto+json\"",
        "\"payloadType\": \"text/plain\"",
    );
    fs::write(t.p("tampered.json"), text).unwrap();
    let o = run(&verify_args(
        s(&t.p("tampered.json")),
        s(&t.p("k/public.pem")),
    ));
    assert_eq!(code(&o), 1);
    assert!(
        stdout(&o).contains("(payload_type_mismatch)"),
        "{}",
        stdout(&o)
    );

    // Oversized input is a verification failure, read no further than the limit.
    let f = fs::File::create(t.p("huge")).unwrap();
    f.set_len(64 << 20).unwrap();
    let o = run(&verify_args(s(&t.p("huge")), s(&t.p("k/public.pem"))));
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).contains("(input_too_large)"));
}

#[test]
fn verify_usage_errors_exit_two() {
    let t = Setup::new();
    run(&["keygen", "--out", s(&t.p("k"))]);
    assert_eq!(code(&sign(&t, s(&t.p("k/private.pem")), &[])), 0);
    let prov = t.p("prov.intoto.jsonl");
    let key = t.p("k/public.pem");
    let private = t.p("k/private.pem");
    let cases: Vec<Vec<&str>> = vec![
        // no artifact
        vec![
            "verify",
            "--provenance",
            s(&prov),
            "--public-key",
            s(&key),
            "--source-uri",
            "x/y",
        ],
        // no source uri
        vec![
            "verify",
            "--provenance",
            s(&prov),
            "--public-key",
            s(&key),
            "--artifact-digest",
            DIGEST,
        ],
        // bad digest syntax
        vec![
            "verify",
            "--provenance",
            s(&prov),
            "--public-key",
            s(&key),
            "--artifact-digest",
            "sha256:xyz",
            "--source-uri",
            "x/y",
        ],
        // tag and versioned tag together
        vec![
            "verify",
            "--provenance",
            s(&prov),
            "--public-key",
            s(&key),
            "--artifact-digest",
            DIGEST,
            "--source-uri",
            "x/y",
            "--source-tag",
            "v1",
            "--source-versioned-tag",
            "v1",
        ],
        // not semver
        vec![
            "verify",
            "--provenance",
            s(&prov),
            "--public-key",
            s(&key),
            "--artifact-digest",
            DIGEST,
            "--source-uri",
            "x/y",
            "--source-versioned-tag",
            "latest",
        ],
        // missing files
        vec![
            "verify",
            "--provenance",
            "/nonexistent/prov",
            "--public-key",
            s(&key),
            "--artifact-digest",
            DIGEST,
            "--source-uri",
            "x/y",
        ],
        vec![
            "verify",
            "--provenance",
            s(&prov),
            "--public-key",
            "/nonexistent/key.pem",
            "--artifact-digest",
            DIGEST,
            "--source-uri",
            "x/y",
        ],
        vec![
            "verify",
            "--provenance",
            s(&prov),
            "--public-key",
            s(&key),
            "--artifact",
            "/nonexistent/a",
            "--source-uri",
            "x/y",
        ],
        // a private key where a public key belongs
        vec![
            "verify",
            "--provenance",
            s(&prov),
            "--public-key",
            s(&private),
            "--artifact-digest",
            DIGEST,
            "--source-uri",
            "x/y",
        ],
        // no trusted keys at all
        vec![
            "verify",
            "--provenance",
            s(&prov),
            "--artifact-digest",
            DIGEST,
            "--source-uri",
            "x/y",
        ],
    ];
    for args in cases {
        let o = run(&args);
        assert_eq!(code(&o), 2, "{args:?}: {}{}", stdout(&o), stderr(&o));
        assert!(!stderr(&o).is_empty());
    }
}

#[test]
fn sign_rejects_invalid_statements_and_exposed_keys() {
    let t = Setup::new();
    run(&["keygen", "--out", s(&t.p("k"))]);
    let key = s(&t.p("k/private.pem")).to_owned();
    let bad = [
        STATEMENT.replacen("\"_type\"", "\"_type\": \"x\", \"_type\"", 1),
        STATEMENT.replace(
            "https://slsa.dev/provenance/v1",
            "https://slsa.dev/provenance/v0.2",
        ),
        STATEMENT.replace(
            "\"id\": \"https://cloister.example.com/builders/isolated@v1\"",
            "\"id\": \"\"",
        ),
        STATEMENT.replace("\"sha256\": \"ba7816bf", "\"sha256\": \"zz7816bf"),
        STATEMENT[..STATEMENT.len() / 2].to_owned(),
    ];
    for text in bad {
        fs::write(t.p("statement.json"), &text).unwrap();
        let o = sign(&t, &key, &[]);
        assert_eq!(code(&o), 1, "accepted:\n{text}");
        assert!(
            stderr(&o).contains("not a valid statement"),
            "{}",
            stderr(&o)
        );
        assert!(!t.p("prov.intoto.jsonl").exists());
    }
    fs::write(t.p("statement.json"), STATEMENT).unwrap();
    fs::set_permissions(t.p("k/private.pem"), fs::Permissions::from_mode(0o644)).unwrap();
    let o = sign(&t, &key, &[]);
    assert_fails(&o, 1, "readable by group or others");
}

#[test]
fn sign_with_encrypted_key_needs_its_passphrase() {
    let t = Setup::new();
    fs::write(t.p("pass"), "pw").unwrap();
    run(&[
        "keygen",
        "--out",
        s(&t.p("k")),
        "--passphrase-file",
        s(&t.p("pass")),
    ]);
    let key = s(&t.p("k/private.pem")).to_owned();
    let o = sign(&t, &key, &[]);
    assert_fails(&o, 1, "passphrase is required");
    fs::write(t.p("wrong"), "nope").unwrap();
    let o = sign(&t, &key, &["--passphrase-file", s(&t.p("wrong"))]);
    assert_fails(&o, 1, "wrong passphrase");
    let o = sign(&t, &key, &["--passphrase-file", s(&t.p("pass"))]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn keyring_keygen_list_rotate_export_sign_and_verify() {
    let t = Setup::new();
    let state = t.p("state");
    let st = s(&state).to_owned();
    let o = run(&["keygen", "--state-dir", &st]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(mode(&state), 0o700);
    // A second keygen would silently replace the signing key: refused.
    let o = run(&["keygen", "--state-dir", &st]);
    assert_fails(&o, 1, "keys rotate");

    let list = |json: bool| {
        let mut a = vec!["keys", "list", "--state-dir", &st];
        if json {
            a.push("--json");
        }
        run(&a)
    };
    let v: serde_json::Value = serde_json::from_slice(&list(true).stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["status"], "active");
    assert_eq!(v[0]["algorithm"], "ecdsa-p256");
    assert_eq!(v[0]["trusted"], true);
    let first = v[0]["keyid"].as_str().unwrap().to_owned();
    assert_eq!(mode(&state.join(format!("keys/{first}.key.pem"))), 0o600);

    // Sign with the keyring (env var instead of the flag), then rotate.
    let o = bin()
        .args([
            "sign",
            "--statement",
            s(&t.p("statement.json")),
            "--out",
            s(&t.p("old")),
        ])
        .env("CLOISTER_ATTESTOR_STATE_DIR", &st)
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run(&[
        "keys",
        "rotate",
        "--state-dir",
        &st,
        "--alg",
        "ed25519",
        "--not-after",
        "2999-01-01T00:00:00Z",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&list(true).stdout).unwrap();
    assert_eq!(v[0]["keyid"], first.as_str());
    assert_eq!(v[0]["status"], "rotated");
    assert_eq!(v[0]["notAfter"], "2999-01-01T00:00:00Z");
    assert_eq!(v[1]["status"], "active");
    assert_eq!(v[1]["algorithm"], "ed25519");
    let text = stdout(&list(false));
    assert!(text.starts_with("KEYID"), "{text}");
    assert!(
        text.contains(&first) && text.contains("rotated") && text.contains("2999-01-01T00:00:00Z"),
        "{text}"
    );

    // New signatures use the new key; both old and new provenance verify
    // against the keyring's trusted keys.
    let o = run(&[
        "sign",
        "--state-dir",
        &st,
        "--statement",
        s(&t.p("statement.json")),
        "--out",
        s(&t.p("new")),
    ]);
    assert_eq!(code(&o), 0);
    for prov in ["old.intoto.jsonl", "new.sigstore.json"] {
        let o = run(&[
            "verify",
            "--provenance",
            s(&t.p(prov)),
            "--state-dir",
            &st,
            "--artifact-digest",
            DIGEST,
            "--source-uri",
            "github.com/example/repo-a",
        ]);
        assert_eq!(code(&o), 0, "{prov}: {}{}", stdout(&o), stderr(&o));
    }
    // Export prints the active key by default, or the one asked for.
    let o = run(&["keys", "export", "--state-dir", &st, &first]);
    assert_eq!(PublicKey::from_pem(&stdout(&o)).unwrap().keyid(), first);
    let o = run(&["keys", "export", "--state-dir", &st]);
    assert_eq!(
        PublicKey::from_pem(&stdout(&o)).unwrap().keyid(),
        v[1]["keyid"].as_str().unwrap()
    );

    // A rotation whose grace period already ended stops trusting the old key.
    let o = run(&[
        "keys",
        "rotate",
        "--state-dir",
        &st,
        "--not-after",
        "2000-01-01T00:00:00Z",
    ]);
    assert_eq!(code(&o), 1, "a not-after in the past is refused");
}

#[test]
fn keys_import_cosign_and_pkcs8_keys() {
    let t = Setup::new();
    let st = s(&t.p("state")).to_owned();
    // A key in cosign's format: scrypt + NaCl secretbox JSON in an
    // "ENCRYPTED SIGSTORE PRIVATE KEY" PEM (what `cosign generate-key-pair` writes).
    let kp = KeyPair::generate(Algorithm::EcdsaP256).unwrap();
    let pem = cloister_attestor_core::cosign::encrypt(kp.pkcs8_der(), b"cosign-pw", 15).unwrap();
    let path = t.p("cosign.key");
    fs::write(&path, pem.as_bytes()).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let o = bin()
        .args([
            "keys",
            "import",
            "--state-dir",
            &st,
            s(&path),
            "--passphrase-env",
            "COSIGN_PASSWORD",
        ])
        .env("COSIGN_PASSWORD", "cosign-pw")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains(kp.keyid()));
    let o = run(&["keys", "export", "--state-dir", &st]);
    assert_eq!(
        PublicKey::from_pem(&stdout(&o)).unwrap().keyid(),
        kp.keyid()
    );

    // A wrong passphrase is refused and changes nothing.
    let other = KeyPair::generate(Algorithm::Ed25519).unwrap();
    let pem = other
        .to_pkcs8_pem(None, EncryptionParams::default())
        .unwrap();
    fs::write(t.p("plain.pem"), pem.as_bytes()).unwrap();
    fs::set_permissions(t.p("plain.pem"), fs::Permissions::from_mode(0o600)).unwrap();
    let o = bin()
        .args([
            "keys",
            "import",
            "--state-dir",
            &st,
            s(&path),
            "--passphrase-env",
            "COSIGN_PASSWORD",
        ])
        .env("COSIGN_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert_eq!(code(&o), 1);
    // Importing a plain PKCS#8 key rotates the cosign key out (the keyring's
    // keys were stored encrypted with the cosign passphrase, which reading them needs).
    let o = bin()
        .args([
            "keys",
            "import",
            "--state-dir",
            &st,
            s(&t.p("plain.pem")),
            "--grace-days",
            "7",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value =
        serde_json::from_slice(&run(&["keys", "list", "--state-dir", &st, "--json"]).stdout)
            .unwrap();
    assert_eq!(v[0]["keyid"], kp.keyid());
    assert_eq!(v[0]["status"], "rotated");
    assert_eq!(v[0]["encrypted"], true);
    assert_eq!(v[1]["keyid"], other.keyid());
    assert_eq!(v[1]["encrypted"], false);
}

#[test]
fn help_is_available_everywhere() {
    for args in [
        vec!["--help"],
        vec!["keygen", "--help"],
        vec!["keys", "--help"],
        vec!["keys", "list", "--help"],
        vec!["keys", "rotate", "--help"],
        vec!["keys", "import", "--help"],
        vec!["keys", "export", "--help"],
        vec!["sign", "--help"],
        vec!["verify", "--help"],
    ] {
        let o = run(&args);
        assert_eq!(code(&o), 0, "{args:?}");
        assert!(stdout(&o).contains("Usage:"), "{args:?}");
    }
}

/// A `.intoto.jsonl` with several envelopes goes through the core's one
/// rule (`verify_any`, as `POST /v1/verify` over stored attestations):
/// when none verifies, each envelope's reasons are printed, prefixed; a
/// good envelope after a bad one verifies.
#[test]
fn verify_tries_each_envelope_and_reports_every_failure() {
    let t = Setup::new();
    run(&["keygen", "--out", s(&t.p("k"))]);
    let key = t.p("k/private.pem");
    // Three statements: another repository, another tag, and the good one.
    let variants = [
        (
            "repo",
            STATEMENT.replace(
                "git+https://github.com/example/repo-a",
                "git+https://github.com/example/repo-b",
            ),
        ),
        (
            "tag",
            STATEMENT.replace("refs/tags/v1.2.3", "refs/tags/v1.0.0"),
        ),
        ("good", STATEMENT.to_string()),
    ];
    let mut lines = std::collections::HashMap::new();
    for (name, text) in &variants {
        assert_ne!(name == &"good", text != STATEMENT, "{name} is changed");
        fs::write(t.p(&format!("{name}.json")), text).unwrap();
        let o = run(&[
            "sign",
            "--key",
            s(&key),
            "--statement",
            s(&t.p(&format!("{name}.json"))),
            "--out",
            s(&t.p(name)),
        ]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let line = fs::read_to_string(t.p(&format!("{name}.intoto.jsonl"))).unwrap();
        lines.insert(*name, line.trim().to_string());
    }
    let jsonl = |name: &str, of: &[&str]| {
        let p = t.p(name);
        let text: Vec<&str> = of.iter().map(|n| lines[n].as_str()).collect();
        fs::write(&p, text.join("\n") + "\n").unwrap();
        p
    };
    let public = t.p("k/public.pem");
    let verify = |prov: &Path, json: bool| {
        let mut args = verify_args(s(prov), s(&public));
        args.extend(["--source-tag", "v1.2.3"]);
        if json {
            args.push("--json");
        }
        run(&args)
    };

    let two_bad = jsonl("two-bad.intoto.jsonl", &["repo", "tag"]);
    let o = verify(&two_bad, false);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "FAILED: envelope 1: source https://github.com/example/repo-b does not match expected https://github.com/example/repo-a (source_uri_mismatch)\n\
         FAILED: envelope 2: source ref \"refs/tags/v1.0.0\" is not tag \"v1.2.3\" (source_tag_mismatch)\n"
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&verify(&two_bad, true))).unwrap();
    assert_eq!(v["verified"], false);
    assert_eq!(v["reasons"].as_array().unwrap().len(), 2, "{v}");

    let bad_then_good = jsonl("bad-then-good.intoto.jsonl", &["repo", "tag", "good"]);
    let o = verify(&bad_then_good, false);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).starts_with("PASSED: "), "{}", stdout(&o));
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&verify(&bad_then_good, true))).unwrap();
    assert_eq!(v["verified"], true);
    assert_eq!(v["reasons"], serde_json::json!([]));
    assert_eq!(v["subject"]["name"], "repo-a");
}
