//! Interop: our outputs checked by verifiers we did not write.
//!
//! - `.intoto.jsonl` envelopes by securesystemslib (`Envelope.verify` with
//!   `SSlibKey.from_crypto`), ECDSA P-256 and Ed25519;
//! - `.sigstore.json` bundles by sigstore-js (`@sigstore/verify` with
//!   public-key trust material and zero tlog/ctlog/timestamp thresholds);
//! - a tampered file of each kind, which the external verifier must reject;
//! - a cosign-format key written by PyNaCl + hashlib, imported by
//!   `keys import` and used to sign;
//! - private keys exchanged with OpenSSL both ways (encrypted PKCS#8, SEC1).
//!
//! The verifiers come from `.ci/setup.d/30-interop.sh`, which exports
//! `CLOISTER_INTEROP_PYTHON` and `CLOISTER_INTEROP_NODE_MODULES`. Without
//! them these tests fail: they never skip.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cloister_tests::{bin, interop_node_modules, interop_python, workspace_root};

fn script(name: &str) -> PathBuf {
    workspace_root().join("tests/interop").join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn attestor(args: &[&str]) -> Output {
    Command::new(bin("cloister-attestor"))
        .args(args)
        .env_remove("CLOISTER_ATTESTOR_STATE_DIR")
        .output()
        .expect("run cloister-attestor")
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// securesystemslib on a `.intoto.jsonl`.
fn sslib_verify(jsonl: &Path, public: &Path) -> Output {
    Command::new(interop_python())
        .arg(script("verify_envelope.py"))
        .args([jsonl, public])
        .output()
        .expect("run python")
}

/// sigstore-js on a `.sigstore.json`.
fn sigstore_js_verify(bundle: &Path, public: &Path) -> Output {
    Command::new("node")
        .arg(script("verify_bundle.js"))
        .args([bundle, public])
        .env("NODE_PATH", interop_node_modules())
        .output()
        .expect("run node (install nodejs: .ci/setup.d/30-interop.sh)")
}

fn keyid_of(public: &Path) -> String {
    let o = Command::new(interop_python())
        .args([
            "-c",
            "import hashlib,sys;from cryptography.hazmat.primitives import serialization as s;\
             k=s.load_pem_public_key(open(sys.argv[1],'rb').read());\
             print(hashlib.sha256(k.public_bytes(s.Encoding.DER,s.PublicFormat.SubjectPublicKeyInfo)).hexdigest())",
            s(public),
        ])
        .output()
        .unwrap();
    ok(&o).trim().to_owned()
}

/// A temp dir with a key of `alg` and both outputs signed by it.
struct Signed {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Signed {
    fn new(alg: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        fs::copy(
            workspace_root().join("attestor/core/tests/golden/statement.json"),
            root.join("statement.json"),
        )
        .unwrap();
        ok(&attestor(&[
            "keygen",
            "--alg",
            alg,
            "--out",
            s(&root.join("key")),
        ]));
        ok(&attestor(&[
            "keygen",
            "--alg",
            alg,
            "--out",
            s(&root.join("other")),
        ]));
        ok(&attestor(&[
            "sign",
            "--key",
            s(&root.join("key/private.pem")),
            "--statement",
            s(&root.join("statement.json")),
            "--out",
            s(&root.join("repo-a")),
        ]));
        Self { _dir: dir, root }
    }
    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

/// Changes one base64 character in the middle of the payload: still valid
/// base64, different signed bytes.
fn tamper_payload(path: &Path, out: &Path) {
    let text = fs::read_to_string(path).unwrap();
    let start = text.find("\"payload\":").expect("payload field") + "\"payload\":".len();
    let quote = start + text[start..].find('"').unwrap() + 1;
    let i = quote + 200;
    let c = text.as_bytes()[i];
    let replacement = if c == b'A' { "B" } else { "A" };
    let tampered = format!("{}{}{}", &text[..i], replacement, &text[i + 1..]);
    assert_ne!(tampered, text);
    fs::write(out, tampered).unwrap();
}

#[track_caller]
fn rejected(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(1),
        "the external verifier must reject: stdout {} stderr {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn envelope_case(alg: &str, scheme: &str) {
    let t = Signed::new(alg);
    let out = ok(&sslib_verify(
        &t.p("repo-a.intoto.jsonl"),
        &t.p("key/public.pem"),
    ));
    let keyid = keyid_of(&t.p("key/public.pem"));
    assert_eq!(out.trim(), format!("OK {keyid} {scheme}"));
    // The keyid we wrote is the one securesystemslib matched on.
    assert!(
        fs::read_to_string(t.p("repo-a.intoto.jsonl"))
            .unwrap()
            .contains(&keyid)
    );

    tamper_payload(&t.p("repo-a.intoto.jsonl"), &t.p("tampered.intoto.jsonl"));
    let err = rejected(&sslib_verify(
        &t.p("tampered.intoto.jsonl"),
        &t.p("key/public.pem"),
    ));
    assert!(err.contains("VerificationError"), "{err}");
    let err = rejected(&sslib_verify(
        &t.p("repo-a.intoto.jsonl"),
        &t.p("other/public.pem"),
    ));
    assert!(err.contains("VerificationError"), "{err}");
}

fn bundle_case(alg: &str) {
    let t = Signed::new(alg);
    let out = ok(&sigstore_js_verify(
        &t.p("repo-a.sigstore.json"),
        &t.p("key/public.pem"),
    ));
    assert_eq!(
        out.trim(),
        format!("OK {}", keyid_of(&t.p("key/public.pem")))
    );

    tamper_payload(&t.p("repo-a.sigstore.json"), &t.p("tampered.sigstore.json"));
    let err = rejected(&sigstore_js_verify(
        &t.p("tampered.sigstore.json"),
        &t.p("key/public.pem"),
    ));
    assert!(err.contains("SIGNATURE_ERROR"), "{err}");
    let err = rejected(&sigstore_js_verify(
        &t.p("repo-a.sigstore.json"),
        &t.p("other/public.pem"),
    ));
    assert!(err.contains("untrusted key hint"), "{err}");
}

#[test]
fn securesystemslib_verifies_our_ecdsa_p256_envelope() {
    envelope_case("ecdsa-p256", "ecdsa-sha2-nistp256");
}

#[test]
fn securesystemslib_verifies_our_ed25519_envelope() {
    envelope_case("ed25519", "ed25519");
}

#[test]
fn sigstore_js_verifies_our_ecdsa_p256_bundle() {
    bundle_case("ecdsa-p256");
}

#[test]
fn sigstore_js_verifies_our_ed25519_bundle() {
    bundle_case("ed25519");
}

#[test]
fn cosign_format_key_from_pynacl_imports_and_signs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let key = root.join("cosign.key");
    let public = root.join("cosign.pub");
    ok(&Command::new(interop_python())
        .arg(script("make_cosign_key.py"))
        .args(["pw-from-cosign", s(&key), s(&public)])
        .output()
        .unwrap());
    assert!(
        fs::read_to_string(&key)
            .unwrap()
            .starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----")
    );
    let state = root.join("state");
    let o = Command::new(bin("cloister-attestor"))
        .args([
            "keys",
            "import",
            "--state-dir",
            s(&state),
            s(&key),
            "--passphrase-env",
            "COSIGN_PASSWORD",
        ])
        .env("COSIGN_PASSWORD", "pw-from-cosign")
        .output()
        .unwrap();
    let out = ok(&o);
    let keyid = keyid_of(&public);
    assert!(out.contains(&keyid), "{out}");

    fs::copy(
        workspace_root().join("attestor/core/tests/golden/statement.json"),
        root.join("statement.json"),
    )
    .unwrap();
    let o = Command::new(bin("cloister-attestor"))
        .args([
            "sign",
            "--state-dir",
            s(&state),
            "--statement",
            s(&root.join("statement.json")),
        ])
        .args([
            "--out",
            s(&root.join("p")),
            "--passphrase-env",
            "COSIGN_PASSWORD",
        ])
        .env("COSIGN_PASSWORD", "pw-from-cosign")
        .output()
        .unwrap();
    ok(&o);
    // cosign's public key (written by `cryptography`) verifies with all three verifiers.
    ok(&sslib_verify(&root.join("p.intoto.jsonl"), &public));
    ok(&sigstore_js_verify(&root.join("p.sigstore.json"), &public));
    ok(&attestor(&[
        "verify",
        "--provenance",
        s(&root.join("p.sigstore.json")),
        "--public-key",
        s(&public),
        "--artifact-digest",
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "--source-uri",
        "github.com/example/repo-a",
    ]));
}

fn openssl(args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl (apt-get install openssl)")
}

#[test]
fn openssl_reads_our_encrypted_private_keys() {
    for alg in ["ecdsa-p256", "ed25519"] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("pw"), "openssl-pw\n").unwrap();
        ok(&attestor(&[
            "keygen",
            "--alg",
            alg,
            "--out",
            s(&root.join("k")),
            "--passphrase-file",
            s(&root.join("pw")),
        ]));
        let pem = fs::read_to_string(root.join("k/private.pem")).unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        let public = ok(&openssl(&[
            "pkey",
            "-in",
            s(&root.join("k/private.pem")),
            "-passin",
            "pass:openssl-pw",
            "-pubout",
        ]));
        assert_eq!(
            public,
            fs::read_to_string(root.join("k/public.pem")).unwrap()
        );
        let o = openssl(&[
            "pkey",
            "-in",
            s(&root.join("k/private.pem")),
            "-passin",
            "pass:wrong",
            "-pubout",
        ]);
        assert!(!o.status.success());
    }
}

#[test]
fn we_sign_with_openssl_generated_keys() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::copy(
        workspace_root().join("attestor/core/tests/golden/statement.json"),
        root.join("statement.json"),
    )
    .unwrap();
    fs::write(root.join("pw"), "pw").unwrap();
    // (file, openssl arguments, encrypted with "pw")
    let keys: [(&str, Vec<&str>, bool); 4] = [
        (
            "p256-pkcs8-aes.pem",
            vec![
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-aes-256-cbc",
                "-pass",
                "pass:pw",
            ],
            true,
        ),
        (
            "p256-sec1.pem",
            vec!["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
            false,
        ),
        (
            "ed25519.pem",
            vec!["genpkey", "-algorithm", "ed25519"],
            false,
        ),
        (
            "ed25519-aes.pem",
            vec![
                "genpkey",
                "-algorithm",
                "ed25519",
                "-aes-256-cbc",
                "-pass",
                "pass:pw",
            ],
            true,
        ),
    ];
    let statement = root.join("statement.json");
    let pw = root.join("pw");
    for (name, gen_args, encrypted) in keys {
        let path = root.join(name);
        let mut args = gen_args.clone();
        args.extend(["-out", s(&path)]);
        ok(&openssl(&args));
        // openssl writes 0644 on a umask of 022; our signer refuses such files.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let public = root.join(format!("{name}.pub"));
        ok(&openssl(&[
            "pkey",
            "-in",
            s(&path),
            "-passin",
            "pass:pw",
            "-pubout",
            "-out",
            s(&public),
        ]));
        let prefix = root.join(format!("{name}.prov"));
        let mut sign = vec![
            "sign",
            "--key",
            s(&path),
            "--statement",
            s(&statement),
            "--out",
            s(&prefix),
        ];
        if encrypted {
            sign.extend(["--passphrase-file", s(&pw)]);
        }
        ok(&attestor(&sign));
        let prov = root.join(format!("{name}.prov.sigstore.json"));
        ok(&attestor(&[
            "verify",
            "--provenance",
            s(&prov),
            "--public-key",
            s(&public),
            "--artifact-digest",
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "--source-uri",
            "github.com/example/repo-a",
        ]));
        ok(&sigstore_js_verify(&prov, &public));
    }
}
