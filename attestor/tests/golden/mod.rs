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
