//! Invoice PDFs as other tools read them: poppler's `pdftotext` and
//! `pypdf` find the number, the lines and the total in the text, pypdf finds
//! the invoice JSON attached byte for byte; and the PDF is the same bytes
//! when rendered by another process (the CLI) and by this one.

use super::golden::issue_golden;
use super::*;
use crate::support::{Backend, TestDb, bin};
use cloister_attestor::billing::document::InvoiceDocument;
use cloister_attestor::billing::pdf as render;
use std::process::Command;

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The golden fixture's PDF, read by pdftotext and pypdf.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pdf_text_and_attachment_as_external_tools_read_them() {
    let db = TestDb::new(Backend::Sqlite).await;
    let s = db.open().await;
    let number = issue_golden(s.as_ref()).await;
    let inv = s
        .billing()
        .invoice_by_number(&number)
        .await
        .unwrap()
        .unwrap();
    let pdf = s.billing().pdf(&inv.id).await.unwrap().unwrap();
    let path = db.dir.path().join("invoice.pdf");
    std::fs::write(&path, &pdf).unwrap();

    let text = ok(Command::new("pdftotext")
        .args(["-layout"])
        .arg(&path)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils, .ci/setup.d/60-billing.sh)"));
    for needle in [
        "INVOICE",
        "CLO-2026-000001",
        "Cloister Test Seller Ltd",
        "golden",
        "tn_golden",
        "attestation.verify (Starter plan)",
        "attestation.verify (Pro plan)",
        "portal.download (Starter plan)",
        "1234",
        "5001",
        "12.34",
        "24.76",
        "37.10 USD",
        "half away from zero",
        inv.sha256.as_deref().unwrap(),
    ] {
        assert!(text.contains(needle), "pdftotext lacks {needle:?}:\n{text}");
    }

    let script = r#"
import sys, json
from pypdf import PdfReader
r = PdfReader(sys.argv[1])
text = "\n".join(p.extract_text() for p in r.pages)
att = r.attachments
print(json.dumps({"text": text, "attachments": {k: [v.decode() for v in vs] for k, vs in att.items()},
                  "pages": len(r.pages)}))
"#;
    let out = ok(Command::new(billing_python())
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .unwrap());
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let text = v["text"].as_str().unwrap();
    assert!(text.contains("CLO-2026-000001"), "{text}");
    assert!(text.contains("37.10"), "{text}");
    assert_eq!(
        v["attachments"]["invoice.json"][0].as_str().unwrap(),
        inv.document.as_deref().unwrap(),
        "the attached JSON is the signed document"
    );
    assert_eq!(v["pages"], 1);
    s.close().await;
}

/// Closing through the CLI (another process renders and stores the PDF),
/// then rendering here from the stored JSON: the same bytes. The CLI's
/// `show --pdf` writes them too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pdf_bytes_are_the_same_in_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("state");
    let run = |args: &[&str]| {
        Command::new(bin())
            .args(args)
            .arg("--state-dir")
            .arg(&st)
            .env_remove("CLOISTER_ATTESTOR_CONFIG")
            .env_remove("CLOISTER_ATTESTOR_DATABASE_URL")
            .output()
            .unwrap()
    };
    ok(run(&["tenants", "create", "acme", "--plan", "Pro"]));
    let url = format!("sqlite://{}", st.join("attestor.db").display());
    let s = cloister_attestor::storage::open(&url).await.unwrap();
    let t = s.find_tenant("acme").await.unwrap().unwrap();
    let now = cloister_attestor::clock::Clock::now_ms(&cloister_attestor::clock::SystemClock);
    usage_at_ms(s.as_ref(), &t.id, V, 3, now - 5).await;
    s.close().await;
    let month = Period::of_ms(now).unwrap().to_string();
    let report: serde_json::Value = serde_json::from_str(&ok(run(&[
        "billing", "close", "--period", &month, "--early", "--json",
    ])))
    .unwrap();
    let number = report["tenants"][0]["number"].as_str().unwrap().to_owned();
    let out = dir.path().join("cli.pdf");
    ok(run(&[
        "billing",
        "show",
        &number,
        "--pdf",
        out.to_str().unwrap(),
    ]));
    let from_cli = std::fs::read(&out).unwrap();

    let s = cloister_attestor::storage::open(&url).await.unwrap();
    let inv = s
        .billing()
        .invoice_by_number(&number)
        .await
        .unwrap()
        .unwrap();
    let json = inv.document.clone().unwrap();
    let doc = InvoiceDocument::parse_canonical(json.as_bytes()).unwrap();
    let here = render::render(&doc, json.as_bytes()).unwrap();
    assert_eq!(here, from_cli, "the PDF differs between processes");
    assert_eq!(here, render::render(&doc, json.as_bytes()).unwrap());
    s.close().await;
}
