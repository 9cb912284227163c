//! The Usage & billing page, invoice downloads, the audit tracker and
//! auditor sign-in, over plain HTTP on both backends: status, security
//! headers, key content, CSRF refusals, cross-tenant 404s, and that the
//! figures are the billing code's (the projection equals the invoice the
//! same usage becomes; the downloads are the API's bytes).

use super::{Browser, assert_redirects_to_signin, csrf_of, escaped, get, post, post_signin, text};
use crate::both_backends;
use crate::support::{Backend, Resp, TestServer};
use cloister_attestor::billing::close::{CloseOptions, Closer, Outcome};
use cloister_attestor::billing::period::Period;
use cloister_attestor::clock::{Clock as _, ManualClock};
use cloister_attestor::evidence::engagement::{self, OpenRequest, Opened};
use cloister_attestor_core::digest::Sha256Digest;
use std::sync::Arc;

both_backends!(
    billing_page_shows_price_card_projection_and_invoices,
    invoice_downloads_are_the_apis_and_other_tenants_get_404,
    audit_tracker_shows_a_tenants_engagements_only,
    auditors_sign_in_follow_their_engagement_and_add_notes,
    expired_and_revoked_auditor_keys_are_refused,
);

/// 2026-11-10T12:00:00Z.
const NOV_10: i64 = 1_794_312_000_000;
const DAY: i64 = 86_400_000;

/// Every security header a portal response must carry.
fn assert_secure(r: &Resp, what: &str) {
    let h = |n: &str| {
        r.headers
            .get(n)
            .unwrap_or_else(|| panic!("{what} lacks {n}"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    let csp = h("content-security-policy");
    assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(!csp.contains("script-src"), "{what}: {csp}");
    assert_eq!(h("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(h("referrer-policy"), "same-origin", "{what}");
    assert_eq!(h("cache-control"), "no-store", "{what}");
}

/// Closes `period` (early when it has not ended) with the server's own
/// billing settings and key, as `billing close` does.
async fn close(s: &TestServer, period: &str, now_ms: i64, early: bool) -> Vec<Outcome> {
    let app = &s.running.as_ref().unwrap().app;
    let signer = app.keyring.active_signer().unwrap();
    let closer = Closer {
        storage: app.storage.as_ref(),
        card: app.billing.api.card(),
        config: app.billing.api.config(),
        signer: signer.as_ref(),
    };
    let report = closer
        .run(
            &CloseOptions {
                period: Period::parse(period).unwrap(),
                tenant: None,
                dry_run: false,
                early,
            },
            now_ms,
            |_, _| {},
        )
        .await
        .unwrap();
    report.tenants.into_iter().map(|t| t.outcome).collect()
}

/// The one invoice a close issued.
fn number(outcomes: &[Outcome]) -> (String, i64) {
    let issued: Vec<(String, i64)> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Issued {
                number,
                total_micros,
                ..
            } => Some((number.clone(), *total_micros)),
            _ => None,
        })
        .collect();
    assert_eq!(issued.len(), 1, "{outcomes:?}");
    issued[0].clone()
}

async fn verify_n(s: &TestServer, key: &str, n: usize) {
    let body = serde_json::json!({
        "artifactDigest": crate::support::ARTIFACT,
        "sourceUri": crate::support::REPO,
    });
    for _ in 0..n {
        assert_eq!(s.verify(key, None, &body).await.status, 200);
    }
}

/// The `data-micros` of the projected total on a usage page.
fn projected_micros(page: &str) -> i64 {
    let at = page
        .find("id=\"projected-total\" data-micros=\"")
        .expect("a projection")
        + 34;
    page[at..at + page[at..].find('"').unwrap()]
        .parse()
        .unwrap()
}

async fn billing_page_shows_price_card_projection_and_invoices(b: Backend) {
    let clock = Arc::new(ManualClock::new(NOV_10));
    let s = TestServer::start_with_clock(b, |_| {}, clock.clone()).await;
    let (tenant, key) = s.tenant("acme").await; // plan Pro
    s.sign(&crate::support::build_record()).await;
    // November: 3 verifications at 0.005 USD = 0.015, rounded once to 0.02.
    verify_n(&s, &key, 3).await;
    clock.set(NOV_10 + 22 * DAY); // 2 December
    let outcomes = close(&s, "2026-11", clock.now_ms(), false).await;
    let (nov, nov_total) = number(&outcomes);
    assert_eq!(nov_total, 20_000);
    // December so far: 5 verifications = 0.025 → 0.03 (a close covers
    // events before its end: a minute later).
    verify_n(&s, &key, 5).await;
    clock.advance_ms(60_000);

    let br = super::sign_in(&s, &key).await;
    let r = get(&s, "/portal/usage", Some(&br.cookie)).await;
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_secure(&r, "usage");
    let page = text(&r);
    assert!(page.contains("<h1>Usage &amp; billing</h1>"), "{page}");
    // The price card of the plan, from the billing card.
    assert!(page.contains("Price card: Pro plan"));
    assert!(page.contains("data-price=\"attestation.verify\">$0.005</td>"));
    assert!(page.contains("data-price=\"portal.download\">$0.00</td>"));
    // The usage of the viewed (current) month and the projection.
    assert!(page.contains("data-event=\"attestation.verify\">5</td>"));
    assert!(page.contains("This period so far: December 2026"));
    let projected = projected_micros(&page);
    assert_eq!(projected, 30_000);
    assert!(page.contains(">$0.03</strong>"));
    // The issued invoice, with its downloads.
    assert!(page.contains(&format!("data-invoice=\"{nov}\"")));
    assert!(page.contains("November 2026"));
    assert!(page.contains(">Issued</span>"));
    assert!(page.contains(&format!("href=\"/portal/invoices/{nov}.json\"")));
    assert!(page.contains(&format!("action=\"/portal/invoices/{nov}.pdf\"")));

    // The projection is what the invoice becomes: close December now.
    let outcomes = close(&s, "2026-12", clock.now_ms(), true).await;
    let (dec, dec_total) = number(&outcomes);
    assert_eq!(dec_total, projected, "projection = invoice");
    let page = text(&get(&s, "/portal/usage", Some(&br.cookie)).await);
    assert!(page.contains(&format!("data-invoice=\"{dec}\"")));
    assert!(page.contains("already issued (an early close)"), "{page}");
    // Newest invoice first.
    assert!(page.find(&dec).unwrap() < page.find(&format!("data-invoice=\"{nov}\"")).unwrap());

    // Another tenant sees none of it.
    let (_, other_key) = s.tenant("other").await;
    let other = super::sign_in(&s, &other_key).await;
    let page = text(&get(&s, "/portal/usage", Some(&other.cookie)).await);
    assert!(!page.contains(&nov) && !page.contains(&dec));
    assert!(page.contains("No invoices yet"));
    assert!(page.contains("data-event=\"attestation.verify\">0</td>"));
    let _ = tenant;
}

async fn invoice_downloads_are_the_apis_and_other_tenants_get_404(b: Backend) {
    let clock = Arc::new(ManualClock::new(NOV_10));
    let s = TestServer::start_with_clock(b, |_| {}, clock.clone()).await;
    let (_, key) = s.tenant("acme").await;
    s.sign(&crate::support::build_record()).await;
    verify_n(&s, &key, 1).await;
    clock.set(NOV_10 + 22 * DAY);
    let (nov, _) = number(&close(&s, "2026-11", clock.now_ms(), false).await);
    let br = super::sign_in(&s, &key).await;

    // JSON: the API's bytes, as an attachment, with the portal's headers.
    let api_json = s.get(&format!("/v1/invoices/{nov}.json"), Some(&key)).await;
    assert_eq!(api_json.status, 200);
    let r = get(
        &s,
        &format!("/portal/invoices/{nov}.json"),
        Some(&br.cookie),
    )
    .await;
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_secure(&r, "invoice json");
    assert_eq!(r.body, api_json.body);
    assert_eq!(
        r.headers["content-disposition"],
        format!("attachment; filename=\"{nov}.json\"")
    );
    assert_eq!(r.headers["invoice-status"], "finalized");
    let doc: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(doc["number"], nov.as_str());

    // PDF: a form post; without the token refused and not metered.
    let downloads = s.count(&key, "portal.download").await;
    let pdf_path = format!("/portal/invoices/{nov}.pdf");
    let r = post(&s, &br, &pdf_path, &[]).await;
    assert_eq!(r.status, 403);
    let r = post(&s, &br, &pdf_path, &[("csrf", "forged")]).await;
    assert_eq!(r.status, 403);
    assert!(text(&r).contains("Form refused"));
    assert_eq!(s.count(&key, "portal.download").await, downloads);
    let r = post(&s, &br, &pdf_path, &[("csrf", &br.csrf)]).await;
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_secure(&r, "invoice pdf");
    assert_eq!(r.headers["content-type"], "application/pdf");
    assert!(r.body.starts_with(b"%PDF-"));
    let api_pdf = s.get(&format!("/v1/invoices/{nov}.pdf"), Some(&key)).await;
    assert_eq!(r.body, api_pdf.body, "the same reproducible PDF");
    // One for the portal's download, one for the API's.
    assert_eq!(s.count(&key, "portal.download").await, downloads + 2);
    // A GET of the PDF (no token possible) is not a download.
    assert_eq!(get(&s, &pdf_path, Some(&br.cookie)).await.status, 404);

    // Another tenant, signed in, guessing the URLs: 404 like nothing there.
    let (_, other_key) = s.tenant("other").await;
    let other = super::sign_in(&s, &other_key).await;
    for path in [
        format!("/portal/invoices/{nov}.json"),
        "/portal/invoices/CLO-2026-999999.json".into(),
    ] {
        let r = get(&s, &path, Some(&other.cookie)).await;
        assert_eq!(r.status, 404, "{path}");
        assert_secure(&r, &path);
        assert!(!text(&r).contains(&nov));
    }
    let r = post(&s, &other, &pdf_path, &[("csrf", &other.csrf)]).await;
    assert_eq!(r.status, 404);
    assert_eq!(s.count(&other_key, "portal.download").await, 0);
    // Signed out: sign in first.
    assert_redirects_to_signin(&get(&s, &format!("/portal/invoices/{nov}.json"), None).await);
    // Malformed names never reach storage.
    for bad in ["x", "..%2Fetc.json", "CLO-2026-0001.txt"] {
        let r = get(&s, &format!("/portal/invoices/{bad}"), Some(&br.cookie)).await;
        assert_eq!(r.status, 404, "{bad}");
    }
}

/// Signs a release of `repo` at `tag` and returns its artifact digest.
async fn release(s: &TestServer, repo: &str, tag: &str, n: u64) -> String {
    let artifact = format!("sha256:{n:064x}");
    s.sign(&crate::evidence::signed_record(repo, tag, &artifact))
        .await;
    artifact
}

async fn open_for(
    s: &TestServer,
    now: i64,
    tag: &str,
    auditor: &str,
    tenant: Option<&str>,
) -> Opened {
    engagement::open(
        &crate::evidence::context(s, now, None),
        &OpenRequest {
            tag: tag.into(),
            repo: None,
            auditor: auditor.into(),
            valid_for_ms: 7 * DAY,
            actor: "operator:test".into(),
            client_tenant: tenant.map(str::to_owned),
        },
    )
    .await
    .unwrap()
}

async fn audit_tracker_shows_a_tenants_engagements_only(b: Backend) {
    let clock = Arc::new(ManualClock::new(NOV_10));
    let s = TestServer::start_with_clock(b, |_| {}, clock.clone()).await;
    let (a_id, a_key) = s.tenant("tenant-a").await;
    let (_, b_key) = s.tenant("tenant-b").await;
    release(&s, "https://github.com/example/app", "v1.4.0", 1).await;
    release(&s, "https://github.com/example/app", "v2.0.0", 2).await;
    let e1 = open_for(&s, NOV_10, "v1.4.0", "Ada Auditor", Some("tenant-a")).await;
    let e2 = open_for(
        &s,
        NOV_10,
        "v2.0.0",
        "Bob <b>",
        Some(&s.tenant("tenant-c").await.0),
    )
    .await;
    assert_eq!(
        e1.engagement.client_tenant_id.as_deref(),
        Some(a_id.as_str())
    );
    // An auditor tenant or an unknown tenant is refused, and nothing opens.
    let ctx = crate::evidence::context(&s, NOV_10, None);
    let before = s.storage().engagements().await.unwrap().len();
    for bad in [e1.engagement.tenant_id.clone(), "no-such-tenant".into()] {
        let err = engagement::open(
            &ctx,
            &OpenRequest {
                tag: "v1.4.0".into(),
                repo: None,
                auditor: "x".into(),
                valid_for_ms: DAY,
                actor: "operator:test".into(),
                client_tenant: Some(bad.clone()),
            },
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("invalid tenant"), "{bad}: {err}");
    }
    assert_eq!(s.storage().engagements().await.unwrap().len(), before);

    clock.set(NOV_10 + 3 * DAY + 5 * 3_600_000);
    let a = super::sign_in(&s, &a_key).await;
    let r = get(&s, "/portal/audit", Some(&a.cookie)).await;
    assert_eq!(r.status, 200);
    assert_secure(&r, "audit list");
    let page = text(&r);
    assert!(page.contains(&format!("href=\"/portal/audit/{}\"", e1.engagement.id)));
    assert!(
        !page.contains(&e2.engagement.id),
        "another tenant's engagement"
    );
    assert!(page.contains("Evidence ready"));
    assert!(page.contains("expires in 3 days 19 hours"), "{page}");
    assert!(page.contains(&e1.pack.sha256));
    assert!(page.contains("aria-current=\"page\">Audit</a>"));

    let path = format!("/portal/audit/{}", e1.engagement.id);
    let r = get(&s, &path, Some(&a.cookie)).await;
    assert_eq!(r.status, 200);
    assert_secure(&r, "engagement");
    let page = text(&r);
    assert!(page.contains("<span class=\"tag\" id=\"tag\">v1.4.0</span>"));
    assert!(page.contains(&format!("id=\"pack-sha256\">{}</code>", e1.pack.sha256)));
    assert!(page.contains("aria-current=\"step\">Evidence ready"));
    assert!(page.contains("Ada Auditor"));
    assert!(page.contains("pack built"), "the decisions log");
    assert!(page.contains("Auditor notes (0 of 2)"));
    assert!(
        !page.contains("id=\"note-form\""),
        "tenants do not add notes"
    );

    // The pack: the recorded bytes, their digest in a header.
    let r = get(&s, &format!("{path}/pack"), Some(&a.cookie)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/gzip");
    assert_eq!(r.headers["x-pack-sha256"], e1.pack.sha256.as_str());
    assert_eq!(Sha256Digest::of(&r.body).hex(), e1.pack.sha256);

    // A tenant cannot add notes, even to its own engagement.
    let r = post(
        &s,
        &a,
        &format!("{path}/notes"),
        &[("csrf", &a.csrf), ("note", "x")],
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(s.storage().notes(&e1.engagement.id).await.unwrap().len(), 0);

    // Another tenant's engagement by URL: 404, like one that does not exist.
    let e2_path = format!("/portal/audit/{}", e2.engagement.id);
    let missing = format!("/portal/audit/eng_{}", "0".repeat(32));
    for p in [
        e2_path.clone(),
        format!("{e2_path}/pack"),
        missing.clone(),
        "/portal/audit/../usage".into(),
    ] {
        let r = get(&s, &p, Some(&a.cookie)).await;
        assert_eq!(r.status, 404, "{p}");
        assert!(!text(&r).contains("v2.0.0"), "{p}");
    }
    let r = post(
        &s,
        &a,
        &format!("{e2_path}/notes"),
        &[("csrf", &a.csrf), ("note", "x")],
    )
    .await;
    assert_eq!(r.status, 404);
    // Tenant B (not the client of either) sees no engagement at all.
    let bb = super::sign_in(&s, &b_key).await;
    let page = text(&get(&s, "/portal/audit", Some(&bb.cookie)).await);
    assert!(page.contains("No audit engagements yet"));
    assert_eq!(get(&s, &path, Some(&bb.cookie)).await.status, 404);

    // Signed off: the state, the new pack and the closing time show.
    let ctx = crate::evidence::context(&s, clock.now_ms(), None);
    let (_, pack) = engagement::sign_off(&ctx, &e1.engagement.id, "operator:test")
        .await
        .unwrap();
    let page = text(&get(&s, &path, Some(&a.cookie)).await);
    assert!(page.contains("id=\"stage\">Signed off</span>"));
    assert!(page.contains(&pack.sha256));
    assert!(page.contains("signed off"), "the log's entry");
    // Signed out: sign in first.
    assert_redirects_to_signin(&get(&s, &path, None).await);
}

async fn verify_as(s: &TestServer, b: &Browser, digest: &str) -> Resp {
    super::post_verify(
        s,
        b,
        &[
            ("csrf", b.csrf.as_str()),
            ("artifact_digest", digest),
            ("source_uri", "https://github.com/example/app"),
            ("source_tag", ""),
        ],
        None,
    )
    .await
}

async fn auditors_sign_in_follow_their_engagement_and_add_notes(b: Backend) {
    let clock = Arc::new(ManualClock::new(NOV_10));
    let s = TestServer::start_with_clock(b, |_| {}, clock.clone()).await;
    let (_, t_key) = s.tenant("client").await;
    let artifact = release(&s, "https://github.com/example/app", "v1.4.0", 1).await;
    let other_artifact = release(&s, "https://github.com/example/app", "v2.0.0", 2).await;
    let e1 = open_for(&s, NOV_10, "v1.4.0", "Ada", Some("client")).await;
    let e2 = open_for(&s, NOV_10, "v2.0.0", "Bob", None).await;
    let id = e1.engagement.id.clone();

    // Sign in with the clsa_ key: a session that ends with the key.
    let r = post_signin(&s, &e1.key).await;
    assert_eq!(r.status, 303, "{}", text(&r));
    let set = r.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(set.contains("Max-Age=28800"), "8 h < 7 days: {set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    let home = text(&get(&s, "/portal/", Some(&cookie)).await);
    assert!(home.contains("Ada <small>(auditor)</small>"), "{home}");
    assert!(home.contains("github.com/example/app"), "the trust center");
    assert!(
        !home.contains("/portal/usage"),
        "no billing in the navigation"
    );
    let au = Browser {
        csrf: csrf_of(&home),
        cookie,
    };

    // No tenant billing, no usage, no invoices.
    let r = get(&s, "/portal/usage", Some(&au.cookie)).await;
    assert_eq!(r.status, 403);
    assert!(text(&r).contains("Auditors have no usage or billing"));
    assert_secure(&r, "auditor usage");
    assert_eq!(
        get(
            &s,
            "/portal/invoices/CLO-2026-000001.json",
            Some(&au.cookie)
        )
        .await
        .status,
        404
    );

    // Its engagement only.
    let page = text(&get(&s, "/portal/audit", Some(&au.cookie)).await);
    assert!(page.contains(&id) && !page.contains(&e2.engagement.id));
    assert_eq!(
        get(
            &s,
            &format!("/portal/audit/{}", e2.engagement.id),
            Some(&au.cookie)
        )
        .await
        .status,
        404
    );
    let path = format!("/portal/audit/{id}");
    let page = text(&get(&s, &path, Some(&au.cookie)).await);
    assert!(page.contains("id=\"note-form\""));
    assert!(page.contains("<label for=\"note\">Add a note</label>"));
    let pack = get(&s, &format!("{path}/pack"), Some(&au.cookie)).await;
    assert_eq!(Sha256Digest::of(&pack.body).hex(), e1.pack.sha256);

    // Verify: in the frozen set, not metered; outside it, not found.
    let r = verify_as(&s, &au, &artifact).await;
    assert_eq!(r.status, 200, "{}", text(&r));
    assert!(text(&r).contains("SLSA Build L3"), "{}", text(&r));
    let r = verify_as(&s, &au, &other_artifact).await;
    assert_eq!(r.status, 200);
    assert!(text(&r).contains("provenance_not_found"), "{}", text(&r));
    let usage = s
        .storage()
        .usage_counts(&e1.engagement.tenant_id, 0, i64::MAX)
        .await
        .unwrap();
    assert!(
        usage.values().all(|n| *n == 0),
        "auditors are not metered: {usage:?}"
    );
    // Metered downloads are not for auditors.
    let rel = s.storage().frozen_attestations(&id).await.unwrap()[0]
        .attestation_id
        .clone();
    let page = text(&get(&s, &format!("/portal/releases/{rel}"), Some(&au.cookie)).await);
    assert!(page.contains("id=\"auditor-downloads\""));
    assert!(!page.contains("id=\"download-intoto\""));
    let r = post(
        &s,
        &au,
        &format!("/portal/releases/{rel}/intoto.jsonl"),
        &[("csrf", &au.csrf)],
    )
    .await;
    assert_eq!(r.status, 403);

    // Notes: CSRF first; then at most two, escaped, in the decisions log.
    let notes = format!("{path}/notes");
    assert_eq!(
        post(&s, &au, &notes, &[("note", "no token")]).await.status,
        403
    );
    assert_eq!(
        post(&s, &au, &notes, &[("csrf", "forged"), ("note", "x")])
            .await
            .status,
        403
    );
    assert_eq!(s.storage().notes(&id).await.unwrap().len(), 0);
    let r = post(&s, &au, &notes, &[("csrf", &au.csrf), ("note", "  ")]).await;
    assert_eq!(r.status, 400);
    assert!(
        text(&r).contains("Invalid note: it is empty"),
        "{}",
        text(&r)
    );
    let hostile = "Looks fine <script>alert(1)</script>\nsecond line";
    let r = post(&s, &au, &notes, &[("csrf", &au.csrf), ("note", hostile)]).await;
    assert_eq!(r.status, 303, "{}", text(&r));
    assert_eq!(r.headers["location"], format!("{path}#notes"));
    let page = text(&get(&s, &path, Some(&au.cookie)).await);
    assert!(page.contains(&escaped(hostile)));
    assert!(!page.contains("<script>"));
    assert!(page.contains(&Sha256Digest::of(hostile.as_bytes()).hex()));
    assert!(page.contains("aria-current=\"step\">Notes"));
    assert!(
        page.contains("auditor:Ada (key"),
        "the decisions log names the auditor"
    );
    let r = post(&s, &au, &notes, &[("csrf", &au.csrf), ("note", "second")]).await;
    assert_eq!(r.status, 303);
    let page = text(&get(&s, &path, Some(&au.cookie)).await);
    assert!(page.contains("Auditor notes (2 of 2)"));
    assert!(!page.contains("id=\"note-form\""), "no third note offered");
    let r = post(&s, &au, &notes, &[("csrf", &au.csrf), ("note", "third")]).await;
    assert_eq!(r.status, 409);
    assert!(
        text(&r).contains("an auditor may attach at most 2"),
        "{}",
        text(&r)
    );
    assert_eq!(s.storage().notes(&id).await.unwrap().len(), 2);

    // The client tenant sees the notes too.
    let t = super::sign_in(&s, &t_key).await;
    let page = text(&get(&s, &path, Some(&t.cookie)).await);
    assert!(page.contains(&escaped(hostile)) && page.contains("second"));

    // Sign out: the session is gone.
    let r = post(&s, &au, "/portal/signout", &[("csrf", &au.csrf)]).await;
    assert_eq!(r.status, 303);
    assert_redirects_to_signin(&get(&s, &path, Some(&au.cookie)).await);
}

async fn expired_and_revoked_auditor_keys_are_refused(b: Backend) {
    let clock = Arc::new(ManualClock::new(NOV_10));
    let s = TestServer::start_with_clock(b, |_| {}, clock.clone()).await;
    release(&s, "https://github.com/example/app", "v1.4.0", 1).await;
    let e1 = open_for(&s, NOV_10, "v1.4.0", "Ada", None).await;

    // A session lasts as long as the key at most.
    clock.set(NOV_10 + 7 * DAY - 3_600_000);
    let r = post_signin(&s, &e1.key).await;
    assert_eq!(r.status, 303);
    let set = r.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(set.contains("Max-Age=3600"), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    assert_eq!(get(&s, "/portal/audit", Some(&cookie)).await.status, 200);
    let page = text(
        &get(
            &s,
            &format!("/portal/audit/{}", e1.engagement.id),
            Some(&cookie),
        )
        .await,
    );
    assert!(page.contains("expires in 1 hour"), "{page}");

    // Past the expiry: the session ends, and the key no longer signs in.
    clock.set(NOV_10 + 7 * DAY);
    assert_redirects_to_signin(&get(&s, "/portal/audit", Some(&cookie)).await);
    let r = post_signin(&s, &e1.key).await;
    assert_eq!(r.status, 401);
    assert!(
        r.headers
            .get("set-cookie")
            .is_none_or(|c| !c.to_str().unwrap().starts_with("cloister_portal="))
    );
    assert!(
        text(&r).contains("This auditor key expired at"),
        "{}",
        text(&r)
    );

    // Revoked while signed in: the session ends at once; sign-in refused.
    let e3 = open_for(&s, clock.now_ms(), "v1.4.0", "Cy", None).await;
    let r = post_signin(&s, &e3.key).await;
    let cookie = r.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(get(&s, "/portal/audit", Some(&cookie)).await.status, 200);
    engagement::revoke(
        s.storage().as_ref(),
        &e3.engagement.id,
        "operator:test",
        clock.now_ms(),
    )
    .await
    .unwrap();
    assert_redirects_to_signin(&get(&s, "/portal/audit", Some(&cookie)).await);
    let r = post_signin(&s, &e3.key).await;
    assert_eq!(r.status, 401);
    assert!(text(&r).contains("This auditor key was revoked at"));

    // A made-up auditor key gets the answer of any wrong key.
    let fake = format!("clsa_{}_{}", "0123456789abcdef", "A".repeat(43));
    let r = post_signin(&s, &fake).await;
    assert_eq!(r.status, 401);
    assert!(text(&r).contains("That API key was not accepted"));
}
