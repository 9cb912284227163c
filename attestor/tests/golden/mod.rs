//! Golden files for the service's wire formats.

/// The OpenAPI document served at `/v1/openapi.json` equals the committed
/// `tests/golden/openapi.json` (regenerate with CLOISTER_UPDATE_GOLDEN=1 and
/// review the diff).
#[tokio::test]
async fn openapi_document_matches_golden() {
    let s = crate::support::TestServer::start(crate::support::Backend::Sqlite, |_| {}).await;
    let served = s.get("/v1/openapi.json", None).await;
    assert_eq!(served.status, 200);
    assert_eq!(served.headers["content-type"], "application/json");
    let actual = String::from_utf8(served.body.to_vec()).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/openapi.json");
    if std::env::var_os("CLOISTER_UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        actual == expected,
        "OpenAPI document differs from {path} (CLOISTER_UPDATE_GOLDEN=1 regenerates)"
    );
    let doc: serde_json::Value = serde_json::from_str(&actual).unwrap();
    for p in [
        "/v1/verify",
        "/v1/attestations",
        "/v1/usage",
        "/v1/keys",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} missing");
    }
    assert!(
        doc["paths"].get("/v1/sign").is_none(),
        "the signing socket is not part of the consumer API"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

/// Where the golden verdicts are.
fn golden_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Compares `actual` with a golden file (CLOISTER_UPDATE_GOLDEN=1 writes it).
fn check_golden(name: &str, actual: &str) {
    let path = golden_path(name);
    if std::env::var_os("CLOISTER_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "{name} differs from {} (CLOISTER_UPDATE_GOLDEN=1 regenerates):\n{actual}",
        path.display()
    );
}

/// The one verdict body, held by golden files in both places it is
/// printed: `POST /v1/verify` (compact) and `cloister-attestor verify
/// --json` (pretty, sorted keys), for the same two stored envelopes that
/// both fail (another repository; another tag). Both list every
/// envelope's reasons, and they are the same JSON value.
#[tokio::test]
async fn verdict_bodies_of_http_and_cli_match_golden() {
    use crate::support::{ARTIFACT, Backend, TestServer, build_record};
    let s = TestServer::start(Backend::Sqlite, |_| {}).await;
    let (_, key) = s.tenant("acme").await;
    // Stored newest first: the other tag is signed first, so it is
    // envelope 2 on both sides.
    // Each build its own job: signing is idempotent per invocation.
    let mut other_tag = build_record();
    other_tag["source"]["ref"] = "refs/tags/v1.0.0".into();
    other_tag["invocationId"] = "job-other-tag".into();
    let mut other_repo = build_record();
    other_repo["source"]["uri"] = "https://github.com/example/repo-b".into();
    other_repo["invocationId"] = "job-other-repo".into();
    let b = s.sign(&other_tag).await;
    let a = s.sign(&other_repo).await;

    let request = serde_json::json!({
        "artifactDigest": ARTIFACT,
        "sourceUri": "github.com/example/repo-a",
        "sourceTag": "v1.2.3",
    });
    let r = s.verify(&key, None, &request).await;
    assert_eq!(r.status, 200);
    let http = String::from_utf8(r.body.to_vec()).unwrap();
    check_golden("verify-two-failing-envelopes.http.json", &http);

    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("two.intoto.jsonl");
    std::fs::write(&jsonl, format!("{}\n{}\n", a["envelope"], b["envelope"])).unwrap();
    let keys = s.get("/v1/keys", Some(&key)).await.json();
    let pem = dir.path().join("public.pem");
    std::fs::write(&pem, keys["keys"][0]["publicKey"].as_str().unwrap()).unwrap();
    let out = std::process::Command::new(crate::support::bin())
        .env_remove("CLOISTER_ATTESTOR_STATE_DIR")
        .args(["verify", "--provenance"])
        .arg(&jsonl)
        .arg("--public-key")
        .arg(&pem)
        .args(["--artifact-digest", ARTIFACT])
        .args([
            "--source-uri",
            "github.com/example/repo-a",
            "--source-tag",
            "v1.2.3",
        ])
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "verification failed: exit 1");
    let cli = String::from_utf8(out.stdout).unwrap();
    check_golden("verify-two-failing-envelopes.cli.json", &cli);

    let http: serde_json::Value = serde_json::from_str(&http).unwrap();
    let cli: serde_json::Value = serde_json::from_str(&cli).unwrap();
    assert_eq!(http, cli, "one verdict body on both sides");
    let codes: Vec<&str> = http["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["source_uri_mismatch", "source_tag_mismatch"]);
}
