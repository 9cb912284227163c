//! Running the attestor: open the storage and keyring, bind the consumer
//! listener (plain TCP, or TLS through rustls when `tls` is configured) and
//! the signing socket (mode 0660, optionally chgrp'd), serve both until
//! shutdown, then drain: in-flight requests finish, the metering task
//! commits what is queued, the storage closes.
//!
//! The one place that sees both the service and the portal: it composes the
//! consumer router from the service's routes and the portal's (each with
//! its own state), and the signing router from the signing endpoint.

use crate::clock::Clock;
use crate::config::Config;
use crate::http::AppError;
use crate::keyring::{Keyring, KeyringError};
use crate::metrics;
use crate::portal::{self, PortalState};
use crate::service::{self, App, AppState};
use crate::storage::{self, StorageError};
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::ListenerExt as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Errors starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot create state dir {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("keyring: {0}")]
    Keyring(#[from] KeyringError),
    #[error("keyring: {0}")]
    PassphraseRequired(KeyringError),
    #[error("keyring passphrase: {0}")]
    Passphrase(#[from] crate::keyring::PassphraseError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("signing {0}")]
    Socket(#[source] cloister_socket::BindError),
    #[error("signing socket group {0:?} does not exist")]
    Group(String),
    #[error("tls: {0}")]
    Tls(String),
    #[error("server task failed: {0}")]
    Join(String),
    #[error("policy manifest: {0}")]
    Policy(String),
    #[error("billing config: {0}")]
    Billing(String),
}

/// A running server.
#[derive(Debug)]
pub struct Running {
    /// The consumer API's bound address (useful with port 0).
    pub addr: SocketAddr,
    /// Whether the consumer API speaks TLS.
    pub tls: bool,
    /// The signing socket.
    pub sign_socket: PathBuf,
    pub app: Arc<App>,
    shutdown: CancellationToken,
    servers: Vec<JoinHandle<std::io::Result<()>>>,
    meter_task: JoinHandle<()>,
}

impl Running {
    /// The token that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Asks the server to stop (graceful).
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits until the server has stopped and drained.
    pub async fn wait(self) -> Result<(), ServeError> {
        let Running {
            app,
            servers,
            meter_task,
            sign_socket,
            ..
        } = self;
        let mut first_err = None;
        for s in servers {
            match s.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => first_err = first_err.or(Some(ServeError::Join(e.to_string()))),
                Err(e) => first_err = first_err.or(Some(ServeError::Join(e.to_string()))),
            }
        }
        let storage = app.storage.clone();
        drop(app);
        // The routers held the other references; with them gone the meter's
        // channel closes and the committer finishes what is queued.
        if let Err(e) = meter_task.await {
            first_err = first_err.or(Some(ServeError::Join(e.to_string())));
        }
        storage.close().await;
        let _ = std::fs::remove_file(&sign_socket);
        first_err.map_or(Ok(()), Err)
    }
}

/// Opens everything and starts serving; returns once both listeners are bound.
pub async fn start(config: Config, clock: Arc<dyn Clock>) -> Result<Running, ServeError> {
    create_state_dir(&config.state_dir)?;
    let storage = storage::open(&config.storage_url()).await?;
    // The passphrase (if any) is read once, kept zeroized-on-drop inside the
    // keyring, and never logged: only its source is in the config.
    let passphrase = crate::keyring::read_passphrase(
        config.key_passphrase_file.as_deref(),
        config.key_passphrase_env.as_deref(),
    )?;
    let keyring = Arc::new(Keyring::open(&config.state_dir)?.with_passphrase(passphrase));
    // "Signing key generated on first use": an empty keyring gets one now
    // (encrypted with the passphrase when one is given).
    let signer = keyring
        .ensure_active(config.key_algorithm)
        .map_err(|e| match e {
            KeyringError::Key {
                source: cloister_attestor_core::keys::KeyError::PassphraseRequired,
                ..
            } => ServeError::PassphraseRequired(e),
            e => ServeError::Keyring(e),
        })?;
    tracing::info!(keyid = signer.keyid(), "signing key active");
    let policy_manifest =
        service::audit::EvidenceState::load_configured(&config, &keyring, clock.now_ms())
            .map_err(ServeError::Policy)?;
    let tls = config.tls.as_ref().map(load_tls).transpose()?;
    let sign_path = config.sign_socket_path();
    let sign_group = config
        .sign_socket_group
        .as_ref()
        .map(|g| resolve_group(g))
        .transpose()?;
    let tcp = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = tcp.local_addr().map_err(|source| ServeError::Bind {
        addr: config.listen,
        source,
    })?;
    let unix = bind_socket(&sign_path, sign_group)?;

    config
        .billing
        .validate()
        .map_err(|e| ServeError::Billing(e.to_string()))?;
    let portal = Arc::new(PortalState::new(&config.portal));
    let (app, meter_task) = App::new(config, storage, keyring, clock);
    let state = AppState(app.clone());
    app.evidence.set_configured(policy_manifest);
    let shutdown = CancellationToken::new();
    let consumer = consumer_router(state.clone(), portal.clone());
    let signing = signing_router(state.clone());

    let mut servers = Vec::new();
    let is_tls = tls.is_some();
    match tls {
        None => {
            let listener = tcp.tap_io(|s: &mut TcpStream| {
                let _ = s.set_nodelay(true);
            });
            let token = shutdown.clone();
            servers.push(tokio::spawn(async move {
                axum::serve(listener, consumer)
                    .with_graceful_shutdown(token.cancelled_owned())
                    .await
            }));
        }
        Some(acceptor) => {
            let listener = TlsListener::start(tcp, acceptor, shutdown.clone());
            let token = shutdown.clone();
            servers.push(tokio::spawn(async move {
                axum::serve(listener, consumer)
                    .with_graceful_shutdown(token.cancelled_owned())
                    .await
            }));
        }
    }
    let token = shutdown.clone();
    servers.push(tokio::spawn(async move {
        axum::serve(unix, signing)
            .with_graceful_shutdown(token.cancelled_owned())
            .await
    }));
    service::audit::spawn_refresher(state.clone(), Duration::from_secs(30), shutdown.clone());
    servers.extend(service::billing::spawn_worker(&state, shutdown.clone()));
    service::billing::spawn_gauges(state.clone(), shutdown.clone());
    spawn_maintenance(state, portal, shutdown.clone());

    Ok(Running {
        addr,
        tls: is_tls,
        sign_socket: sign_path,
        app,
        shutdown,
        servers,
        meter_task,
    })
}

/// The consumer router (TCP listener): the service's API and the portal.
pub fn consumer_router(state: AppState, portal: Arc<PortalState>) -> Router {
    Router::new()
        .merge(service::routes())
        .merge(portal::routes(state.clone(), portal))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// The signing router (Unix socket, runner daemon only).
pub fn signing_router(state: AppState) -> Router {
    Router::new()
        .merge(service::sign::routes())
        .route("/healthz", axum::routing::get(service::ops::healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

async fn not_found() -> AppError {
    AppError::NotFound
}

async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}

/// Metrics and a debug log line per request. Logs carry method, route
/// template, status and latency only: never headers, bodies or keys.
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = metrics::method_label(req.method());
    let route = metrics::route_label(req.extensions().get::<MatchedPath>().map(|p| p.as_str()));
    let resp = next.run(req).await;
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    state
        .metrics
        .observe_http(method, route, status, elapsed.as_secs_f64());
    tracing::debug!(
        method,
        route,
        status,
        latency_us = elapsed.as_micros() as u64,
        "request"
    );
    resp
}

/// The state dir is 0700 whatever the umask, also when an earlier run left
/// it looser (`storage::files`).
fn create_state_dir(dir: &Path) -> Result<(), ServeError> {
    crate::storage::files::secure_state_dir(dir).map_err(|e| ServeError::StateDir {
        path: dir.to_owned(),
        source: std::io::Error::other(e.to_string()),
    })
}

fn resolve_group(name: &str) -> Result<u32, ServeError> {
    match cloister_nss::group_gid(name) {
        Ok(Some(gid)) => Ok(gid),
        _ => Err(ServeError::Group(name.to_owned())),
    }
}

/// Binds the signing socket (mode 0660, the configured group) through
/// `cloister_socket`: a stale socket from a previous run is replaced, a live
/// one (another attestor on the same state dir) or anything that is not a
/// socket is refused and left alone.
fn bind_socket(path: &Path, group: Option<u32>) -> Result<UnixListener, ServeError> {
    let listener = cloister_socket::bind_unix(path, 0o660, group).map_err(ServeError::Socket)?;
    UnixListener::from_std(listener).map_err(|source| {
        ServeError::Socket(cloister_socket::BindError::Io {
            what: "registering with the runtime",
            path: path.to_owned(),
            source,
        })
    })
}

fn load_tls(tls: &crate::config::TlsConfig) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| ServeError::Tls(format!("certificate {}: {e}", tls.cert.display())))?;
    if certs.is_empty() {
        return Err(ServeError::Tls(format!(
            "certificate {}: no certificate found",
            tls.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| ServeError::Tls(format!("key {}: {e}", tls.key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A listener that yields connections whose TLS handshake has completed;
/// handshakes run in their own tasks (with a timeout) so a slow client never
/// holds up the accept loop.
struct TlsListener {
    rx: mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl TlsListener {
    fn start(
        tcp: TcpListener,
        acceptor: tokio_rustls::TlsAcceptor,
        shutdown: CancellationToken,
    ) -> Self {
        let local = tcp.local_addr().expect("bound listener has an address");
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = shutdown.cancelled() => break,
                    a = tcp.accept() => a,
                };
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "tls handshake failed"),
                        Err(_) => tracing::debug!("tls handshake timed out"),
                    }
                });
            }
        });
        Self { rx, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(x) => x,
            // The accept loop ended (shutdown): wait for axum to stop.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Hourly: forget idempotency records past the window, shrink rate buckets.
fn spawn_maintenance(state: AppState, portal: Arc<PortalState>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let cutoff = state.clock.now_ms() - state.idempotency_window_ms();
            match state.storage.purge_idempotency(cutoff).await {
                Ok(n) => tracing::debug!(purged = n, "idempotency records purged"),
                Err(e) => tracing::warn!(error = %e, "idempotency purge failed"),
            }
            state.limiter.shrink();
            portal.signin.shrink();
        }
    });
}
