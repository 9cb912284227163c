//! The invoice routes over real HTTP, on both backends: a tenant lists and
//! reads only its own invoices (another tenant's is a 404 like a missing
//! one); the JSON is the signed bytes, the `.dsse` its signature, and the
//! pair verifies with `billing verify` and the key from `/v1/keys`; the PDF
//! is the stored one, metered once per Idempotency-Key as `portal.download`;
//! a void invoice says so. Plus the CLIs' bad input and the file modes.

use super::*;
use crate::both_backends;
use crate::support::{Backend, TestServer, bin, issue_key};
use std::process::Command;

both_backends!(invoice_routes_are_tenant_scoped_signed_and_metered);

async fn invoice_routes_are_tenant_scoped_signed_and_metered(b: Backend) {
    let s = TestServer::start(b, |c| c.auth.cache_ttl_ms = 0).await;
    let st = s.storage();
    tenant(st.as_ref(), "tn_a", Plan::Pro, "2026-10-01T00:00:00Z").await;
    tenant(st.as_ref(), "tn_b", Plan::Starter, "2026-10-01T00:00:00Z").await;
    let key_a = issue_key(st.as_ref(), "tn_a").await;
    let key_b = issue_key(st.as_ref(), "tn_b").await;
    usage(st.as_ref(), "tn_a", V, 3, "2026-11-05T00:00:00Z").await;
    usage(st.as_ref(), "tn_b", V, 4, "2026-11-05T00:00:00Z").await;
    let r = close_at(
        st.as_ref(),
        &config_with(""),
        "2026-11",
        None,
        "2026-12-01T02:00:00Z",
        false,
    )
    .await;
    let (na, nb) = (issued(outcome(&r, "tn_a")), issued(outcome(&r, "tn_b")));
    let inv_a = st.billing().invoice_by_number(&na).await.unwrap().unwrap();

    let list = s.get("/v1/invoices", Some(&key_a)).await;
    assert_eq!(list.status, 200);
    let list = list.json();
    let invoices = list["invoices"].as_array().unwrap();
    assert_eq!(invoices.len(), 1);
    assert_eq!(invoices[0]["number"], na.as_str());
    assert_eq!(invoices[0]["totalMicros"], 20_000);
    assert_eq!(invoices[0]["status"], "finalized");
    assert_eq!(invoices[0]["sha256"], inv_a.sha256.as_deref().unwrap());

    // The JSON: exactly the signed bytes; with or without `.json`.
    for path in [
        format!("/v1/invoices/{na}"),
        format!("/v1/invoices/{na}.json"),
    ] {
        let r = s.get(&path, Some(&key_a)).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(r.headers["invoice-status"], "finalized");
        assert_eq!(&r.body[..], inv_a.document.as_deref().unwrap().as_bytes());
    }
    // Another tenant's invoice is not found, exactly like a missing one.
    for path in [
        format!("/v1/invoices/{nb}"),
        format!("/v1/invoices/{nb}.pdf"),
        format!("/v1/invoices/{nb}.dsse"),
        "/v1/invoices/CLO-2026-999999".to_owned(),
    ] {
        let r = s.get(&path, Some(&key_a)).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.code(), "invoice_not_found");
    }
    assert_eq!(s.get(&format!("/v1/invoices/{na}"), None).await.status, 401);

    // The signature verifies with the served key, through the CLI.
    let dir = s.db.dir.path();
    let json = dir.join(format!("{na}.json"));
    std::fs::write(
        &json,
        &s.get(&format!("/v1/invoices/{na}"), Some(&key_a))
            .await
            .body,
    )
    .unwrap();
    let env = s
        .get(&format!("/v1/invoices/{na}.dsse"), Some(&key_a))
        .await;
    assert_eq!(env.status, 200);
    std::fs::write(dir.join(format!("{na}.dsse")), &env.body).unwrap();
    let keys = s.get("/v1/keys", Some(&key_a)).await.json();
    let pem = dir.join("attestor.pub.pem");
    std::fs::write(&pem, keys["keys"][0]["publicKey"].as_str().unwrap()).unwrap();
    // The test closer signs with the test key; the served one is the
    // attestor's: that pair is refused, the right one verifies.
    let verify = |key: &std::path::Path, doc: &std::path::Path| {
        Command::new(bin())
            .args(["billing", "verify"])
            .arg(doc)
            .arg("--public-key")
            .arg(key)
            .arg("--json")
            .output()
            .unwrap()
    };
    let out = verify(&pem, &json);
    assert_eq!(
        out.status.code(),
        Some(1),
        "signed by the test key, not the attestor's"
    );
    let test_pem = dir.join("test.pub.pem");
    std::fs::write(&test_pem, signer().public_key().to_pem()).unwrap();
    let out = verify(&test_pem, &json);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["number"], na.as_str());
    let tampered = dir.join("tampered.json");
    std::fs::write(
        &tampered,
        std::fs::read_to_string(&json)
            .unwrap()
            .replace("20000", "20001"),
    )
    .unwrap();
    std::fs::copy(dir.join(format!("{na}.dsse")), dir.join("tampered.dsse")).unwrap();
    assert_eq!(verify(&test_pem, &tampered).status.code(), Some(1));
    assert_eq!(
        verify(&test_pem, &dir.join("missing.json")).status.code(),
        Some(2)
    );

    // The PDF: the stored bytes, metered once per Idempotency-Key.
    let pdf = st.billing().pdf(&inv_a.id).await.unwrap().unwrap();
    let auth = format!("Bearer {key_a}");
    let get_pdf = |idem: &'static str| {
        let auth = auth.clone();
        let url = format!("{}/v1/invoices/{na}.pdf", s.base);
        let c = s.client.clone();
        async move {
            c.send(
                hyper::Method::GET,
                &url,
                &[
                    ("authorization".to_owned(), auth),
                    ("idempotency-key".to_owned(), idem.to_owned()),
                ],
                bytes::Bytes::new(),
            )
            .await
        }
    };
    let r = get_pdf("pdf-1").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/pdf");
    assert_eq!(&r.body[..], &pdf[..]);
    assert_eq!(s.count(&key_a, D).await, 1);
    let r = get_pdf("pdf-1").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["idempotent-replayed"], "true");
    assert_eq!(&r.body[..], &pdf[..]);
    assert_eq!(s.count(&key_a, D).await, 1, "a retry is counted once");
    get_pdf("pdf-2").await;
    assert_eq!(s.count(&key_a, D).await, 2);
    assert_eq!(s.count(&key_b, D).await, 0);

    // Void: still readable, marked.
    st.billing()
        .void_invoice(&na, "duplicate", 5)
        .await
        .unwrap();
    let r = s.get(&format!("/v1/invoices/{na}"), Some(&key_a)).await;
    assert_eq!(r.headers["invoice-status"], "void");
    let list = s.get("/v1/invoices", Some(&key_a)).await.json();
    assert_eq!(list["invoices"][0]["status"], "void");
    assert_eq!(list["invoices"][0]["voidReason"], "duplicate");
}

fn run(state: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .env_remove("CLOISTER_ATTESTOR_CONFIG")
        .env_remove("CLOISTER_ATTESTOR_DATABASE_URL")
        .output()
        .unwrap()
}

fn stderr(o: &std::process::Output) -> String {
    assert!(
        !o.status.success(),
        "expected a failure: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(e.trim_end().lines().count(), 1, "one line: {e}");
    e
}

/// Bad input to the CLIs: a clear one-line error and nothing changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_bad_input_is_a_clear_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("state");
    assert!(
        run(&st, &["tenants", "create", "acme", "--plan", "Pro"])
            .status
            .success()
    );
    assert!(
        run(&st, &["tenants", "create", "small", "--plan", "Starter"])
            .status
            .success()
    );
    // Unknown plan.
    let e = String::from_utf8_lossy(&run(&st, &["billing", "set-plan", "acme", "Gold"]).stderr)
        .into_owned();
    assert!(e.contains("invalid value 'Gold'"), "{e}");
    // Malformed periods.
    for p in ["2026-13", "26-11", "November"] {
        let e = stderr(&run(&st, &["billing", "close", "--period", p]));
        assert!(e.contains("is not YYYY-MM"), "{p}: {e}");
    }
    // A period that has not ended, without --early.
    let e = stderr(&run(&st, &["billing", "close", "--period", "2999-01"]));
    assert!(
        e.contains("has not started") || e.contains("--early"),
        "{e}"
    );
    let e = stderr(&run(
        &st,
        &[
            "billing", "close", "--period", "2026-11", "--tenant", "nobody",
        ],
    ));
    assert!(e.contains("no tenant \"nobody\""), "{e}");
    // Nothing was closed by any of that.
    let url = format!("sqlite://{}", st.join("attestor.db").display());
    let s = cloister_attestor::storage::open(&url).await.unwrap();
    assert!(
        s.billing()
            .closes("2026-11", None)
            .await
            .unwrap()
            .is_empty()
    );
    let acme = s.find_tenant("acme").await.unwrap().unwrap();
    // A draft (its close exists, its finalization never ran): void refused.
    let opened = s
        .billing()
        .open_closes(
            &[cloister_attestor::storage::billing::CloseSpec {
                tenant_id: acme.id.clone(),
                period: "2026-10".into(),
                month_start_ms: ms("2026-10-01T00:00:00Z"),
                end_ms: ms("2026-11-01T00:00:00Z"),
                early: false,
            }],
            1,
        )
        .await
        .unwrap();
    let cloister_attestor::storage::billing::CloseOpened::New(close) = &opened[0] else {
        panic!("{opened:?}")
    };
    s.billing()
        .upsert_draft(&cloister_attestor::storage::billing::NewDraft {
            id: "inv_draft1".into(),
            tenant_id: acme.id.clone(),
            close_id: close.id,
            period: "2026-10".into(),
            draft: "{}".into(),
            total_micros: 1,
            created_at_ms: 1,
        })
        .await
        .unwrap();
    s.close().await;
    let e = stderr(&run(
        &st,
        &["billing", "void", "inv_draft1", "--reason", "x"],
    ));
    assert!(
        e.contains("is a draft: only an issued invoice can be voided"),
        "{e}"
    );
    let e = stderr(&run(
        &st,
        &["billing", "void", "CLO-2026-000404", "--reason", "x"],
    ));
    assert!(e.contains("not found"), "{e}");
    let e = stderr(&run(&st, &["billing", "show", "CLO-2026-000404"]));
    assert!(e.contains("no invoice CLO-2026-000404"), "{e}");
    // Replay of nothing, bad times, bad URLs, a plan without webhooks.
    let e = stderr(&run(&st, &["webhooks", "replay", "--since", "2026-01-01"]));
    assert!(e.contains("nothing to replay"), "{e}");
    let e = stderr(&run(
        &st,
        &["webhooks", "replay", "--since", "last tuesday"],
    ));
    assert!(e.contains("is not RFC 3339"), "{e}");
    let e = stderr(&run(
        &st,
        &["webhooks", "add", "acme", "ftp://example.com/x"],
    ));
    assert!(e.contains("the scheme must be http or https"), "{e}");
    let e = stderr(&run(
        &st,
        &["webhooks", "add", "small", "https://example.com/x"],
    ));
    assert!(e.contains("does not include webhooks"), "{e}");
    let s = cloister_attestor::storage::open(&url).await.unwrap();
    assert!(s.billing().endpoints(None).await.unwrap().is_empty());
    let drafts = s
        .billing()
        .invoices(&cloister_attestor::storage::billing::InvoiceFilter {
            include_drafts: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(drafts.len(), 1);
    assert_eq!(
        drafts[0].status,
        cloister_attestor::storage::billing::InvoiceStatus::Draft
    );
    s.close().await;
    // A good endpoint: its secret shown once, last line; never listed.
    let out = run(
        &st,
        &["webhooks", "add", "acme", "https://example.com/hooks"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let list = run(&st, &["webhooks", "list", "--json"]);
    assert!(!String::from_utf8_lossy(&list.stdout).contains(&secret));
    assert!(!String::from_utf8_lossy(&list.stdout).contains("whsec_"));
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(listed[0]["url"], "https://example.com/hooks");
    assert_eq!(listed[0]["enabled"], true);
    // The read-only commands answer JSON on an empty outbox and ledger.
    for args in [
        &["webhooks", "failed", "--json"][..],
        &["webhooks", "log", "--json"][..],
        &["billing", "invoices", "--json"][..],
    ] {
        let out = run(&st, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "[]",
            "{args:?}"
        );
    }
    let drafts = run(&st, &["billing", "invoices", "--drafts", "--json"]);
    let drafts: serde_json::Value = serde_json::from_slice(&drafts.stdout).unwrap();
    assert_eq!(drafts[0]["status"], "draft");
    let card = run(&st, &["billing", "price-card"]);
    let card: serde_json::Value = serde_json::from_slice(&card.stdout).unwrap();
    assert_eq!(
        card["plans"]["Enterprise"]["events"]["attestation.verify"]["unit_price_micros"],
        2500
    );
}

/// Whatever the umask, the state directory is 0700 and the database files
/// 0600 (they hold webhook secrets), also when an older run left them open.
#[test]
fn state_dir_and_database_files_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("state");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let sh = |cmd: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("umask 000; exec \"$0\" {cmd} --state-dir \"$1\""))
            .arg(bin())
            .arg(&st)
            .env_remove("CLOISTER_ATTESTOR_CONFIG")
            .env_remove("CLOISTER_ATTESTOR_DATABASE_URL")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sh("tenants create acme --plan Pro");
    assert_eq!(mode(&st), 0o700);
    let db = st.join("attestor.db");
    assert_eq!(mode(&db), 0o600);
    for f in ["attestor.db-wal", "attestor.db-shm"] {
        let p = st.join(f);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{f}");
        }
    }
    // Loosened by hand (or by an older version): tightened again.
    std::fs::set_permissions(&st, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    sh("billing close --period 2026-11");
    assert_eq!(mode(&st), 0o700);
    assert_eq!(mode(&db), 0o600);
}
