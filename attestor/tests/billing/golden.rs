//! Golden invoice: a fixed usage fixture (a plan change mid-month, included
//! units, a zero-priced event, a half-cent rounding) rated and issued into
//! JSON and PDF that must equal `tests/golden/invoice.json` and
//! `tests/golden/invoice.pdf` byte for byte, on both backends
//! (CLOISTER_UPDATE_GOLDEN=1 regenerates; review the diff). The signature
//! verifies, and any change to the document breaks it.

use super::*;
use crate::both_backends;
use crate::support::{Backend, TestDb};
use cloister_attestor::billing::document;
use cloister_attestor::billing::pdf;

both_backends!(golden_invoice_json_and_pdf);

pub const GOLDEN_PLANS: &str = "[Pro]\nfeatures = [\"portal_downloads\", \"webhooks\"]\n\
[Pro.events.\"attestation.verify\"]\nunit_price_micros = 5000\nincluded_units = 100\n\
[Pro.events.\"portal.download\"]\nunit_price_micros = 0\n";

/// Seeds the fixture into `s` and issues its invoice; returns the number.
pub async fn issue_golden(s: &dyn Storage) -> String {
    tenant(s, "tn_golden", Plan::Starter, "2026-10-01T00:00:00Z").await;
    s.billing()
        .change_plan("tn_golden", "Pro", ms("2026-11-16T00:00:00Z"))
        .await
        .unwrap();
    usage(s, "tn_golden", V, 1234, "2026-11-03T08:00:00Z").await;
    usage(s, "tn_golden", D, 7, "2026-11-04T08:00:00Z").await;
    usage(s, "tn_golden", V, 5001, "2026-11-20T08:00:00Z").await;
    let r = close_at(
        s,
        &config_with(GOLDEN_PLANS),
        "2026-11",
        None,
        "2026-12-01T09:30:00Z",
        false,
    )
    .await;
    issued(outcome(&r, "tn_golden"))
}

fn golden_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Compares `actual` with the golden file (or writes it when updating).
pub fn check_golden(name: &str, actual: &[u8]) {
    let path = golden_path(name);
    if std::env::var_os("CLOISTER_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read(&path).unwrap_or_default();
    assert!(
        actual == expected.as_slice(),
        "{} differs from {} ({} vs {} bytes; CLOISTER_UPDATE_GOLDEN=1 regenerates)",
        name,
        path.display(),
        actual.len(),
        expected.len()
    );
}

async fn golden_invoice_json_and_pdf(b: Backend) {
    let db = TestDb::new(b).await;
    let s = db.open().await;
    let number = issue_golden(s.as_ref()).await;
    assert_eq!(number, "CLO-2026-000001");
    let inv = s
        .billing()
        .invoice_by_number(&number)
        .await
        .unwrap()
        .unwrap();
    let json = inv.document.clone().unwrap();
    // Both backends write the same bytes; the golden file holds them.
    check_golden("invoice.json", json.as_bytes());
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["totalMicros"], 37_100_000);
    assert_eq!(doc["customer"]["plan"], "Pro");
    assert_eq!(doc["lines"][2]["includedUnits"], 50);
    // The stored PDF (rendered by the close) is the golden one.
    let stored = s.billing().pdf(&inv.id).await.unwrap().unwrap();
    check_golden("invoice.pdf", &stored);
    // Rendering again gives the same bytes.
    let parsed = document::InvoiceDocument::parse_canonical(json.as_bytes()).unwrap();
    assert_eq!(pdf::render(&parsed, json.as_bytes()).unwrap(), stored);
    assert!(stored.starts_with(b"%PDF-1.7"), "PDF/A-3 is PDF 1.7");
    // The signature: over the document's sha256, with its own payload type.
    let env = inv.envelope.clone().unwrap();
    assert!(env.contains(document::DIGEST_PAYLOAD_TYPE));
    let key = signer().public_key().clone();
    let v = document::verify(json.as_bytes(), env.as_bytes(), std::slice::from_ref(&key)).unwrap();
    assert_eq!(v.number, number);
    assert_eq!(v.sha256, inv.sha256.clone().unwrap());
    // One changed byte, another key, or another payload type: refused.
    let tampered = json.replacen("37100000", "37100001", 1);
    assert!(
        document::verify(
            tampered.as_bytes(),
            env.as_bytes(),
            std::slice::from_ref(&key)
        )
        .is_err()
    );
    let other = KeyPair::generate(Algorithm::EcdsaP256).unwrap();
    assert!(
        document::verify(
            json.as_bytes(),
            env.as_bytes(),
            &[other.public_key().clone()]
        )
        .is_err()
    );
    let wrong_type = env.replace(
        document::DIGEST_PAYLOAD_TYPE,
        "application/vnd.in-toto+json",
    );
    assert!(document::verify(json.as_bytes(), wrong_type.as_bytes(), &[key]).is_err());
    s.close().await;
}
