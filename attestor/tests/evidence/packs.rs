//! The packs: byte-identical across runs and processes for the same
//! inputs, listed and re-created identically by GNU tar, every tampering
//! case detected by `pack verify` with its reason (an edited appendix
//! reported and accepted), the envelopes verified by securesystemslib, and
//! `attestations import` all or nothing.

use super::{context, default_digests, open, sign_shipped_policies, signed_record};
use crate::support::{REPO, TestServer, bin};
use cloister_attestor::evidence::archive;
use cloister_attestor::evidence::engagement;
use cloister_attestor::evidence::manifest::{self, Manifest};
use cloister_attestor::evidence::signoff::{self, SignoffData};
use cloister_attestor_core::digest::Sha256Digest;
use cloister_attestor_core::keys::{Algorithm, KeyPair};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn interop_python() -> String {
    std::env::var("CLOISTER_INTEROP_PYTHON").unwrap_or_else(|_| {
        panic!(
            "CLOISTER_INTEROP_PYTHON is not set: source .ci/setup.d/30-interop.sh (it installs securesystemslib)"
        )
    })
}

/// Extracts `pack` with GNU tar into a fresh directory under `dir`.
fn extract(pack: &Path, dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(name);
    std::fs::create_dir_all(&out).unwrap();
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(pack)
        .arg("-C")
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    out
}

/// securesystemslib's verdict on an extracted pack (the pack's own script).
fn sslib(root: &Path, public: &Path) -> Output {
    Command::new(interop_python())
        .arg(root.join("tools/verify_pack.py"))
        .arg(root)
        .arg(public)
        .output()
        .expect("run the interop python")
}

/// GNU tar lists the pack with numeric owners 0/0, the fixed date, and
/// re-creates exactly its uncompressed bytes from the extracted tree with
/// the snapshot format's flags.
fn check_with_gnu_tar(pack: &Path, dir: &Path, mtime: i64) {
    let listing = Command::new("tar")
        .args(["--numeric-owner", "--full-time", "-tvzf"])
        .arg(pack)
        .output()
        .unwrap();
    assert!(listing.status.success());
    let listing = String::from_utf8(listing.stdout).unwrap();
    let date = time::OffsetDateTime::from_unix_timestamp(mtime).unwrap();
    let day = format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    );
    let bytes = std::fs::read(pack).unwrap();
    let files = archive::read(&bytes).unwrap();
    let mut names = Vec::new();
    for line in listing.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[1], "0/0", "{line}");
        assert!(cols[0] == "-rw-r--r--" || cols[0] == "drwxr-xr-x", "{line}");
        assert_eq!(cols[3], day, "{line}");
        if cols[0].starts_with('-') {
            names.push(cols[5].trim_start_matches("./").to_owned());
        }
    }
    let mut expected: Vec<String> = files.keys().cloned().collect();
    expected.sort_by(|a, b| {
        a.split('/')
            .collect::<Vec<_>>()
            .cmp(&b.split('/').collect::<Vec<_>>())
    });
    assert_eq!(names, expected);
    let tree = extract(pack, dir, "gnu-tree");
    let gnu = Command::new("tar")
        .args([
            "--format=gnu",
            "--sort=name",
            &format!("--mtime=@{mtime}"),
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mode=go-rwx,u+rwX,go=u,go-w",
            "-cf",
            "-",
            ".",
        ])
        .current_dir(&tree)
        .output()
        .unwrap();
    assert!(gnu.status.success());
    let mut ours = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::MultiGzDecoder::new(bytes.as_slice()),
        &mut ours,
    )
    .unwrap();
    assert!(gnu.stdout == ours, "GNU tar re-creates other bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signoff_packs_are_deterministic_and_verify_with_securesystemslib() {
    let s = TestServer::start(crate::support::Backend::Sqlite, |c| {
        c.key_algorithm = Algorithm::Ed25519;
        c.policy.manifest = Some(sign_shipped_policies(&c.state_dir, Algorithm::Ed25519));
        c.policy.profiles_dir = Some(super::profiles_dir());
    })
    .await;
    for c in ['a', 'b', 'c'] {
        s.sign(&signed_record(REPO, "v1.4.0", &super::digest_of(c)))
            .await;
    }
    let epoch = 1_767_225_600; // 2026-01-01T00:00:00Z
    let ctx = context(&s, 5_000, Some(epoch));
    let opened = open(&ctx, "v1.4.0", "Jane").await;
    let id = &opened.engagement.id;
    let storage = s.storage();
    // The same inputs, built twice: the same bytes (Ed25519 signs
    // deterministically; SOURCE_DATE_EPOCH fixes the date and leaves the
    // measured time out).
    let data = SignoffData {
        engagement: storage.engagement(id).await.unwrap().unwrap(),
        rows: storage.engagement_attestations(id).await.unwrap(),
        index: storage
            .indexed_by_ref("refs/tags/v1.4.0", None)
            .await
            .unwrap(),
        notes: storage.notes(id).await.unwrap(),
        log: storage.engagement_log(id).await.unwrap(),
        coverage: engagement::coverage(&ctx).await.unwrap(),
    };
    let one = signoff::build(&ctx, &data, std::time::Instant::now()).unwrap();
    let two = signoff::build(&ctx, &data, std::time::Instant::now()).unwrap();
    assert!(one.bytes == two.bytes);
    assert_eq!(one.sha256, two.sha256);
    let files = archive::read(&one.bytes).unwrap();
    let info: serde_json::Value = serde_json::from_slice(&files["pack.json"]).unwrap();
    assert_eq!(info["generatedAt"], "2026-01-01T00:00:00Z");
    assert!(info.get("timeToPackMs").is_none());
    // Measured when not reproducing: the stored pack records it.
    let live = context(&s, 5_000, None);
    let measured = signoff::build(&live, &data, std::time::Instant::now()).unwrap();
    let info: serde_json::Value =
        serde_json::from_slice(&archive::read(&measured.bytes).unwrap()["pack.json"]).unwrap();
    assert!(info["timeToPackMs"].is_i64());
    for f in [
        "README.md",
        "engagement.json",
        "verification/results.json",
        "builders.json",
        "keys/keys.json",
        "policies/manifest.dsse.json",
        "policies/verification.json",
        "policies/default.json",
        "notes.json",
        "decisions-log.json",
        "tools/verify_pack.py",
    ] {
        assert!(files.contains_key(f), "{f} missing");
    }
    let results: serde_json::Value =
        serde_json::from_slice(&files["verification/results.json"]).unwrap();
    assert_eq!(results["verified"], 3);
    let builders: serde_json::Value = serde_json::from_slice(&files["builders.json"]).unwrap();
    assert_eq!(builders[0]["runnerVersions"][0], "0.1.0");
    let keys: serde_json::Value = serde_json::from_slice(&files["keys/keys.json"]).unwrap();
    assert_eq!(keys[0]["keyid"], ctx.signer.keyid());
    assert!(keys[0]["validFrom"].is_string());

    // The stored pack on disk: GNU tar, `pack verify`, securesystemslib.
    let dir = tempfile::tempdir().unwrap();
    let pack = dir.path().join("signoff.tar.gz");
    let stored = engagement::pack(storage.as_ref(), id).await.unwrap();
    std::fs::write(&pack, stored.content.unwrap()).unwrap();
    check_with_gnu_tar(&pack, dir.path(), epoch);
    let public = dir.path().join("attestor.pub.pem");
    std::fs::write(&public, ctx.trusted[0].to_pem()).unwrap();
    let out = Command::new(bin())
        .args(["pack", "verify"])
        .arg(&pack)
        .arg("--public-key")
        .arg(&public)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let root = extract(&pack, dir.path(), "sslib");
    let out = sslib(&root, &public);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("OK manifest"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 provenance envelope(s)"));
    // securesystemslib refuses a changed provenance envelope too.
    let env = root
        .join("attestations")
        .join(format!("{}.intoto.jsonl", data.rows[0].id));
    let mut e: serde_json::Value = serde_json::from_slice(&std::fs::read(&env).unwrap()).unwrap();
    e["payload"] = serde_json::Value::String(e["payload"].as_str().unwrap().replacen('e', "f", 1));
    std::fs::write(&env, format!("{e}\n")).unwrap();
    let out = sslib(&root, &public);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("FAILED"));
    // With ECDSA (randomized signatures) only the manifest's signature differs.
    let ecdsa = KeyPair::generate(Algorithm::EcdsaP256).unwrap();
    let mut ctx_ecdsa = context(&s, 5_000, Some(epoch));
    ctx_ecdsa.signer = std::sync::Arc::new(ecdsa);
    let a = archive::read(
        &signoff::build(&ctx_ecdsa, &data, std::time::Instant::now())
            .unwrap()
            .bytes,
    )
    .unwrap();
    let b = archive::read(
        &signoff::build(&ctx_ecdsa, &data, std::time::Instant::now())
            .unwrap()
            .bytes,
    )
    .unwrap();
    let differing: Vec<&String> = a.keys().filter(|k| a[*k] != b[*k]).collect();
    assert!(
        differing
            .iter()
            .all(|k| k.as_str() == manifest::MANIFEST_DSSE),
        "{differing:?}"
    );
}

fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin());
    c.args(args)
        .env_remove("CLOISTER_ATTESTOR_STATE_DIR")
        .env_remove("CLOISTER_ATTESTOR_CONFIG")
        .env_remove("CLOISTER_ATTESTOR_DATABASE_URL")
        .env_remove("SOURCE_DATE_EPOCH");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Rewrites a pack: `edit` changes the files; the manifest stays as it was
/// unless `reseal` signs a new one with that key.
fn rewrite(
    pack: &[u8],
    edit: impl FnOnce(&mut BTreeMap<String, Vec<u8>>),
    reseal: Option<&KeyPair>,
) -> Vec<u8> {
    let mut files = archive::read(pack).unwrap();
    edit(&mut files);
    if let Some(key) = reseal {
        let old = Manifest::parse(&files[manifest::MANIFEST]).unwrap();
        files.remove(manifest::MANIFEST);
        files.remove(manifest::MANIFEST_DSSE);
        let m = Manifest::of(
            &old.kind,
            &old.version,
            &old.subject,
            &old.generated_at,
            &files,
        )
        .unwrap();
        manifest::seal(&mut files, &m, key).unwrap();
    }
    archive::write(&files, 0).unwrap()
}

/// `pack verify --json` on bytes: (exit code, the finding codes with their paths).
fn verify_pack(dir: &Path, bytes: &[u8], public: &Path) -> (i32, Vec<(String, String)>) {
    let path = dir.join("candidate.tar.gz");
    std::fs::write(&path, bytes).unwrap();
    let out = run(
        &[
            "pack",
            "verify",
            path.to_str().unwrap(),
            "--public-key",
            public.to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let findings = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["code"].as_str().unwrap().to_owned(),
                f["path"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    (out.status.code().unwrap(), findings)
}

/// A statement of `repo` under the default policies, signed with the
/// keyring in `st` by `cloister-attestor sign`: its `.intoto.jsonl` line.
fn signed_line(dir: &Path, st: &Path, name: &str, repo: &str) -> String {
    let mut statement: serde_json::Value =
        serde_json::from_str(include_str!("../../core/tests/golden/statement.json")).unwrap();
    let (profile, seccomp) = default_digests();
    let bd = &mut statement["predicate"]["buildDefinition"];
    bd["internalParameters"]["isolation"]["profile"] = profile.into();
    bd["internalParameters"]["isolation"]["seccompPolicy"] = seccomp.into();
    bd["externalParameters"]["source"]["uri"] = format!("git+{repo}").into();
    bd["resolvedDependencies"][0]["uri"] = format!("git+{repo}@refs/tags/v1.0.0").into();
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, statement.to_string()).unwrap();
    let prefix = dir.join(name);
    ok(run(
        &[
            "sign",
            "--state-dir",
            st.to_str().unwrap(),
            "--statement",
            path.to_str().unwrap(),
            "--out",
            prefix.to_str().unwrap(),
        ],
        &[],
    ));
    std::fs::read_to_string(dir.join(format!("{name}.intoto.jsonl"))).unwrap()
}

#[test]
fn procurement_packs_are_reproducible_checkable_and_tamper_evident() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let st = d.join("state");
    let manifest = sign_shipped_policies(&st, Algorithm::Ed25519);
    let config = d.join("attestor.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {:?}\n[policy]\nmanifest = {:?}\nprofiles_dir = {:?}\n",
            st,
            manifest,
            super::profiles_dir()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let public = d.join("attestor.pub.pem");
    std::fs::write(
        &public,
        ok(run(
            &["keys", "export", "--state-dir", st.to_str().unwrap()],
            &[],
        )),
    )
    .unwrap();

    // Import: two repositories' provenance, signed offline with the key.
    let a = signed_line(d, &st, "a", "https://github.com/example/repo-a");
    let b = signed_line(d, &st, "b", "https://github.com/example/repo-b");
    let stranger_dir = d.join("stranger");
    sign_shipped_policies(&stranger_dir, Algorithm::EcdsaP256);
    let foreign = signed_line(d, &stranger_dir, "c", "https://github.com/example/repo-c");
    let mixed = d.join("mixed.intoto.jsonl");
    std::fs::write(&mixed, format!("{a}{foreign}{b}")).unwrap();
    let out = run(
        &[
            "attestations",
            "import",
            mixed.to_str().unwrap(),
            "--config",
            cfg,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2") && err.contains("untrusted_key"),
        "{err}"
    );
    let good = d.join("good.intoto.jsonl");
    std::fs::write(&good, format!("{a}{b}")).unwrap();
    let out = ok(run(
        &[
            "attestations",
            "import",
            good.to_str().unwrap(),
            "--config",
            cfg,
            "--json",
        ],
        &[],
    ));
    let imported: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    // Nothing of the refused file was added before: exactly the two now.
    assert_eq!(imported["added"].as_array().unwrap().len(), 2, "{imported}");
    let again: serde_json::Value = serde_json::from_str(
        ok(run(
            &[
                "attestations",
                "import",
                good.to_str().unwrap(),
                "--config",
                cfg,
                "--json",
            ],
            &[],
        ))
        .trim(),
    )
    .unwrap();
    assert_eq!(again["added"].as_array().unwrap().len(), 0);
    assert_eq!(again["alreadyPresent"].as_array().unwrap().len(), 2);

    // Two processes, same inputs, SOURCE_DATE_EPOCH: the same bytes.
    let build = |name: &str, envs: &[(&str, &str)]| {
        let out_path = d.join(name);
        let stdout = ok(run(
            &[
                "pack",
                "procurement",
                "--out",
                out_path.to_str().unwrap(),
                "--for",
                "Acme Corp",
                "--config",
                cfg,
            ],
            envs,
        ));
        let printed = stdout.lines().last().unwrap().to_owned();
        let bytes = std::fs::read(&out_path).unwrap();
        assert_eq!(
            printed,
            Sha256Digest::of(&bytes).hex(),
            "the bundle hash is printed last"
        );
        bytes
    };
    let epoch = [("SOURCE_DATE_EPOCH", "1767225600")];
    let p1 = build("p1.tar.gz", &epoch);
    let p2 = build("p2.tar.gz", &epoch);
    assert!(p1 == p2, "two runs gave different packs");
    let measured = build("p3.tar.gz", &[]);
    let info: serde_json::Value =
        serde_json::from_slice(&archive::read(&measured).unwrap()["pack.json"]).unwrap();
    assert!(info["timeToPackMs"].is_i64(), "{info}");
    assert_eq!(info["subject"], "Acme Corp");
    check_with_gnu_tar(&d.join("p1.tar.gz"), d, 1_767_225_600);

    // Its contents: answers keyed by CAIQ v4 IDs in CSV and JSON, evidence
    // present, the newest provenance of both repositories.
    let files = archive::read(&p1).unwrap();
    let csv = String::from_utf8(files["caiq/answers.csv"].clone()).unwrap();
    assert!(csv.starts_with("question_id,domain,answer,answer_text,evidence\r\n"));
    assert!(csv.contains("\r\nCEK-12.1,"));
    let answers: serde_json::Value = serde_json::from_slice(&files["caiq/answers.json"]).unwrap();
    for a in answers.as_array().unwrap() {
        for ev in a["evidence"].as_array().unwrap() {
            let ev = ev.as_str().unwrap();
            assert!(
                files.contains_key(ev)
                    || ev.starts_with("MANIFEST")
                    || files.keys().any(|k| ev.ends_with('/') && k.starts_with(ev)),
                "{ev}"
            );
        }
    }
    let index: serde_json::Value = serde_json::from_slice(&files["provenance/index.json"]).unwrap();
    assert_eq!(index.as_array().unwrap().len(), 2);
    assert!(
        index
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["verified"] == true)
    );
    let edited = files.keys().filter(|k| manifest::is_appendix(k)).count();
    assert_eq!(edited, 2);
    // The store recorded the bundle hash.
    let db = format!("sqlite://{}", st.join("attestor.db").display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let recorded = rt.block_on(async {
        let s = cloister_attestor::storage::open(&db).await.unwrap();
        let p = s.pack(&Sha256Digest::of(&p1).hex()).await.unwrap();
        s.close().await;
        p
    });
    let recorded = recorded.expect("the pack's hash is in the store");
    assert_eq!(recorded.recipient.as_deref(), Some("Acme Corp"));
    assert!(recorded.content.is_none());

    // Untouched: passes.
    assert_eq!(verify_pack(d, &p1, &public), (0, vec![]));
    // An edited (and an added) appendix file: reported, accepted.
    let t = rewrite(
        &p1,
        |f| {
            f.insert("appendix/customer-notes.md".into(), b"our notes".to_vec());
            f.insert("appendix/extra.md".into(), b"more".to_vec());
        },
        None,
    );
    let (code, findings) = verify_pack(d, &t, &public);
    assert_eq!(code, 0, "{findings:?}");
    assert_eq!(
        findings,
        [
            (
                "appendix_edited".into(),
                "appendix/customer-notes.md".into()
            ),
            ("appendix_edited".into(), "appendix/extra.md".into())
        ]
    );
    // A changed core file.
    let t = rewrite(
        &p1,
        |f| drop(f.insert("README.md".into(), b"trust me".to_vec())),
        None,
    );
    assert_eq!(
        verify_pack(d, &t, &public),
        (1, vec![("file_modified".into(), "README.md".into())])
    );
    // A removed file.
    let t = rewrite(&p1, |f| drop(f.remove("slo/slo.json")), None);
    assert_eq!(
        verify_pack(d, &t, &public),
        (1, vec![("file_missing".into(), "slo/slo.json".into())])
    );
    // An added file.
    let t = rewrite(
        &p1,
        |f| drop(f.insert("keys/evil.pub.pem".into(), b"x".to_vec())),
        None,
    );
    assert_eq!(
        verify_pack(d, &t, &public),
        (
            1,
            vec![("file_unexpected".into(), "keys/evil.pub.pem".into())]
        )
    );
    // A swapped envelope: repo-b's provenance in repo-a's place (both valid).
    let envs: Vec<String> = files
        .keys()
        .filter(|k| k.ends_with(".intoto.jsonl"))
        .cloned()
        .collect();
    assert_eq!(envs.len(), 2);
    let t = rewrite(
        &p1,
        |f| {
            let other = f[&envs[1]].clone();
            f.insert(envs[0].clone(), other);
        },
        None,
    );
    assert_eq!(
        verify_pack(d, &t, &public),
        (1, vec![("file_modified".into(), envs[0].clone())])
    );
    // A manifest re-signed by another key after a change.
    let other = KeyPair::generate(Algorithm::Ed25519).unwrap();
    let t = rewrite(
        &p1,
        |f| drop(f.insert("README.md".into(), b"trust me".to_vec())),
        Some(&other),
    );
    assert_eq!(
        verify_pack(d, &t, &public),
        (
            1,
            vec![(
                "manifest_signature_invalid".into(),
                "MANIFEST.dsse.json".into()
            )]
        )
    );
    // MANIFEST.json edited under an intact signature.
    let t = rewrite(
        &p1,
        |f| {
            let m = f.get_mut(manifest::MANIFEST).unwrap();
            m.extend_from_slice(b"\n");
        },
        None,
    );
    assert_eq!(
        verify_pack(d, &t, &public).1,
        vec![("manifest_mismatch".to_string(), "MANIFEST.json".to_string())]
    );
    // Not a pack at all.
    assert_eq!(
        verify_pack(d, b"not a pack", &public).1[0].0,
        "archive_invalid"
    );
    // securesystemslib agrees on the untouched pack.
    let root = extract(&d.join("p1.tar.gz"), d, "sslib");
    let out = sslib(&root, &public);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
