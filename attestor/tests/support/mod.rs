//! Shared helpers for the integration tests.

#![allow(dead_code)]

use bytes::Bytes;
use cloister_attestor::api_key::{generate_key, hash_key};
use cloister_attestor::clock::Clock;
use cloister_attestor::config::Config;
use cloister_attestor::server::{self, Running};
use cloister_attestor::storage::{self, ApiKeyInfo, Plan, Storage, Tenant, postgres::PgStorage};
use http_body_util::{BodyExt as _, Full};
use hyper::{HeaderMap, Method, StatusCode};
use std::sync::Arc;

/// Which storage backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates `NAME::sqlite` and `NAME::postgres` tests from `async fn NAME(Backend)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::support::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::support::Backend::Postgres).await
            }
        }
    )*};
}

/// The PostgreSQL server for tests; a missing variable fails the test.
pub fn pg_base_url() -> String {
    std::env::var("CLOISTER_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "CLOISTER_TEST_DATABASE_URL is not set: the PostgreSQL tests need a server \
             (source .ci/setup.d/40-postgres.sh as root to install and start one)"
        )
    })
}

/// A fresh, migrated database: a SQLite file in a tempdir, or a PostgreSQL
/// schema of its own (dropped when this is dropped).
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    pub dir: tempfile::TempDir,
    schema: Option<(String, String)>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        match backend {
            Backend::Sqlite => {
                let url = format!(
                    "sqlite://{}",
                    dir.path().join("state/attestor.db").display()
                );
                Self {
                    backend,
                    url,
                    dir,
                    schema: None,
                }
            }
            Backend::Postgres => {
                let base = pg_base_url();
                let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
                let s = PgStorage::open(&base, Some(&schema)).await.unwrap();
                s.close().await;
                let sep = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{sep}options[search_path]={schema}");
                Self {
                    backend,
                    url,
                    dir,
                    schema: Some((base, schema)),
                }
            }
        }
    }

    /// Opens (and migrates) the storage.
    pub async fn open(&self) -> Arc<dyn Storage> {
        storage::open(&self.url).await.unwrap()
    }

    /// A config whose state dir is this tempdir and whose storage is this db.
    pub fn config(&self) -> Config {
        Config {
            state_dir: self.dir.path().join("state"),
            database_url: Some(self.url.clone()),
            listen: "127.0.0.1:0".parse().unwrap(),
            rate_limit: cloister_attestor::config::RateLimit {
                per_second: 100_000,
                burst: 100_000,
            },
            ..Config::default()
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((base, schema)) = self.schema.take() {
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(PgStorage::drop_schema(&base, &schema))
                    .unwrap();
            })
            .join()
            .unwrap();
        }
    }
}

/// Creates a tenant and issues it a key, as the CLIs do; returns (tenant id, key).
pub async fn tenant_with_key(storage: &dyn Storage, name: &str) -> (String, String) {
    let tenant = Tenant {
        id: format!("tn_{}", uuid::Uuid::now_v7().simple()),
        name: name.to_owned(),
        plan: Plan::Pro,
        created_at_ms: 1,
    };
    storage.create_tenant(&tenant).await.unwrap();
    let key = issue_key(storage, &tenant.id).await;
    (tenant.id, key)
}

pub async fn issue_key(storage: &dyn Storage, tenant_id: &str) -> String {
    let key = generate_key().unwrap();
    storage
        .insert_api_key(
            &ApiKeyInfo {
                id: key.id.clone(),
                tenant_id: tenant_id.to_owned(),
                created_at_ms: 1,
                revoked_at_ms: None,
            },
            &hash_key(&key.secret),
        )
        .await
        .unwrap();
    key.secret
}

/// An in-process server on its own database.
pub struct TestServer {
    pub db: TestDb,
    pub running: Option<Running>,
    pub base: String,
    pub client: Client,
}

impl TestServer {
    pub async fn start(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_with_clock(
            backend,
            tweak,
            Arc::new(cloister_attestor::clock::SystemClock),
        )
        .await
    }

    pub async fn start_with_clock(
        backend: Backend,
        tweak: impl FnOnce(&mut Config),
        clock: Arc<dyn Clock>,
    ) -> Self {
        let db = TestDb::new(backend).await;
        let mut config = db.config();
        tweak(&mut config);
        config.validate().unwrap();
        let running = server::start(config, clock).await.unwrap();
        let base = format!("http://{}", running.addr);
        Self {
            db,
            running: Some(running),
            base,
            client: Client::new(),
        }
    }

    pub fn storage(&self) -> Arc<dyn Storage> {
        self.running.as_ref().unwrap().app.storage.clone()
    }

    pub async fn tenant(&self, name: &str) -> (String, String) {
        tenant_with_key(self.storage().as_ref(), name).await
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> Resp {
        let mut h = vec![];
        if let Some(k) = key {
            h.push(("authorization".to_owned(), format!("Bearer {k}")));
        }
        self.client
            .send(
                Method::GET,
                &format!("{}{path}", self.base),
                &h,
                Bytes::new(),
            )
            .await
    }

    pub async fn post(&self, path: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Resp {
        let h: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.client
            .send(
                Method::POST,
                &format!("{}{path}", self.base),
                &h,
                body.into(),
            )
            .await
    }

    /// Stops gracefully and waits for the drain.
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
            r.wait().await.unwrap();
        }
    }
}

/// A response, body fully read.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The stable error code of an error response.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }
}

/// A small HTTP/1.1 client (keep-alive pool) for plain-HTTP tests.
#[derive(Clone)]
pub struct Client {
    inner: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

impl Client {
    pub fn new() -> Self {
        let inner =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        Self { inner }
    }

    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(String, String)],
        body: Bytes,
    ) -> Resp {
        self.try_send(method, url, headers, body).await.unwrap()
    }

    pub async fn try_send(
        &self,
        method: Method,
        url: &str,
        headers: &[(String, String)],
        body: Bytes,
    ) -> Result<Resp, String> {
        let mut req = hyper::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let resp = self.inner.request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// Path of the real binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cloister-attestor")
}

/// One HTTP/1.1 request over a Unix socket (the signing socket).
pub async fn unix_request(
    socket: &std::path::Path,
    method: Method,
    path: &str,
    body: impl Into<Bytes>,
) -> Resp {
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(body.into()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Resp {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// The build record fixture (the shape the runner daemon sends).
pub fn build_record() -> serde_json::Value {
    serde_json::from_str(include_str!("../golden/build-record.json")).unwrap()
}

/// Signs `record` through the signing socket `sock` (POST /v1/sign, 200);
/// returns the response.
pub async fn sign_at(sock: &std::path::Path, record: &serde_json::Value) -> serde_json::Value {
    let r = unix_request(
        sock,
        Method::POST,
        "/v1/sign",
        serde_json::to_vec(record).unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

/// The fixture's artifact digest and repository.
pub const ARTIFACT: &str =
    "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
pub const REPO: &str = "https://github.com/example/repo-a";

impl TestServer {
    /// Signs the fixture record (optionally changed) through the signing socket.
    pub async fn sign(&self, record: &serde_json::Value) -> serde_json::Value {
        sign_at(&self.running.as_ref().unwrap().sign_socket, record).await
    }

    /// POST /v1/verify with a key and optional Idempotency-Key.
    pub async fn verify(&self, key: &str, idem: Option<&str>, body: &serde_json::Value) -> Resp {
        self.verify_raw(key, idem, serde_json::to_vec(body).unwrap())
            .await
    }

    pub async fn verify_raw(&self, key: &str, idem: Option<&str>, body: impl Into<Bytes>) -> Resp {
        let auth = format!("Bearer {key}");
        let mut h = vec![
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        if let Some(k) = idem {
            h.push(("idempotency-key", k));
        }
        self.post("/v1/verify", &h, body).await
    }

    /// The caller's count of one event this month.
    pub async fn count(&self, key: &str, event: &str) -> i64 {
        self.get("/v1/usage", Some(key)).await.json()["events"][event]
            .as_i64()
            .unwrap()
    }
}
