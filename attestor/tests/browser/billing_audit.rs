//! Usage & billing and the audit tracker in Chromium: a partner sees its
//! usage chart and an invoice (closed with the billing code in the setup)
//! and downloads it; a tenant and its auditor follow an engagement; the
//! auditor adds a note, signs out and is refused.

use super::harness::{Browser, env, scenario};
use cloister_attestor::billing::close::{CloseOptions, Closer, Outcome};
use cloister_attestor::billing::period::Period;
use cloister_attestor::clock::{Clock as _, SystemClock};
use cloister_attestor::evidence::Context;
use cloister_attestor::evidence::engagement::{self, OpenRequest, Opened};
use cloister_attestor_core::digest::Sha256Digest;
use fantoccini::Locator;

/// Closes this month early for one tenant with the attestor's billing
/// settings and key (as `billing close --early --tenant T` does); the
/// invoice's number.
async fn close_this_month(tenant_id: String) -> String {
    let e = env();
    let app = e.app.clone();
    e.on_server(async move {
        let signer = app.keyring.active_signer().unwrap();
        let closer = Closer {
            storage: app.storage.as_ref(),
            card: app.billing.api.card(),
            config: app.billing.api.config(),
            signer: signer.as_ref(),
        };
        let now = SystemClock.now_ms();
        let report = closer
            .run(
                &CloseOptions {
                    period: Period::of_ms(now).unwrap(),
                    tenant: Some(tenant_id),
                    dry_run: false,
                    early: true,
                },
                now,
                |_, _| {},
            )
            .await
            .unwrap();
        match &report.tenants[0].outcome {
            Outcome::Issued { number, .. } => number.clone(),
            other => panic!("not issued: {other:?}"),
        }
    })
    .await
}

/// A partner's usage chart and invoice: the chart has its bars, the
/// invoice its row, and both downloads are the API's files (the PDF
/// counted as one download).
#[tokio::test]
async fn see_the_usage_chart_and_an_invoice_and_download_it() {
    let e = env();
    let (tenant_id, key) = e.tenant("payer").await;
    // Two verifications, then the month closed early: an invoice.
    let body = serde_json::json!({
        "artifactDigest": crate::support::ARTIFACT,
        "sourceUri": "https://github.com/example/repo-a",
    });
    let client = crate::support::Client::new();
    for _ in 0..2 {
        let r = client
            .send(
                hyper::Method::POST,
                &format!("{}/v1/verify", e.base),
                &[
                    ("authorization".into(), format!("Bearer {key}")),
                    ("content-type".into(), "application/json".into()),
                ],
                serde_json::to_vec(&body).unwrap().into(),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let number = close_this_month(tenant_id).await;
    let api = |path: String| {
        let key = key.clone();
        async move {
            crate::support::Client::new()
                .send(
                    hyper::Method::GET,
                    &format!("{}{path}", env().base),
                    &[("authorization".into(), format!("Bearer {key}"))],
                    bytes::Bytes::new(),
                )
                .await
        }
    };
    scenario(
        "see_the_usage_chart_and_an_invoice_and_download_it",
        async |b: &mut Browser| {
            b.sign_in(&key).await;
            b.click("nav a[href='/portal/usage']", "usage").await;
            assert_eq!(b.text("main h1").await, "Usage & billing");
            assert_eq!(b.text("td[data-event='attestation.verify']").await, "2");
            assert!(b.count("#usage-chart rect.bar").await >= 1, "a bar");
            assert_eq!(
                b.text("td[data-price='attestation.verify']").await,
                "$0.005"
            );
            let row = format!("#invoices tr[data-invoice='{number}']");
            let text = b.text(&row).await;
            assert!(text.contains("Issued"), "{text}");
            assert!(text.contains("$0.01"), "2 × $0.005: {text}");
            assert!(
                b.text("#projection-heading")
                    .await
                    .contains("This period so far")
            );

            // The JSON: the signed invoice document, the API's bytes.
            b.click(&format!("{row} a.invoice-json"), "json").await;
            let json = b.downloaded(&format!("{number}.json")).await;
            assert_eq!(json, api(format!("/v1/invoices/{number}.json")).await.body);
            // The PDF: one more download in the usage.
            let (_, downloads) = b.usage().await;
            b.c.find(Locator::Css(&format!("{row} button.invoice-pdf")))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            let pdf = b.downloaded(&format!("{number}.pdf")).await;
            assert!(pdf.starts_with(b"%PDF-"));
            assert_eq!(b.usage().await.1, downloads + 1);
            let api_pdf = api(format!("/v1/invoices/{number}.pdf")).await.body;
            assert_eq!(pdf, api_pdf, "the same reproducible PDF");
        },
    )
    .await;
}

/// Opens an engagement for the seeded release tag (v1.2.3), for `tenant`.
async fn open_engagement(tenant: &str, auditor: &str) -> Opened {
    let e = env();
    let app = e.app.clone();
    let (tenant, auditor) = (tenant.to_owned(), auditor.to_owned());
    e.on_server(async move {
        let ctx = Context::load(
            &app.config,
            app.storage.clone(),
            &app.keyring,
            SystemClock.now_ms(),
            None,
        )
        .unwrap();
        engagement::open(
            &ctx,
            &OpenRequest {
                tag: "v1.2.3".into(),
                repo: Some("https://github.com/example/repo-a".into()),
                auditor,
                valid_for_ms: 7 * 86_400_000,
                actor: "operator:browser-test".into(),
                client_tenant: Some(tenant),
            },
        )
        .await
        .unwrap()
    })
    .await
}

/// A tenant follows its engagement (state, countdown, pack and its
/// digest); the auditor signs in with its key, sees the trust center and
/// its engagement but no billing, attaches a note, signs out and is
/// refused.
#[tokio::test]
async fn follow_an_audit_engagement_as_tenant_and_as_auditor() {
    let e = env();
    let (tenant_id, key) = e.tenant("audited").await;
    let opened = open_engagement(&tenant_id, "Ada Auditor").await;
    let id = opened.engagement.id.clone();
    scenario(
        "follow_an_audit_engagement_as_tenant_and_as_auditor",
        async |b: &mut Browser| {
            // The tenant.
            b.sign_in(&key).await;
            b.click("nav a[href='/portal/audit']", "audit-list").await;
            let row = format!("#engagements tr[data-engagement='{id}']");
            let text = b.text(&row).await;
            assert!(text.contains("v1.2.3") && text.contains("Evidence ready"), "{text}");
            assert!(text.contains("expires in 6 days 23 hours"), "{text}");
            b.click(&format!("{row} a.engagement"), "engagement").await;
            assert_eq!(b.path().await, format!("/portal/audit/{id}"));
            assert_eq!(b.text("#pack-sha256").await, opened.pack.sha256);
            assert_eq!(
                b.text("ol.track li[aria-current='step']").await,
                "Evidence ready"
            );
            assert_eq!(b.count("#note-form").await, 0, "tenants add no notes");
            b.click("#download-pack", "pack").await;
            let pack = b.downloaded(&format!("{id}-signoff.tar.gz")).await;
            assert_eq!(Sha256Digest::of(&pack).hex(), opened.pack.sha256);
            b.click("form.signout button", "tenant-out").await;

            // The auditor, with its clsa_ key.
            b.sign_in(&opened.key).await;
            assert!(b.text("header .who").await.contains("Ada Auditor (auditor)"));
            assert!(b.count("#repositories tr").await > 1, "the trust center");
            assert_eq!(b.count("nav a[href='/portal/usage']").await, 0);
            b.goto("/portal/usage").await;
            assert!(b.text("main").await.contains("Auditors have no usage or billing"));
            b.goto("/portal/audit").await;
            assert_eq!(b.count("#engagements tbody tr").await, 1);
            b.click(&format!("{row} a.engagement"), "auditor-engagement").await;
            b.fill("note", "Checked every envelope <b>offline</b>.").await;
            b.click("#note-form button[type=submit]", "noted").await;
            assert_eq!(b.path().await, format!("/portal/audit/{id}"));
            assert_eq!(
                b.text("#note-1 .note-body").await,
                "Checked every envelope <b>offline</b>."
            );
            assert_eq!(b.count("#note-1 b").await, 0, "the note is text");
            assert_eq!(b.text("ol.track li[aria-current='step']").await, "Notes");
            assert!(b.text("#log").await.contains("auditor:Ada Auditor"));
            // Labelled and narrow-screen friendly.
            b.c.set_window_size(320, 900).await.unwrap();
            b.goto(&format!("/portal/audit/{id}")).await;
            let widths = b
                .c
                .execute(
                    "return [document.documentElement.scrollWidth, document.documentElement.clientWidth, \
                     [...document.querySelectorAll('textarea, input:not([type=hidden])')]\
                     .filter(i => i.labels.length === 0).length]",
                    vec![],
                )
                .await
                .unwrap();
            assert!(widths[0].as_i64() <= widths[1].as_i64(), "{widths:?}");
            assert_eq!(widths[2].as_i64(), Some(0), "every field labelled");
            b.c.set_window_size(1280, 1000).await.unwrap();

            // Signed out, the auditor is refused everywhere.
            b.click("form.signout button", "auditor-out").await;
            for page in ["/portal/audit".to_owned(), format!("/portal/audit/{id}")] {
                b.goto(&page).await;
                assert_eq!(b.path().await, "/portal/signin", "{page}");
            }
        },
    )
    .await;
}
