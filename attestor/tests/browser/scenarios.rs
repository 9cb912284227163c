//! The portal in Chromium: what a partner does, and what an attacker tries.

use super::harness::{Browser, env, scenario};
use fantoccini::Locator;

/// Sign in, see the chips (an L3 release and a tampered one with its
/// reason), open a repository and a release, download its provenance and
/// see the usage go up by one.
#[tokio::test]
async fn sign_in_see_chips_open_a_release_and_download_it() {
    let e = env();
    let (_, key) = e.tenant("partner").await;
    scenario(
        "sign_in_see_chips_open_a_release_and_download_it",
        async |b: &mut Browser| {
            b.sign_in(&key).await;
            let row =
                |repo: &str| format!("//table[@id='repositories']//tr[th/a[text()='{repo}']]");
            let chip = |repo: &str| format!("{}//span[contains(@class,'chip')]", row(repo));
            let l3 =
                b.c.find(Locator::XPath(&chip("github.com/example/repo-a")))
                    .await
                    .unwrap();
            assert_eq!(l3.text().await.unwrap(), "SLSA Build L3");
            assert_eq!(
                l3.attr("class").await.unwrap().as_deref(),
                Some("chip chip-l3")
            );
            let bad =
                b.c.find(Locator::XPath(&chip("github.com/example/tampered")))
                    .await
                    .unwrap();
            assert_eq!(bad.text().await.unwrap(), "Unverified");
            let reason =
                b.c.find(Locator::XPath(&format!(
                    "{}//code[@class='reason']",
                    row("github.com/example/tampered")
                )))
                .await
                .unwrap();
            assert_eq!(reason.text().await.unwrap(), "signature_invalid");
            // The latest release, its builder and time are on the row.
            let repo_a =
                b.c.find(Locator::XPath(&row("github.com/example/repo-a")))
                    .await
                    .unwrap();
            let text = repo_a.text().await.unwrap();
            assert!(text.contains("v1.2.3"), "{text}");
            assert!(text.contains("https://cloister.example.com/builders/isolated@v1"));

            // Repository → releases → release.
            b.c.find(Locator::LinkText("github.com/example/repo-a"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            b.shot("repository").await;
            assert!(b.path().await.starts_with("/portal/repo?uri="));
            assert_eq!(b.text("h1").await, "github.com/example/repo-a");
            b.click("#releases a.release", "release").await;
            assert_eq!(b.path().await, format!("/portal/releases/{}", e.seeded.l3));
            assert_eq!(b.text(".verdict .chip").await, "SLSA Build L3");
            let subjects = b.text("#subjects").await;
            assert!(subjects.contains("repo-a"));
            assert!(
                subjects
                    .contains("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
            );
            let claims = b.text("#claims").await;
            assert!(
                claims.contains("No network: the build ran in a network namespace of its own"),
                "{claims}"
            );
            assert!(claims.contains("Every capability was dropped"));
            let statement = b.text("#statement").await;
            assert!(statement.contains("\"predicateType\": \"https://slsa.dev/provenance/v1\""));

            // Download the provenance: the file is the stored envelope and the
            // tenant's usage shows one more download.
            let (verifies, downloads) = b.usage().await;
            b.goto(&format!("/portal/releases/{}", e.seeded.l3)).await;
            b.c.find(Locator::Id("download-intoto"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            let file = b.downloaded("repo-a.intoto.jsonl").await;
            let storage = e.app.storage.clone();
            let stored = e
                .on_server(async move {
                    storage
                        .find_attestations(
                            &cloister_attestor::storage::AttestationFilter::Subject(
                                crate::support::ARTIFACT.into(),
                            ),
                            &cloister_attestor::storage::Page {
                                limit: 1,
                                before: None,
                            },
                        )
                        .await
                })
                .await
                .unwrap();
            assert_eq!(
                String::from_utf8(file).unwrap(),
                format!("{}\n", stored[0].envelope)
            );
            assert_eq!(b.usage().await, (verifies, downloads + 1));
            assert_eq!(e.count(&key, "portal.download").await, downloads + 1);

            // The tampered release says why it is unverified.
            b.goto(&format!("/portal/releases/{}", e.seeded.tampered))
                .await;
            assert_eq!(b.text(".verdict .chip").await, "Unverified");
            assert_eq!(b.text(".verdict code.reason").await, "signature_invalid");
        },
    )
    .await;
}

/// Verify a digest typed and a file chosen, see the verdicts and reason
/// codes, then the usage chart.
#[tokio::test]
async fn verify_a_digest_and_a_file_then_see_the_usage_chart() {
    let e = env();
    let (_, key) = e.tenant("verifier").await;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), b"abc").unwrap();
    let file_path = file.path().to_str().unwrap().to_owned();
    scenario(
        "verify_a_digest_and_a_file_then_see_the_usage_chart",
        async |b: &mut Browser| {
            b.sign_in(&key).await;
            b.click("nav a[href='/portal/verify']", "verify").await;
            b.fill("artifact_digest", crate::support::ARTIFACT).await;
            b.fill("source_uri", "github.com/example/repo-a").await;
            b.fill("source_tag", "v1.2.3").await;
            b.click("#verify-form button[type=submit]", "verified")
                .await;
            assert_eq!(b.text("#result .verdict").await, "SLSA Build L3 Verified.");
            assert_eq!(b.text("#checked-digest").await, crate::support::ARTIFACT);

            // A digest nothing in the store has: the API's reason code.
            b.fill("artifact_digest", &crate::fixtures::digest(77))
                .await;
            b.fill("source_tag", "").await;
            b.click("#verify-form button[type=submit]", "not-found")
                .await;
            assert_eq!(b.text("#result .verdict").await, "Not verified");
            assert!(b.text("#reasons").await.contains("provenance_not_found"));

            // The file, hashed by the server as it uploads.
            b.fill("artifact_digest", "").await;
            b.c.find(Locator::Id("file"))
                .await
                .unwrap()
                .send_keys(&file_path)
                .await
                .unwrap();
            b.click("#verify-form button[type=submit]", "file-verified")
                .await;
            assert_eq!(b.text("#result .verdict").await, "SLSA Build L3 Verified.");
            assert_eq!(b.text("#checked-digest").await, crate::support::ARTIFACT);

            // The usage page: three verifications, drawn on today's bar.
            assert_eq!(b.usage().await, (3, 0));
            assert_eq!(b.count("svg#usage-chart").await, 1);
            assert_eq!(b.count("svg#usage-chart rect.bar").await, 1);
            let bar =
                b.c.find(Locator::Css("svg#usage-chart rect.bar"))
                    .await
                    .unwrap();
            let height: f64 = bar.attr("height").await.unwrap().unwrap().parse().unwrap();
            assert!(
                height > 100.0,
                "the only bar reaches the scale's top: {height}"
            );
            let title =
                b.c.find(Locator::Id("chart-title"))
                    .await
                    .unwrap()
                    .prop("textContent")
                    .await
                    .unwrap()
                    .unwrap_or_default();
            assert!(title.starts_with("Usage per day in"), "{title}");
            assert_eq!(e.count(&key, "attestation.verify").await, 3);
        },
    )
    .await;
}

/// Sign out, then every page (and the back button) leads to sign-in; a
/// wrong key gets the clear message.
#[tokio::test]
async fn sign_out_and_be_refused() {
    let e = env();
    let (_, key) = e.tenant("leaver").await;
    scenario("sign_out_and_be_refused", async |b: &mut Browser| {
        b.sign_in(&key).await;
        b.goto("/portal/usage").await;
        b.click("form.signout button", "signed-out").await;
        assert_eq!(b.path().await, "/portal/signin?out=1");
        assert!(b.text("main").await.contains("You are signed out"));
        for page in ["/portal/", "/portal/usage", "/portal/verify"] {
            b.goto(page).await;
            assert_eq!(b.path().await, "/portal/signin", "{page}");
        }
        b.c.back().await.unwrap();
        b.shot("back").await;
        assert_eq!(b.path().await, "/portal/signin");
        b.fill("api_key", "clst_0000000000000000_wrong").await;
        b.click("form.stack button[type=submit]", "wrong-key").await;
        assert!(
            b.text("#signin-error")
                .await
                .contains("That API key was not accepted")
        );
    })
    .await;
}

/// Hostile names are shown as text: no dialog opens, no element is
/// injected.
#[tokio::test]
async fn hostile_data_is_inert_in_the_browser() {
    let e = env();
    let (_, key) = e.tenant("hostile").await;
    scenario(
        "hostile_data_is_inert_in_the_browser",
        async |b: &mut Browser| {
            b.sign_in(&key).await;
            let pages = [
                "/portal/".to_owned(),
                format!("/portal/releases/{}", e.seeded.hostile),
                format!("/portal/releases/{}", e.seeded.quoted),
                format!(
                    "/portal/repo?uri={}",
                    cloister_attestor::portal::urlencode(
                        "https://example.com/<script>alert(1)</script>"
                    )
                ),
            ];
            for page in &pages {
                b.goto(page).await;
                assert!(
                    b.c.get_alert_text()
                        .await
                        .is_err_and(|e| e.is_no_such_alert()),
                    "{page}: a dialog opened"
                );
                assert_eq!(b.count("script").await, 0, "{page}: a script element");
                assert_eq!(b.count("img").await, 0, "{page}: an injected image");
                assert_eq!(b.count("main b").await, 0, "{page}: injected markup");
            }
            b.goto("/portal/").await;
            assert!(b.count("a.repo").await >= 4);
            b.c.find(Locator::LinkText("example.com/<script>alert(1)</script>"))
                .await
                .expect("the hostile name as text");
            b.c.find(Locator::LinkText("<img src=x onerror=alert(2)>"))
                .await
                .expect("the hostile tag as text");
            b.c.find(Locator::LinkText("example.com/o/\"quoted'repo\""))
                .await
                .expect("the quoted URI as text");
            b.goto(&format!("/portal/releases/{}", e.seeded.hostile))
                .await;
            assert!(b.text("#subjects").await.contains("<b>bold</b>"));
        },
    )
    .await;
}

/// Forged forms from an attacker's page: same site (another port) the
/// browser sends the cookie but the portal refuses the request; from
/// another site the strict cookie is not even sent. Nothing is counted.
#[tokio::test]
async fn forged_forms_from_other_origins_are_refused() {
    let e = env();
    let (_, key) = e.tenant("victim").await;
    scenario(
        "forged_forms_from_other_origins_are_refused",
        async |b: &mut Browser| {
            b.sign_in(&key).await;
            b.goto(&format!("/portal/releases/{}", e.seeded.l3)).await;
            // The attacker even knows the token (say it leaked): the origin
            // check still refuses.
            let csrf =
                b.c.find(Locator::Css("input[name=csrf]"))
                    .await
                    .unwrap()
                    .attr("value")
                    .await
                    .unwrap()
                    .unwrap();
            let action = format!("{}/portal/releases/{}/intoto.jsonl", e.base, e.seeded.l3);
            let forge = |site: &str, with_csrf: bool| {
                let mut u = format!(
                    "{site}/forge?action={}",
                    cloister_attestor::portal::urlencode(&action)
                );
                if with_csrf {
                    u.push_str(&format!("&csrf={csrf}"));
                }
                u
            };
            for (site, with_csrf) in [
                (e.attacker_same_site.as_str(), false),
                (e.attacker_same_site.as_str(), true),
            ] {
                b.c.goto(&forge(site, with_csrf)).await.unwrap();
                b.click("#forged", "forged-same-site").await;
                assert_eq!(
                    b.text("h1").await,
                    "Form refused",
                    "csrf given: {with_csrf}"
                );
            }
            b.c.goto(&forge(&e.attacker_cross_site, true))
                .await
                .unwrap();
            b.click("#forged", "forged-cross-site").await;
            assert_eq!(b.path().await, "/portal/signin", "no cookie crossed sites");
            // Still signed in here, and nothing was downloaded or counted.
            assert_eq!(b.usage().await, (0, 0));
            assert!(
                std::fs::read_dir(b.downloads.path())
                    .unwrap()
                    .next()
                    .is_none()
            );
            assert_eq!(e.count(&key, "portal.download").await, 0);
        },
    )
    .await;
}

/// Tenant A's session sees A's usage only, whatever B does.
#[tokio::test]
async fn a_session_of_tenant_a_cannot_read_tenant_b() {
    let e = env();
    let (a_id, a_key) = e.tenant("tenant-a").await;
    let (b_id, b_key) = e.tenant("tenant-b").await;
    // B verifies twice through the API.
    let client = crate::support::Client::new();
    for _ in 0..2 {
        client
            .send(
                hyper::Method::POST,
                &format!("{}/v1/verify", e.base),
                &[("authorization".into(), format!("Bearer {b_key}"))],
                serde_json::to_vec(&serde_json::json!({
                    "artifactDigest": crate::support::ARTIFACT,
                    "sourceUri": crate::support::REPO,
                }))
                .unwrap()
                .into(),
            )
            .await;
    }
    scenario(
        "a_session_of_tenant_a_cannot_read_tenant_b",
        async |b: &mut Browser| {
            b.sign_in(&a_key).await;
            assert!(b.text("header .who").await.contains("tenant-a"));
            assert_eq!(b.usage().await, (0, 0));
            b.goto(&format!("/portal/usage?tenant={b_id}")).await;
            assert_eq!(b.text("h1").await, "Request refused");
            assert!(!b.text("main").await.contains("tenant-b"));
            assert_ne!(a_id, b_id);
        },
    )
    .await;
    assert_eq!(e.count(&b_key, "attestation.verify").await, 2);
}

/// Accessibility basics in the browser: every visible input has a label,
/// the chips carry text, and at 320 px the pages do not scroll sideways.
#[tokio::test]
async fn pages_are_labelled_and_fit_320_pixels() {
    let e = env();
    let (_, key) = e.tenant("narrow").await;
    scenario("pages_are_labelled_and_fit_320_pixels", async |b: &mut Browser| {
        b.sign_in(&key).await;
        b.c.set_window_size(320, 900).await.unwrap();
        for page in [
            "/portal/".to_owned(),
            "/portal/verify".to_owned(),
            "/portal/usage".to_owned(),
            format!("/portal/releases/{}", e.seeded.l3),
            format!(
                "/portal/repo?uri={}",
                cloister_attestor::portal::urlencode("https://github.com/example/repo-a")
            ),
        ] {
            b.goto(&page).await;
            let unlabelled = b
                .c
                .execute(
                    "return [...document.querySelectorAll('input:not([type=hidden])')]\
                     .filter(i => i.labels.length === 0).length",
                    vec![],
                )
                .await
                .unwrap();
            assert_eq!(unlabelled, 0, "{page}: inputs without a label");
            let widths = b
                .c
                .execute(
                    "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]",
                    vec![],
                )
                .await
                .unwrap();
            let (scroll, client) = (widths[0].as_i64().unwrap(), widths[1].as_i64().unwrap());
            assert!(client <= 320, "{page}: the window is {client} px wide");
            assert!(scroll <= client, "{page}: {scroll} px of content in {client} px");
            assert_eq!(b.count("main h1").await, 1, "{page}: one h1");
        }
        b.goto("/portal/").await;
        for chip in b.c.find_all(Locator::Css(".chip")).await.unwrap() {
            assert!(!chip.text().await.unwrap().trim().is_empty(), "a chip without text");
        }
    })
    .await;
}
