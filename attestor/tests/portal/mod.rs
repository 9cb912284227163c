//! The trust portal over plain HTTP, on both backends: every page
//! handler's status, security headers and key content; sign-in, sessions
//! (expiry, revocation, sign-out), CSRF and origin refusals, the sign-in
//! rate limit; chips for every level; metered downloads and verifications
//! (the API's verdicts and usage); tenant isolation; hostile data escaped;
//! and the portal's storage queries. The same pages in a real browser are
//! in `tests/browser.rs`.

pub mod fixtures;

mod billing_audit;

use crate::both_backends;
use crate::support::{Backend, Resp, TestDb, TestServer, build_record, issue_key};
use bytes::Bytes;
use cloister_attestor::clock::ManualClock;
use cloister_attestor::portal::urlencode;
use cloister_attestor::storage::portal::{NewSession, SESSION_KIND_TENANT};
use cloister_attestor::storage::{Plan, Storage, Tenant, UsageKey, UsageWrite};
use hyper::Method;
use std::sync::Arc;

both_backends!(
    signin_sets_a_strict_cookie_and_signout_ends_the_session,
    wrong_keys_all_get_the_same_answer_and_are_rate_limited,
    sessions_expire_and_end_with_their_key,
    state_changing_forms_need_the_csrf_token_and_this_origin,
    every_page_has_the_security_headers,
    pages_show_repositories_releases_and_a_chip_per_level,
    downloads_are_metered_once_each_and_are_the_stored_files,
    verify_page_gives_the_api_verdict_and_meters_it_the_same_way,
    uploads_are_hashed_and_limited,
    usage_page_shows_only_the_tenants_own_usage,
    hostile_data_is_escaped,
    portal_storage_contract,
    verify_and_downloads_share_the_api_keys_rate_limit,
);

/// A signed-in browser, as far as HTTP goes: the session cookie and the
/// page's CSRF token.
pub struct Browser {
    pub cookie: String,
    pub csrf: String,
}

fn set_cookie(r: &Resp, name: &str) -> Option<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

/// The value of the first `name="csrf"` input of a page.
pub fn csrf_of(body: &str) -> String {
    let at = body.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    body[at..at + body[at..].find('"').unwrap()].to_owned()
}

/// `s` as askama escapes it in HTML.
fn escaped(s: &str) -> String {
    s.replace('&', "&#38;")
        .replace('<', "&#60;")
        .replace('>', "&#62;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

fn text(r: &Resp) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

async fn send(
    s: &TestServer,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Resp {
    let h: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    s.client
        .send(method, &format!("{}{path}", s.base), &h, body.into())
        .await
}

/// GET /portal/signin: (the pre-session cookie, the form's CSRF token).
async fn signin_form(s: &TestServer) -> (String, String) {
    let r = send(s, Method::GET, "/portal/signin", &[], "").await;
    assert_eq!(r.status, 200);
    let c = set_cookie(&r, "cloister_portal_signin").expect("a sign-in cookie");
    (cookie_value(&c), csrf_of(&text(&r)))
}

/// Posts the sign-in form with `key`.
async fn post_signin(s: &TestServer, key: &str) -> Resp {
    let (cookie, csrf) = signin_form(s).await;
    let origin = s.base.clone();
    send(
        s,
        Method::POST,
        "/portal/signin",
        &[
            ("cookie", &cookie),
            ("content-type", "application/x-www-form-urlencoded"),
            ("origin", &origin),
        ],
        form(&[("csrf", &csrf), ("api_key", key)]),
    )
    .await
}

/// Signs in with `key` and reads the CSRF token off a page.
pub async fn sign_in(s: &TestServer, key: &str) -> Browser {
    let r = post_signin(s, key).await;
    assert_eq!(r.status, 303, "{}", text(&r));
    assert_eq!(r.headers["location"], "/portal/");
    let cookie = cookie_value(&set_cookie(&r, "cloister_portal").expect("a session cookie"));
    let page = get(s, "/portal/verify", Some(&cookie)).await;
    assert_eq!(page.status, 200);
    Browser {
        csrf: csrf_of(&text(&page)),
        cookie,
    }
}

async fn get(s: &TestServer, path: &str, cookie: Option<&str>) -> Resp {
    match cookie {
        Some(c) => send(s, Method::GET, path, &[("cookie", c)], "").await,
        None => send(s, Method::GET, path, &[], "").await,
    }
}

/// POSTs a urlencoded form as a same-origin browser would.
async fn post(s: &TestServer, b: &Browser, path: &str, fields: &[(&str, &str)]) -> Resp {
    let origin = s.base.clone();
    send(
        s,
        Method::POST,
        path,
        &[
            ("cookie", &b.cookie),
            ("content-type", "application/x-www-form-urlencoded"),
            ("origin", &origin),
        ],
        form(fields),
    )
    .await
}

/// A multipart body: text fields, then optionally a file.
fn multipart(fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> (String, Vec<u8>) {
    let boundary = "----cloister-test-boundary";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\ncontent-disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    if let Some((name, bytes)) = file {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"{name}\"\r\ncontent-type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn post_verify(
    s: &TestServer,
    b: &Browser,
    fields: &[(&str, &str)],
    file: Option<(&str, &[u8])>,
) -> Resp {
    let (ct, body) = multipart(fields, file);
    let origin = s.base.clone();
    send(
        s,
        Method::POST,
        "/portal/verify",
        &[
            ("cookie", &b.cookie),
            ("content-type", &ct),
            ("origin", &origin),
        ],
        body,
    )
    .await
}

fn assert_redirects_to_signin(r: &Resp) {
    assert_eq!(r.status, 303, "{}", text(r));
    assert_eq!(r.headers["location"], "/portal/signin");
}

async fn signin_sets_a_strict_cookie_and_signout_ends_the_session(b: Backend) {
    let s = TestServer::start(b, |_| {}).await;
    let (_, key) = s.tenant("acme").await;

    // The form: a labelled key input, a CSRF token, a strict pre-session cookie.
    let r = get(&s, "/portal/signin", None).await;
    let page = text(&r);
    assert!(page.contains("<label for=\"api_key\">API key</label>"));
    assert!(page.contains("id=\"api_key\" name=\"api_key\" type=\"password\""));
    let pre = set_cookie(&r, "cloister_portal_signin").unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/portal"] {
        assert!(pre.contains(attr), "{pre}");
    }

    let r = post_signin(&s, &key).await;
    assert_eq!(r.status, 303);
    let session = set_cookie(&r, "cloister_portal").unwrap();
    for attr in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/portal",
        "Max-Age=28800",
    ] {
        assert!(session.contains(attr), "{session}");
    }
    // Plain HTTP here: no Secure flag (it is set when the listener has TLS).
    assert!(!session.contains("Secure"), "{session}");
    // The pre-session cookie is cleared.
    assert!(
        set_cookie(&r, "cloister_portal_signin")
            .unwrap()
            .contains("Max-Age=0")
    );
    let cookie = cookie_value(&session);
    let home = get(&s, "/portal/", Some(&cookie)).await;
    assert_eq!(home.status, 200);
    assert!(text(&home).contains("acme"), "the tenant's name is shown");
    // Signed in, the sign-in page leads home.
    assert_eq!(
        get(&s, "/portal/signin", Some(&cookie)).await.headers["location"],
        "/portal/"
    );

    // Sign-out without the token is refused and the session lives on.
    let b = Browser {
        csrf: csrf_of(&text(&home)),
        cookie: cookie.clone(),
    };
    let r = post(&s, &b, "/portal/signout", &[("csrf", "forged")]).await;
    assert_eq!(r.status, 403);
    assert_eq!(get(&s, "/portal/", Some(&cookie)).await.status, 200);
    let r = post(&s, &b, "/portal/signout", &[("csrf", &b.csrf)]).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.headers["location"], "/portal/signin?out=1");
    assert!(
        set_cookie(&r, "cloister_portal")
            .unwrap()
            .contains("Max-Age=0")
    );
    // The old cookie is refused everywhere, also if a copy was kept.
    for path in ["/portal/", "/portal/verify", "/portal/usage"] {
        assert_redirects_to_signin(&get(&s, path, Some(&cookie)).await);
    }
    assert!(text(&get(&s, "/portal/signin?out=1", None).await).contains("You are signed out"));
}

async fn wrong_keys_all_get_the_same_answer_and_are_rate_limited(b: Backend) {
    let s = TestServer::start(b, |c| c.portal.signin_attempts_per_minute = 3).await;
    let (tenant, key) = s.tenant("acme").await;
    let revoked = issue_key(s.storage().as_ref(), &tenant).await;
    let revoked_id = revoked.split('_').nth(1).unwrap().to_owned();
    s.storage().revoke_api_key(&revoked_id, 5).await.unwrap();
    let key_id = key.split('_').nth(1).unwrap();
    let wrong_secret = format!("clst_{key_id}_{}", "A".repeat(43));
    let unknown = format!("clst_{}_{}", "f".repeat(16), "B".repeat(43));

    // Unknown key, a known key id with a wrong secret, a revoked key and
    // garbage: one status and one message, nothing about what exists.
    let mut answers = Vec::new();
    for k in [&unknown, &wrong_secret, &revoked, &"not a key".to_owned()] {
        let r = post_signin(&s, k).await;
        assert_eq!(r.status, 401, "{k}");
        assert!(set_cookie(&r, "cloister_portal").is_none());
        let body = text(&r);
        let start = body.find("<p class=\"error\"").unwrap();
        answers.push(body[start..start + body[start..].find("</p>").unwrap()].to_owned());
    }
    assert!(answers[0].contains("That API key was not accepted"));
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:#?}");

    // Three attempts per key id per minute: the wrong secret used one.
    for _ in 0..2 {
        assert_eq!(post_signin(&s, &wrong_secret).await.status, 401);
    }
    let r = post_signin(&s, &wrong_secret).await;
    assert_eq!(r.status, 429);
    assert!(
        r.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert!(text(&r).contains("Too many attempts"));
    // The right key for that id waits too (the limit is on the id)...
    assert_eq!(post_signin(&s, &key).await.status, 429);
    // ...while other keys are not affected.
    let (_, other) = s.tenant("other").await;
    assert_eq!(post_signin(&s, &other).await.status, 303);
}

async fn sessions_expire_and_end_with_their_key(b: Backend) {
    let clock = Arc::new(ManualClock::new(1_780_000_000_000));
    let s =
        TestServer::start_with_clock(b, |c| c.portal.session_ttl_minutes = 60, clock.clone()).await;
    let (tenant, key) = s.tenant("acme").await;
    let b1 = sign_in(&s, &key).await;
    clock.advance_ms(59 * 60_000);
    assert_eq!(get(&s, "/portal/", Some(&b1.cookie)).await.status, 200);
    clock.advance_ms(60_000);
    assert_redirects_to_signin(&get(&s, "/portal/", Some(&b1.cookie)).await);

    // Revoking the key the session was opened with ends it at once.
    let b2 = sign_in(&s, &key).await;
    assert_eq!(get(&s, "/portal/", Some(&b2.cookie)).await.status, 200);
    let key_id = key.split('_').nth(1).unwrap();
    s.storage()
        .revoke_api_key(key_id, clock.now_ms())
        .await
        .unwrap();
    assert_redirects_to_signin(&get(&s, "/portal/", Some(&b2.cookie)).await);

    // The operator can end every session of a tenant.
    let other = issue_key(s.storage().as_ref(), &tenant).await;
    let b3 = sign_in(&s, &other).await;
    // (b2's session, dead with its key, and b3's.)
    assert_eq!(
        s.storage().delete_tenant_sessions(&tenant).await.unwrap(),
        2
    );
    assert_redirects_to_signin(&get(&s, "/portal/", Some(&b3.cookie)).await);
    // A made-up cookie is no session either.
    assert_redirects_to_signin(&get(&s, "/portal/", Some("cloister_portal=made-up")).await);
}

use cloister_attestor::clock::Clock as _;

async fn state_changing_forms_need_the_csrf_token_and_this_origin(b: Backend) {
    let s = TestServer::start(b, |_| {}).await;
    let (_, key) = s.tenant("acme").await;
    let signed = s.sign(&build_record()).await;
    let id = signed["attestationId"].as_str().unwrap().to_owned();
    let br = sign_in(&s, &key).await;
    let download = format!("/portal/releases/{id}/intoto.jsonl");

    // Without a token, with another session's token, from another origin,
    // or marked cross-site by the browser: 403, nothing metered.
    let other = sign_in(&s, &key).await;
    assert_ne!(other.csrf, br.csrf, "each session has its own token");
    for fields in [
        vec![],
        vec![("csrf", "")],
        vec![("csrf", other.csrf.as_str())],
    ] {
        let r = post(&s, &br, &download, &fields).await;
        assert_eq!(r.status, 403, "{fields:?}");
        assert!(text(&r).contains("did not come from this portal"));
    }
    for (name, value) in [
        ("origin", "http://evil.example"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ] {
        let r = send(
            &s,
            Method::POST,
            &download,
            &[
                ("cookie", &br.cookie),
                ("content-type", "application/x-www-form-urlencoded"),
                (name, value),
            ],
            form(&[("csrf", &br.csrf)]),
        )
        .await;
        assert_eq!(r.status, 403, "{name}: {value}");
    }
    let (ct, body) = multipart(
        &[
            ("artifact_digest", crate::support::ARTIFACT),
            ("source_uri", crate::support::REPO),
        ],
        None,
    );
    let r = send(
        &s,
        Method::POST,
        "/portal/verify",
        &[("cookie", &br.cookie), ("content-type", &ct)],
        body,
    )
    .await;
    assert_eq!(r.status, 403, "verify without the token");
    let r = post(&s, &br, "/portal/signout", &[]).await;
    assert_eq!(r.status, 403);
    // The sign-in form: without its pre-session cookie, or with a token
    // that is not the cookie's, refused.
    let (_, csrf) = signin_form(&s).await;
    let r = send(
        &s,
        Method::POST,
        "/portal/signin",
        &[("content-type", "application/x-www-form-urlencoded")],
        form(&[("csrf", &csrf), ("api_key", &key)]),
    )
    .await;
    assert_eq!(r.status, 403);
    let (cookie, _) = signin_form(&s).await;
    let r = send(
        &s,
        Method::POST,
        "/portal/signin",
        &[
            ("cookie", &cookie),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        form(&[("csrf", &csrf), ("api_key", &key)]),
    )
    .await;
    assert_eq!(r.status, 403);
    // Nothing above was counted.
    assert_eq!(s.count(&key, "portal.download").await, 0);
    assert_eq!(s.count(&key, "attestation.verify").await, 0);
    // With the token the same download works.
    assert_eq!(
        post(&s, &br, &download, &[("csrf", &br.csrf)]).await.status,
        200
    );
    assert_eq!(s.count(&key, "portal.download").await, 1);
}

async fn every_page_has_the_security_headers(b: Backend) {
    let s = TestServer::start(b, |_| {}).await;
    let (_, key) = s.tenant("acme").await;
    let signed = s.sign(&build_record()).await;
    let id = signed["attestationId"].as_str().unwrap().to_owned();
    let br = sign_in(&s, &key).await;
    let pages: Vec<(String, u16, &str)> = vec![
        ("/portal/signin".into(), 200, "text/html; charset=utf-8"),
        ("/portal/".into(), 200, "text/html; charset=utf-8"),
        (
            format!("/portal/repo?uri={}", urlencode(crate::support::REPO)),
            200,
            "text/html; charset=utf-8",
        ),
        (
            format!("/portal/releases/{id}"),
            200,
            "text/html; charset=utf-8",
        ),
        ("/portal/verify".into(), 200, "text/html; charset=utf-8"),
        ("/portal/usage".into(), 200, "text/html; charset=utf-8"),
        (
            "/portal/no/such/page".into(),
            404,
            "text/html; charset=utf-8",
        ),
        (
            "/portal/static/portal.css".into(),
            200,
            "text/css; charset=utf-8",
        ),
        ("/portal".into(), 308, ""),
    ];
    for (path, status, ct) in pages {
        // The sign-in page is seen signed out (signed in, it leads home).
        let cookie = (path != "/portal/signin").then_some(br.cookie.as_str());
        let r = get(&s, &path, cookie).await;
        assert_eq!(r.status, status, "{path}: {}", text(&r));
        let h = |n: &str| {
            r.headers
                .get(n)
                .unwrap_or_else(|| panic!("{path} lacks {n}"))
                .to_str()
                .unwrap()
                .to_owned()
        };
        let csp = h("content-security-policy");
        for directive in [
            "default-src 'none'",
            "style-src 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("script-src"), "no script allowed at all");
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(h("x-content-type-options"), "nosniff");
        assert_eq!(h("referrer-policy"), "same-origin");
        assert_eq!(h("x-frame-options"), "DENY");
        if !ct.is_empty() {
            assert_eq!(h("content-type"), ct, "{path}");
        }
        if path.ends_with(".css") {
            assert!(h("cache-control").contains("max-age"));
        } else {
            assert_eq!(h("cache-control"), "no-store", "{path}");
        }
        assert!(r.headers.get("strict-transport-security").is_none());
        if ct.starts_with("text/html") {
            let body = text(&r);
            assert!(body.starts_with("<!doctype html>"), "{path}");
            assert!(body.contains("<html lang=\"en\">"));
            assert!(body.contains("name=\"viewport\""));
            assert!(!body.contains("<script"), "{path} has a script");
            assert!(!body.contains(" style="), "{path} has an inline style");
        }
    }
    // Signed-out requests for pages: redirected, with the headers too.
    for path in [
        "/portal/",
        "/portal/usage",
        "/portal/verify",
        "/portal/repo?uri=x",
    ] {
        let r = get(&s, path, None).await;
        assert_redirects_to_signin(&r);
        assert!(r.headers.contains_key("content-security-policy"));
    }
    let r = get(&s, &format!("/portal/releases/{id}"), None).await;
    assert_redirects_to_signin(&r);
}

async fn pages_show_repositories_releases_and_a_chip_per_level(b: Backend) {
    let s = TestServer::start(b, |_| {}).await;
    let (_, key) = s.tenant("acme").await;
    let app = s.running.as_ref().unwrap().app.clone();
    let st = s.storage();
    // repo-a: two releases through the signing socket, the newer is v1.3.0.
    s.sign(&build_record()).await;
    let newest = s
        .sign(&fixtures::record(
            "https://github.com/example/repo-a",
            "refs/tags/v1.3.0",
            "repo-a",
            &fixtures::digest(1),
        ))
        .await;
    let newest_id = newest["attestationId"].as_str().unwrap().to_owned();
    let rec = |repo: &str, n| {
        fixtures::record(
            &format!("https://github.com/example/{repo}"),
            "refs/tags/v2.0.0",
            repo,
            &fixtures::digest(n),
        )
    };
    let tampered = fixtures::tampered(&app, &rec("tampered", 2));
    let l2 = fixtures::l2(&app, &rec("no-isolation", 3));
    let l1 = fixtures::l1(&rec("foreign-key", 4));
    for r in [&tampered, &l2, &l1] {
        st.insert_attestation(r).await.unwrap();
    }
    let br = sign_in(&s, &key).await;

    let home = text(&get(&s, "/portal/", Some(&br.cookie)).await);
    let row_of = |repo: &str| {
        let at = home
            .find(&format!(">github.com/example/{repo}</a>"))
            .unwrap_or_else(|| panic!("{repo} missing:\n{home}"));
        home[at..at + home[at..].find("</tr>").unwrap()].to_owned()
    };
    let a = row_of("repo-a");
    assert!(
        a.contains("<span class=\"chip chip-l3\">SLSA Build L3</span>"),
        "{a}"
    );
    assert!(a.contains(">v1.3.0</a>"), "the latest release: {a}");
    assert!(a.contains(&format!("/portal/releases/{newest_id}")));
    assert!(a.contains("https://cloister.example.com/builders/isolated@v1"));
    let t = row_of("tampered");
    assert!(
        t.contains("<span class=\"chip chip-none\">Unverified</span>"),
        "{t}"
    );
    assert!(t.contains(">signature_invalid</code>"), "{t}");
    let l = row_of("no-isolation");
    assert!(l.contains("chip-l2\">SLSA Build L2</span>"), "{l}");
    assert!(l.contains(">isolation_claim_missing</code>"), "{l}");
    let l = row_of("foreign-key");
    assert!(l.contains("chip-l1\">SLSA Build L1</span>"), "{l}");
    assert!(l.contains(">untrusted_key</code>"), "{l}");
    // One row per repository.
    assert_eq!(home.matches("<a class=\"repo\"").count(), 4);

    // The repository's releases, newest first, each with its chip.
    let repo = text(
        &get(
            &s,
            &format!(
                "/portal/repo?uri={}",
                urlencode("github.com/example/repo-a")
            ),
            Some(&br.cookie),
        )
        .await,
    );
    let v130 = repo.find(">v1.3.0</a>").expect("v1.3.0 listed");
    let v123 = repo.find(">v1.2.3</a>").expect("v1.2.3 listed");
    assert!(v130 < v123, "newest first");
    assert_eq!(repo.matches("chip-l3").count(), 2);

    // A release in full.
    let page = text(
        &get(
            &s,
            &format!("/portal/releases/{newest_id}"),
            Some(&br.cookie),
        )
        .await,
    );
    for needle in [
        "<span class=\"chip chip-l3\">SLSA Build L3</span>",
        "<code>sha256:0000000000000000000000000000000000000000000000000000000000000001</code>",
        "<code>refs/tags/v1.3.0</code>",
        "<code>0123456789abcdef0123456789abcdef01234567</code>",
        "No network: the build ran in a network namespace of its own with loopback only.",
        "Every capability was dropped from every set before the build ran.",
        "Nothing in the build could gain privileges",
        "sha256:5f2d9a1b3c4e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8",
        "cargo build --release --offline --locked",
        "snapshot:vendor",
        "&#34;predicateType&#34;: &#34;https://slsa.dev/provenance/v1&#34;",
        "Download repo-a.intoto.jsonl",
        "Download repo-a.sigstore.json",
    ] {
        assert!(
            page.contains(needle),
            "release page lacks {needle}:\n{page}"
        );
    }
    // The tampered release shows its reason in words too.
    let page = text(
        &get(
            &s,
            &format!("/portal/releases/{}", tampered.id),
            Some(&br.cookie),
        )
        .await,
    );
    assert!(page.contains(">signature_invalid</code>"));
    assert!(page.contains("chip-none"));

    // Unknown or malformed ids and unknown repositories: 404 pages.
    for path in [
        "/portal/releases/0193f2a4-7c1e-7b3a-9d2e-5f4c3b2a1908".to_owned(),
        "/portal/releases/not-a-uuid".to_owned(),
        format!(
            "/portal/repo?uri={}",
            urlencode("https://github.com/example/none")
        ),
    ] {
        let r = get(&s, &path, Some(&br.cookie)).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(text(&r).contains("Not found"));
    }
    // A query the page does not take: 400.
    let r = get(&s, "/portal/repo?uri=x&tenant=other", Some(&br.cookie)).await;
    assert_eq!(r.status, 400);
}

async fn downloads_are_metered_once_each_and_are_the_stored_files(b: Backend) {
    let s = TestServer::start(b, |_| {}).await;
    let (_, key) = s.tenant("acme").await;
    let signed = s.sign(&build_record()).await;
    let id = signed["attestationId"].as_str().unwrap().to_owned();
    let br = sign_in(&s, &key).await;

    let r = post(
        &s,
        &br,
        &format!("/portal/releases/{id}/intoto.jsonl"),
        &[("csrf", &br.csrf)],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/jsonl");
    assert_eq!(
        r.headers["content-disposition"],
        "attachment; filename=\"repo-a.intoto.jsonl\""
    );
    assert!(r.headers.contains_key("content-security-policy"));
    let line = text(&r);
    assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
    let env: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
    assert_eq!(env, signed["envelope"]);
    assert_eq!(s.count(&key, "portal.download").await, 1);

    let r = post(
        &s,
        &br,
        &format!("/portal/releases/{id}/sigstore.json"),
        &[("csrf", &br.csrf)],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(
        r.headers["content-disposition"],
        "attachment; filename=\"repo-a.sigstore.json\""
    );
    assert_eq!(r.json(), signed["bundle"]);
    assert_eq!(s.count(&key, "portal.download").await, 2);

    // What was downloaded verifies with the attestor's key.
    let keys = s.get("/v1/keys", Some(&key)).await.json();
    let pem = keys["keys"][0]["publicKey"].as_str().unwrap();
    let pk = cloister_attestor_core::keys::PublicKey::from_pem(pem).unwrap();
    let v = cloister_attestor_core::verify::verify(
        line.as_bytes(),
        &[pk],
        &cloister_attestor_core::verify::VerifyRequest {
            artifact_digest: crate::support::ARTIFACT.into(),
            source_uri: crate::support::REPO.into(),
            ..Default::default()
        },
    );
    assert!(v.verified, "{v:?}");

    // An unknown release: 404 and not counted. A GET is no download.
    let r = post(
        &s,
        &br,
        "/portal/releases/0193f2a4-7c1e-7b3a-9d2e-5f4c3b2a1908/intoto.jsonl",
        &[("csrf", &br.csrf)],
    )
    .await;
    assert_eq!(r.status, 404);
    let r = get(
        &s,
        &format!("/portal/releases/{id}/intoto.jsonl"),
        Some(&br.cookie),
    )
    .await;
    assert_eq!(r.status, 405);
    assert_eq!(s.count(&key, "portal.download").await, 2);
}

async fn verify_page_gives_the_api_verdict_and_meters_it_the_same_way(b: Backend) {
    let s = TestServer::start(b, |_| {}).await;
    let (_, key) = s.tenant("acme").await;
    s.sign(&build_record()).await;
    let br = sign_in(&s, &key).await;
    let csrf = br.csrf.clone();
    let artifact = crate::support::ARTIFACT;
    let bare = artifact.trim_start_matches("sha256:").to_uppercase();
    let unknown = fixtures::digest(7);

    let cases: Vec<(Vec<(&str, &str)>, serde_json::Value)> = vec![
        (
            vec![
                ("csrf", &csrf),
                ("artifact_digest", &bare),
                ("source_uri", "github.com/example/repo-a"),
                ("source_tag", "v1.2.3"),
            ],
            serde_json::json!({"artifactDigest": artifact, "sourceUri": "github.com/example/repo-a", "sourceTag": "v1.2.3"}),
        ),
        (
            vec![
                ("csrf", &csrf),
                ("artifact_digest", artifact),
                ("source_uri", "github.com/evil/repo"),
            ],
            serde_json::json!({"artifactDigest": artifact, "sourceUri": "github.com/evil/repo"}),
        ),
        (
            vec![
                ("csrf", &csrf),
                ("artifact_digest", artifact),
                ("source_uri", "github.com/example/repo-a"),
                ("source_tag", "v9"),
            ],
            serde_json::json!({"artifactDigest": artifact, "sourceUri": "github.com/example/repo-a", "sourceTag": "v9"}),
        ),
        (
            vec![
                ("csrf", &csrf),
                ("artifact_digest", &unknown),
                ("source_uri", "github.com/example/repo-a"),
            ],
            serde_json::json!({"artifactDigest": fixtures::digest(7), "sourceUri": "github.com/example/repo-a"}),
        ),
    ];
    for (i, (fields, api_body)) in cases.iter().enumerate() {
        let page = post_verify(&s, &br, fields, None).await;
        assert_eq!(page.status, 200, "{}", text(&page));
        let page = text(&page);
        let api = s.verify(&key, None, api_body).await.json();
        if api["verified"] == true {
            assert!(
                page.contains("<strong>Verified.</strong>"),
                "case {i}: {page}"
            );
            assert!(page.contains("<dt>SLSA level</dt><dd>Build L3</dd>"));
        } else {
            assert!(page.contains("chip-none\">Not verified</span>"), "case {i}");
            for r in api["reasons"].as_array().unwrap() {
                let code = r["code"].as_str().unwrap();
                assert!(
                    page.contains(&format!("<td><code>{code}</code></td>")),
                    "case {i}: {code}"
                );
            }
        }
        // The page and the API each counted one verification.
        assert_eq!(
            s.count(&key, "attestation.verify").await,
            2 * (i as i64 + 1)
        );
    }

    // What the API refuses (422, not metered), the page shows on the form.
    let page = post_verify(
        &s,
        &br,
        &[
            ("csrf", &csrf),
            ("artifact_digest", "sha256:abc"),
            ("source_uri", "x"),
        ],
        None,
    )
    .await;
    assert_eq!(page.status, 400);
    let page_text = text(&page);
    assert!(page_text.contains("class=\"error\""), "{page_text}");
    let api = s
        .verify(
            &key,
            None,
            &serde_json::json!({"artifactDigest": "sha256:abc", "sourceUri": "x"}),
        )
        .await;
    assert_eq!(api.status, 422);
    let api_message = api.json()["message"].as_str().unwrap().to_owned();
    assert!(
        page_text.contains(&escaped(&api_message)),
        "page shows the API's message {api_message}: {page_text}"
    );
    let page = post_verify(&s, &br, &[("csrf", &csrf), ("source_uri", "x")], None).await;
    assert_eq!(page.status, 400);
    assert!(text(&page).contains("Give the artifact"));
    assert_eq!(s.count(&key, "attestation.verify").await, 8);
}

async fn uploads_are_hashed_and_limited(b: Backend) {
    let s = TestServer::start(b, |c| c.portal.max_upload_bytes = 4096).await;
    let (_, key) = s.tenant("acme").await;
    // The fixture's subject digest is sha256("abc").
    s.sign(&build_record()).await;
    let br = sign_in(&s, &key).await;
    let csrf = br.csrf.clone();
    let r = post_verify(
        &s,
        &br,
        &[
            ("csrf", &csrf),
            ("artifact_digest", ""),
            ("source_uri", "github.com/example/repo-a"),
        ],
        Some(("repo-a", b"abc")),
    )
    .await;
    let page = text(&r);
    assert_eq!(r.status, 200, "{page}");
    assert!(page.contains("<strong>Verified.</strong>"), "{page}");
    assert!(page.contains(crate::support::ARTIFACT));
    assert!(page.contains("(from repo-a, 3 bytes)"));
    // A typed digest that disagrees with the file: refused, not counted.
    let r = post_verify(
        &s,
        &br,
        &[
            ("csrf", &csrf),
            ("artifact_digest", &fixtures::digest(1)),
            ("source_uri", "x"),
        ],
        Some(("repo-a", b"abc")),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(text(&r).contains("not the digest typed"));
    // Over the limit: 413.
    let big = vec![b'x'; 4097];
    let r = post_verify(
        &s,
        &br,
        &[("csrf", &csrf), ("source_uri", "x")],
        Some(("big", &big)),
    )
    .await;
    assert_eq!(r.status, 413, "{}", text(&r));
    assert!(text(&r).contains("larger than the limit of 4096 bytes"));
    // A file sent before the token is not read.
    let (ct, body) = multipart(&[], Some(("repo-a", b"abc")));
    let origin = s.base.clone();
    let r = send(
        &s,
        Method::POST,
        "/portal/verify",
        &[
            ("cookie", &br.cookie),
            ("content-type", &ct),
            ("origin", &origin),
        ],
        body,
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(s.count(&key, "attestation.verify").await, 1);
}

async fn usage_page_shows_only_the_tenants_own_usage(b: Backend) {
    // 2026-12-10T12:00:00Z.
    let clock = Arc::new(ManualClock::new(1_796_904_000_000));
    let s = TestServer::start_with_clock(b, |_| {}, clock.clone()).await;
    let (a_tenant, a_key) = s.tenant("tenant-a").await;
    let (_, b_key) = s.tenant("tenant-b").await;
    s.sign(&build_record()).await;
    let body = serde_json::json!({"artifactDigest": crate::support::ARTIFACT, "sourceUri": crate::support::REPO});
    s.verify(&a_key, None, &body).await;
    for _ in 0..3 {
        s.verify(&b_key, None, &body).await;
    }
    // A's events on another day of the month, straight into the store.
    let write = |n: u32| UsageWrite {
        tenant_id: a_tenant.clone(),
        event: "portal.download",
        units: 1,
        key: UsageKey::Generated(format!("k{n}")),
        request_hash: "h".into(),
        at_ms: 1_796_904_000_000 - 5 * 86_400_000,
        response: cloister_attestor::storage::StoredResponse {
            status: 200,
            body: Bytes::new(),
        },
    };
    s.storage()
        .commit_usage(&[write(1), write(2)], 0)
        .await
        .unwrap();

    let a = sign_in(&s, &a_key).await;
    let b2 = sign_in(&s, &b_key).await;
    let page_a = text(&get(&s, "/portal/usage", Some(&a.cookie)).await);
    let page_b = text(&get(&s, "/portal/usage", Some(&b2.cookie)).await);
    let count = |page: &str, event: &str| {
        let needle = format!("data-event=\"{event}\">");
        let at = page
            .find(&needle)
            .unwrap_or_else(|| panic!("{event}:\n{page}"))
            + needle.len();
        page[at..at + page[at..].find('<').unwrap()]
            .parse::<i64>()
            .unwrap()
    };
    assert!(page_a.contains("<strong id=\"period\">December 2026</strong>"));
    assert_eq!(count(&page_a, "attestation.verify"), 1);
    assert_eq!(count(&page_a, "portal.download"), 2);
    assert_eq!(count(&page_b, "attestation.verify"), 3);
    assert_eq!(count(&page_b, "portal.download"), 0);
    // The same numbers as the API's usage for that tenant.
    let api = s.get("/v1/usage", Some(&a_key)).await.json();
    assert_eq!(api["events"]["attestation.verify"], 1);
    assert_eq!(api["events"]["portal.download"], 2);
    // The chart: an SVG with a title, one bar segment per (day, event).
    assert!(page_a.contains("<svg id=\"usage-chart\""));
    assert!(page_a.contains("<title id=\"chart-title\">Usage per day in December 2026</title>"));
    assert_eq!(page_a.matches("<rect class=\"bar ").count(), 2, "{page_a}");
    assert!(
        page_a.contains("<title>Dec 5: 2 portal.download</title>"),
        "{page_a}"
    );
    assert!(page_a.contains("<title>Dec 10: 1 attestation.verify</title>"));
    assert_eq!(page_b.matches("<rect class=\"bar ").count(), 1);
    // Another month is empty; no parameter names another tenant.
    let nov = text(&get(&s, "/portal/usage?period=2026-11", Some(&a.cookie)).await);
    assert!(nov.contains("No usage in this month."));
    assert!(nov.contains("November 2026"));
    for q in [
        format!("?tenant={a_tenant}"),
        "?period=2026-13".into(),
        "?period=soon".into(),
    ] {
        let r = get(&s, &format!("/portal/usage{q}"), Some(&b2.cookie)).await;
        assert_eq!(r.status, 400, "{q}");
        assert!(!text(&r).contains("tenant-a"));
    }
}

async fn hostile_data_is_escaped(b: Backend) {
    let s = TestServer::start(b, |_| {}).await;
    let (_, key) = s.tenant("acme").await;
    let app = s.running.as_ref().unwrap().app.clone();
    let hostile = fixtures::record(
        "https://example.com/<script>alert(1)</script>",
        "refs/tags/<img src=x onerror=alert(2)>",
        "<b>bold</b>",
        &fixtures::digest(9),
    );
    let quoted = fixtures::record(
        "https://example.com/o/\"quoted'repo\"",
        "refs/tags/v1",
        "q",
        &fixtures::digest(10),
    );
    let rows = [fixtures::l3(&app, &hostile), fixtures::l3(&app, &quoted)];
    for r in &rows {
        s.storage().insert_attestation(r).await.unwrap();
    }
    let br = sign_in(&s, &key).await;
    let home = text(&get(&s, "/portal/", Some(&br.cookie)).await);
    let release = text(
        &get(
            &s,
            &format!("/portal/releases/{}", rows[0].id),
            Some(&br.cookie),
        )
        .await,
    );
    let repo = text(
        &get(
            &s,
            &format!("/portal/repo?uri={}", urlencode(&rows[1].source_uri)),
            Some(&br.cookie),
        )
        .await,
    );
    for page in [&home, &release, &repo] {
        for raw in [
            "<script>alert(1)",
            "<img src=x",
            "<b>bold",
            "\"quoted'repo\"",
        ] {
            assert!(!page.contains(raw), "unescaped {raw}");
        }
    }
    assert!(home.contains(&escaped("example.com/<script>alert(1)</script>")));
    assert!(home.contains(&escaped("<img src=x onerror=alert(2)>")));
    assert!(
        home.contains(&escaped("example.com/o/\"quoted'repo\"")),
        "{home}"
    );
    assert!(release.contains(&escaped("<b>bold</b>")));
    // Links carry the URI percent-encoded, never raw.
    assert!(home.contains(
        "/portal/repo?uri=https%3A%2F%2Fexample.com%2F%3Cscript%3Ealert%281%29%3C%2Fscript%3E"
    ));
    // The download's file name is made safe.
    let r = post(
        &s,
        &br,
        &format!("/portal/releases/{}/intoto.jsonl", rows[0].id),
        &[("csrf", &br.csrf)],
    )
    .await;
    assert_eq!(
        r.headers["content-disposition"],
        "attachment; filename=\"b_.intoto.jsonl\""
    );
}

async fn portal_storage_contract(b: Backend) {
    let db = TestDb::new(b).await;
    let st: Arc<dyn Storage> = db.open().await;
    let tenant = Tenant {
        id: "tn_1".into(),
        name: "acme".into(),
        plan: Plan::Pro,
        created_at_ms: 1,
    };
    st.create_tenant(&tenant).await.unwrap();
    let key = issue_key(st.as_ref(), "tn_1").await;
    let key_id = key.split('_').nth(1).unwrap().to_owned();
    let session = |hash: &str, expires| NewSession {
        token_hash: hash.into(),
        kind: SESSION_KIND_TENANT,
        tenant_id: "tn_1".into(),
        key_id: key_id.clone(),
        created_at_ms: 100,
        expires_at_ms: expires,
    };
    st.create_session(&session("h1", 1000)).await.unwrap();
    st.create_session(&session("h2", 2000)).await.unwrap();
    let s = st.find_session("h1", 999).await.unwrap().unwrap();
    assert_eq!(
        (
            s.kind.as_str(),
            s.tenant_id.as_str(),
            s.tenant_name.as_str(),
            s.api_key_live
        ),
        ("tenant", "tn_1", "acme", true)
    );
    assert!(
        st.find_session("h1", 1000).await.unwrap().is_none(),
        "expired"
    );
    assert!(st.find_session("nope", 0).await.unwrap().is_none());
    st.revoke_api_key(&key_id, 5).await.unwrap();
    assert!(
        !st.find_session("h2", 0)
            .await
            .unwrap()
            .unwrap()
            .api_key_live
    );
    assert_eq!(st.purge_sessions(1500).await.unwrap(), 1);
    assert!(st.delete_session("h2").await.unwrap());
    assert!(!st.delete_session("h2").await.unwrap());
    st.create_session(&session("h3", 5000)).await.unwrap();
    assert_eq!(st.delete_tenant_sessions("tn_1").await.unwrap(), 1);

    // Newest attestation per repository, ordered by URI, with subjects.
    assert!(st.latest_per_repository().await.unwrap().is_empty());
    let keypair = cloister_attestor_core::keys::KeyPair::generate(
        cloister_attestor_core::keys::Algorithm::EcdsaP256,
    )
    .unwrap();
    let mk = |repo: &str, n: u64| {
        let r = fixtures::record(
            &format!("https://h/{repo}"),
            "refs/tags/v1",
            repo,
            &fixtures::digest(n),
        );
        let rec: cloister_attestor_core::record::BuildRecord = serde_json::from_value(r).unwrap();
        let st = cloister_attestor_core::record::to_statement(&rec).unwrap();
        fixtures::row(&st, &keypair, &format!("https://h/{repo}"))
    };
    let mut ids = Vec::new();
    for (repo, n) in [("b", 1), ("a", 2), ("b", 3), ("c", 4), ("a", 5)] {
        let row = mk(repo, n);
        ids.push(row.id.clone());
        st.insert_attestation(&row).await.unwrap();
    }
    let latest = st.latest_per_repository().await.unwrap();
    let got: Vec<(&str, &str)> = latest
        .iter()
        .map(|r| (r.source_uri.as_str(), r.subjects[0].digest.as_str()))
        .collect();
    let (d5, d3, d4) = (
        fixtures::digest(5),
        fixtures::digest(3),
        fixtures::digest(4),
    );
    assert_eq!(
        got,
        vec![
            ("https://h/a", d5.as_str()),
            ("https://h/b", d3.as_str()),
            ("https://h/c", d4.as_str())
        ]
    );
    let one = st.get_attestation(&ids[1]).await.unwrap().unwrap();
    assert_eq!(one.subjects[0].digest, fixtures::digest(2));
    assert!(
        st.get_attestation("0193f2a4-7c1e-7b3a-9d2e-5f4c3b2a1908")
            .await
            .unwrap()
            .is_none()
    );

    // Usage per day and event, in the period only, for the tenant only.
    let other = Tenant {
        id: "tn_2".into(),
        name: "other".into(),
        plan: Plan::Starter,
        created_at_ms: 1,
    };
    st.create_tenant(&other).await.unwrap();
    let day = 86_400_000i64;
    let from = 1_000 * day;
    let w = |tenant: &str, event: &'static str, at: i64, n: u32| UsageWrite {
        tenant_id: tenant.into(),
        event,
        units: 1,
        key: UsageKey::Generated(format!("{tenant}-{event}-{at}-{n}")),
        request_hash: "h".into(),
        at_ms: at,
        response: cloister_attestor::storage::StoredResponse {
            status: 200,
            body: Bytes::new(),
        },
    };
    st.commit_usage(
        &[
            w("tn_1", "attestation.verify", from, 1),
            w("tn_1", "attestation.verify", from + day - 1, 2),
            w("tn_1", "portal.download", from + 2 * day, 3),
            w("tn_1", "attestation.verify", from + 2 * day + 5, 4),
            w("tn_1", "attestation.verify", from - 1, 5),
            w("tn_1", "attestation.verify", from + 30 * day, 6),
            w("tn_2", "attestation.verify", from, 7),
        ],
        0,
    )
    .await
    .unwrap();
    let days = st
        .usage_by_day("tn_1", from, from + 30 * day)
        .await
        .unwrap();
    let got: Vec<(i64, &str, i64)> = days
        .iter()
        .map(|d| (d.day, d.event.as_str(), d.units))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, "attestation.verify", 2),
            (2, "attestation.verify", 1),
            (2, "portal.download", 1)
        ]
    );
}

/// `cloister-attestor portal revoke-sessions` through the real binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_sessions_command_ends_every_session_of_a_tenant() {
    let db = TestDb::new(Backend::Sqlite).await;
    let st = db.open().await;
    let (tenant, key) = crate::support::tenant_with_key(st.as_ref(), "acme").await;
    let key_id = key.split('_').nth(1).unwrap().to_owned();
    for h in ["h1", "h2"] {
        st.create_session(&NewSession {
            token_hash: h.into(),
            kind: SESSION_KIND_TENANT,
            tenant_id: tenant.clone(),
            key_id: key_id.clone(),
            created_at_ms: 1,
            expires_at_ms: i64::MAX,
        })
        .await
        .unwrap();
    }
    st.close().await;
    let run = |args: &[&str]| {
        std::process::Command::new(crate::support::bin())
            .args(args)
            .arg("--state-dir")
            .arg(db.dir.path().join("state"))
            .env_remove("CLOISTER_ATTESTOR_CONFIG")
            .env_remove("CLOISTER_ATTESTOR_DATABASE_URL")
            .output()
            .unwrap()
    };
    let out = run(&["portal", "revoke-sessions", "acme", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, serde_json::json!({ "tenant": tenant, "revoked": 2 }));
    let st = db.open().await;
    assert!(st.find_session("h1", 0).await.unwrap().is_none());
    st.close().await;
    let out = run(&["portal", "revoke-sessions", "nobody"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        "cloister-attestor portal: no tenant \"nobody\"",
        "one line"
    );
}

/// Over TLS the cookies are `Secure` and pages carry HSTS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_cookies_are_secure_and_pages_carry_hsts() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let certs = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let s = TestServer::start(Backend::Sqlite, |c| {
        c.tls = Some(cloister_attestor::config::TlsConfig {
            cert: cert_path.clone(),
            key: key_path.clone(),
        })
    })
    .await;
    let (_, key) = s.tenant("acme").await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let addr = s.running.as_ref().unwrap().addr;
    let request =
        |method: Method, path: &str, headers: Vec<(&'static str, String)>, body: String| {
            let connector = connector.clone();
            let path = path.to_owned();
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                let tls = connector
                    .connect(
                        rustls_pki_types::ServerName::try_from("localhost").unwrap(),
                        tcp,
                    )
                    .await
                    .unwrap();
                let (mut send, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                let mut req = hyper::Request::builder()
                    .method(method)
                    .uri(path)
                    .header("host", "localhost");
                for (k, v) in headers {
                    req = req.header(k, v);
                }
                let resp = send
                    .send_request(
                        req.body(http_body_util::Full::new(Bytes::from(body)))
                            .unwrap(),
                    )
                    .await
                    .unwrap();
                let (parts, body) = resp.into_parts();
                use http_body_util::BodyExt as _;
                Resp {
                    status: parts.status,
                    headers: parts.headers,
                    body: body.collect().await.unwrap().to_bytes(),
                }
            }
        };
    let page = request(Method::GET, "/portal/signin", vec![], String::new()).await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.headers["strict-transport-security"],
        "max-age=31536000"
    );
    let pre = set_cookie(&page, "cloister_portal_signin").unwrap();
    assert!(pre.contains("Secure"), "{pre}");
    let r = request(
        Method::POST,
        "/portal/signin",
        vec![
            ("cookie", cookie_value(&pre)),
            ("content-type", "application/x-www-form-urlencoded".into()),
        ],
        form(&[("csrf", &csrf_of(&text(&page))), ("api_key", &key)]),
    )
    .await;
    assert_eq!(r.status, 303, "{}", text(&r));
    let session = set_cookie(&r, "cloister_portal").unwrap();
    for attr in ["Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(session.contains(attr), "{session}");
    }
}

async fn verify_and_downloads_share_the_api_keys_rate_limit(b: Backend) {
    let s = TestServer::start(b, |c| {
        c.rate_limit.per_second = 1;
        c.rate_limit.burst = 2;
    })
    .await;
    let (_, key) = s.tenant("acme").await;
    let signed = s.sign(&build_record()).await;
    let id = signed["attestationId"].as_str().unwrap().to_owned();
    let br = sign_in(&s, &key).await;
    let fields = [
        ("csrf", br.csrf.as_str()),
        ("artifact_digest", crate::support::ARTIFACT),
        ("source_uri", crate::support::REPO),
    ];
    let download = format!("/portal/releases/{id}/intoto.jsonl");
    // One token a second with a burst of two: a few quick requests run out
    // (unless each took a second), for both forms, with Retry-After.
    let mut verify_statuses = Vec::new();
    for _ in 0..5 {
        let r = post_verify(&s, &br, &fields, None).await;
        verify_statuses.push(r.status.as_u16());
        if r.status == 429 {
            assert!(r.headers.contains_key("retry-after"));
            break;
        }
    }
    assert_eq!(verify_statuses[0], 200);
    assert_eq!(verify_statuses.last(), Some(&429), "{verify_statuses:?}");
    let mut download_statuses = Vec::new();
    for _ in 0..5 {
        let r = post(&s, &br, &download, &[("csrf", &br.csrf)]).await;
        download_statuses.push(r.status.as_u16());
        if r.status == 429 {
            break;
        }
    }
    assert_eq!(
        download_statuses.last(),
        Some(&429),
        "{download_statuses:?}"
    );
    // Pages themselves are not limited.
    assert_eq!(get(&s, "/portal/", Some(&br.cookie)).await.status, 200);
}
