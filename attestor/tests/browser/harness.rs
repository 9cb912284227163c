//! What every browser test shares: one attestor (in process, on a runtime
//! of its own, seeded once with the fixture repositories) and one
//! chromedriver per test binary; each test opens its own Chromium session
//! with a fresh profile directory, so cookies never cross tests.
//!
//! Chromium and chromedriver come from Debian (`.ci/setup.d/70-portal.sh`
//! exports their paths); without them every test fails and says so. The
//! flags keep Chromium off the network (this machine has none, and its
//! background services would stall on refused connections).
//!
//! On failure a test writes a screenshot of every page it visited, and of
//! the page it failed on, to `target/tmp/portal-browser/<test>/`.

use crate::fixtures;
use crate::support::build_record;
use cloister_attestor::clock::SystemClock;
use cloister_attestor::config::Config;
use cloister_attestor::service::App;
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt as _;
use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The flags every Chromium gets.
pub const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
];

/// Releases the fixtures put in the store.
#[derive(Debug, Clone)]
pub struct Seeded {
    /// repo-a v1.2.3, signed through the signing socket (L3).
    pub l3: String,
    /// `github.com/example/tampered`: payload changed after signing.
    pub tampered: String,
    /// A repository named `<script>alert(1)</script>` with a tag holding
    /// an `<img onerror>` and a subject named `<b>bold</b>`.
    pub hostile: String,
    /// A source URI with quotes.
    pub quoted: String,
}

/// The shared attestor and chromedriver.
pub struct Env {
    /// `http://127.0.0.1:PORT`: the portal as the tests open it.
    pub base: String,
    /// The attacker's pages, same site as the portal (another port).
    pub attacker_same_site: String,
    /// The same pages on another site (`localhost` is not `127.0.0.1`).
    pub attacker_cross_site: String,
    pub app: Arc<App>,
    pub handle: tokio::runtime::Handle,
    pub seeded: Seeded,
    webdriver: String,
    chromium: PathBuf,
    /// chromedriver runs under a shell that kills it when this pipe
    /// closes, i.e. when the test binary exits, however it exits.
    _watchdog: Mutex<(Child, ChildStdin)>,
    _dir: tempfile::TempDir,
}

static ENV: OnceLock<Env> = OnceLock::new();

fn tool(var: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "{name} not found (${var} unset and not on PATH): the browser tests need Debian's \
         chromium and chromium-driver; run `source .ci/setup.d/70-portal.sh` as root"
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The shared environment, started on first use.
pub fn env() -> &'static Env {
    ENV.get_or_init(start)
}

fn start() -> Env {
    let chromium = tool("CLOISTER_TEST_CHROMIUM", "chromium");
    let chromedriver = tool("CLOISTER_TEST_CHROMEDRIVER", "chromedriver");
    let dir = tempfile::tempdir().unwrap();

    // chromedriver, killed when our end of its watchdog's stdin closes.
    let port = free_port();
    let mut watchdog = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" --port="$1" --log-level=WARNING & pid=$!; read _; kill $pid; wait"#)
        .arg(&chromedriver)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stdin = watchdog.stdin.take().unwrap();
    let webdriver = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver ({}) did not listen on port {port}",
            chromedriver.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The attestor, on a runtime that lives as long as the test binary.
    let state = dir.path().join("state");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let handle = rt.handle().clone();
        rt.block_on(async move {
            let config = Config {
                state_dir: state,
                listen: "127.0.0.1:0".parse().unwrap(),
                ..Config::default()
            };
            let running = cloister_attestor::server::start(config, Arc::new(SystemClock))
                .await
                .unwrap();
            let app = running.app.clone();
            let seeded = seed(&app, &running.sign_socket).await;
            let attacker = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let attacker_port = attacker.local_addr().unwrap().port();
            tokio::spawn(async move {
                axum::serve(attacker, attacker_router()).await.unwrap();
            });
            tx.send((running.addr, attacker_port, app, seeded, handle))
                .unwrap();
            // Serve until the process exits.
            let _running = running;
            std::future::pending::<()>().await;
        });
    });
    let (addr, attacker_port, app, seeded, handle) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the attestor started");
    Env {
        base: format!("http://{addr}"),
        attacker_same_site: format!("http://127.0.0.1:{attacker_port}"),
        attacker_cross_site: format!("http://localhost:{attacker_port}"),
        app,
        handle,
        seeded,
        webdriver,
        chromium,
        _watchdog: Mutex::new((watchdog, stdin)),
        _dir: dir,
    }
}

/// The fixture repositories: an L3 release through the signing socket,
/// a tampered one, and hostile names.
async fn seed(app: &Arc<App>, socket: &Path) -> Seeded {
    let signed = crate::support::sign_at(socket, &build_record()).await;
    let rec = |uri: &str, git_ref: &str, subject: &str, n| {
        fixtures::record(uri, git_ref, subject, &fixtures::digest(n))
    };
    let tampered = fixtures::tampered(
        app,
        &rec(
            "https://github.com/example/tampered",
            "refs/tags/v0.9.0",
            "tampered",
            1,
        ),
    );
    let hostile = fixtures::l3(
        app,
        &rec(
            "https://example.com/<script>alert(1)</script>",
            "refs/tags/<img src=x onerror=alert(2)>",
            "<b>bold</b>",
            2,
        ),
    );
    let quoted = fixtures::l3(
        app,
        &rec(
            "https://example.com/o/\"quoted'repo\"",
            "refs/tags/v1",
            "q",
            3,
        ),
    );
    for r in [&tampered, &hostile, &quoted] {
        app.storage.insert_attestation(r).await.unwrap();
    }
    Seeded {
        l3: signed["attestationId"].as_str().unwrap().to_owned(),
        tampered: tampered.id,
        hostile: hostile.id,
        quoted: quoted.id,
    }
}

/// The attacker's site: `GET /forge?action=URL[&csrf=T]` is a page with a
/// form posting to `action` (no script: the test clicks its button).
fn attacker_router() -> axum::Router {
    use axum::extract::Query;
    use std::collections::HashMap;
    axum::Router::new().route(
        "/forge",
        axum::routing::get(|Query(q): Query<HashMap<String, String>>| async move {
            let esc = |s: &str| {
                s.replace('&', "&amp;")
                    .replace('"', "&quot;")
                    .replace('<', "&lt;")
            };
            let action = esc(q.get("action").map(String::as_str).unwrap_or(""));
            let csrf = q
                .get("csrf")
                .map(|c| format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(c)))
                .unwrap_or_default();
            axum::response::Html(format!(
                "<!doctype html><title>Win a prize</title><form method=\"post\" action=\"{action}\">\
                 {csrf}<button id=\"forged\" type=\"submit\">Claim</button></form>"
            ))
        }),
    )
}

impl Env {
    /// Runs `f` on the attestor's runtime (its storage lives there).
    pub async fn on_server<T: Send + 'static>(
        &self,
        f: impl Future<Output = T> + Send + 'static,
    ) -> T {
        self.handle.spawn(f).await.unwrap()
    }

    /// A new tenant with a key: (tenant id, key).
    pub async fn tenant(&self, name: &str) -> (String, String) {
        let app = self.app.clone();
        let name = format!("{name}-{}", uuid::Uuid::now_v7().simple());
        self.on_server(
            async move { crate::support::tenant_with_key(app.storage.as_ref(), &name).await },
        )
        .await
    }

    /// A tenant's count of `event` this month, through the API.
    pub async fn count(&self, key: &str, event: &str) -> i64 {
        let client = crate::support::Client::new();
        let r = client
            .send(
                hyper::Method::GET,
                &format!("{}/v1/usage", self.base),
                &[("authorization".into(), format!("Bearer {key}"))],
                bytes::Bytes::new(),
            )
            .await;
        r.json()["events"][event].as_i64().unwrap()
    }
}

/// One Chromium session, its downloads directory, and the screenshots of
/// the pages it visited (kept in memory, written out on failure).
pub struct Browser {
    pub c: Client,
    pub downloads: tempfile::TempDir,
    name: &'static str,
    shots: Vec<(String, Vec<u8>)>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A fresh Chromium (new profile) on the shared chromedriver.
    pub async fn open(name: &'static str) -> Browser {
        let e = env();
        let profile = tempfile::tempdir().unwrap();
        let downloads = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": e.chromium,
                "args": args,
                "prefs": {
                    "download.default_directory": downloads.path(),
                    "download.prompt_for_download": false,
                    "safebrowsing.enabled": false,
                },
            },
        });
        let caps = match caps {
            serde_json::Value::Object(m) => m,
            _ => unreachable!(),
        };
        let c = ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps)
            .connect(&e.webdriver)
            .await
            .unwrap_or_else(|err| {
                panic!(
                    "starting {} through chromedriver: {err}",
                    e.chromium.display()
                )
            });
        Browser {
            c,
            downloads,
            name,
            shots: Vec::new(),
            _profile: profile,
        }
    }

    /// Keeps a screenshot of the current page under `label`.
    pub async fn shot(&mut self, label: &str) {
        if let Ok(png) = self.c.screenshot().await {
            self.shots
                .push((format!("{:02}-{label}", self.shots.len()), png));
        }
    }

    /// Opens a portal path and keeps its screenshot.
    pub async fn goto(&mut self, path: &str) {
        let url = format!("{}{path}", env().base);
        self.c.goto(&url).await.unwrap();
        self.shot(
            path.trim_start_matches('/')
                .replace(['/', '?', '&', '='], "_")
                .as_str(),
        )
        .await;
    }

    /// Clicks what `css` finds (a link or a submit button), then keeps a
    /// screenshot of where it led.
    pub async fn click(&mut self, css: &str, label: &str) {
        self.c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
            .click()
            .await
            .unwrap();
        self.shot(label).await;
    }

    /// The text of the first element `css` finds.
    pub async fn text(&self, css: &str) -> String {
        self.c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
            .text()
            .await
            .unwrap()
    }

    /// How many elements `css` finds.
    pub async fn count(&self, css: &str) -> usize {
        self.c.find_all(Locator::Css(css)).await.unwrap().len()
    }

    /// The path (and query) of the current URL.
    pub async fn path(&self) -> String {
        let u = self.c.current_url().await.unwrap();
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        }
    }

    /// Types into the input with this id (after clearing it).
    pub async fn fill(&self, id: &str, value: &str) {
        let el = self.c.find(Locator::Id(id)).await.unwrap();
        el.clear().await.unwrap();
        el.send_keys(value).await.unwrap();
    }

    /// Signs in through the form.
    pub async fn sign_in(&mut self, key: &str) {
        self.goto("/portal/signin").await;
        self.fill("api_key", key).await;
        self.click("form.stack button[type=submit]", "signed-in")
            .await;
        assert_eq!(self.path().await, "/portal/", "signed in and home");
    }

    /// The counts of the usage page: (attestation.verify, portal.download).
    pub async fn usage(&mut self) -> (i64, i64) {
        self.goto("/portal/usage").await;
        let n = |t: String| t.trim().parse::<i64>().unwrap();
        (
            n(self.text("td[data-event='attestation.verify']").await),
            n(self.text("td[data-event='portal.download']").await),
        )
    }

    /// A file named `name` in the downloads directory, once complete.
    pub async fn downloaded(&self, name: &str) -> Vec<u8> {
        let path = self.downloads.path().join(name);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let partial = std::fs::read_dir(self.downloads.path())
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".crdownload"));
            if path.is_file() && !partial {
                return std::fs::read(&path).unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "{name} was not downloaded; the directory holds {:?}",
                std::fs::read_dir(self.downloads.path())
                    .unwrap()
                    .flatten()
                    .map(|e| e.file_name())
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn shot_dir(&self) -> PathBuf {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("portal-browser")
            .join(self.name)
    }

    /// Ends the session; on a failed scenario, first writes the
    /// screenshots, then re-raises the failure.
    /// With `CLOISTER_PORTAL_SCREENSHOTS=always` the screenshots are written
    /// for passing tests too (to look at the pages).
    pub async fn finish(mut self, outcome: std::thread::Result<()>) {
        let always = std::env::var_os("CLOISTER_PORTAL_SCREENSHOTS").is_some_and(|v| v == "always");
        if outcome.is_err() {
            self.shot("failed-here").await;
        }
        if outcome.is_err() || always {
            let dir = self.shot_dir();
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            for (label, png) in &self.shots {
                let mut f = std::fs::File::create(dir.join(format!("{label}.png"))).unwrap();
                f.write_all(png).unwrap();
            }
            eprintln!("screenshots of {}: {}", self.name, dir.display());
        }
        if let Err(panic) = outcome {
            let _ = self.c.close().await;
            std::panic::resume_unwind(panic);
        }
        self.c.close().await.unwrap();
    }
}

/// Runs a scenario in a fresh browser; screenshots on failure.
pub async fn scenario<F>(name: &'static str, f: F)
where
    F: for<'a> AsyncFnOnce(&'a mut Browser),
{
    let mut b = Browser::open(name).await;
    let outcome = std::panic::AssertUnwindSafe(f(&mut b)).catch_unwind().await;
    b.finish(outcome).await;
}
