//! The runner daemon (`cloister-runner serve`): opens the job database,
//! recovers from the previous run, binds the API (Unix socket mode 0660 with
//! a configurable group; optional TCP with a bearer token), tells systemd it
//! is READY, dispatches jobs, and on SIGTERM/SIGINT says STOPPING, drains and
//! exits. Before the API opens it snapshots the configured toolchains
//! (`crate::toolchains`); SIGHUP re-snapshots them. It never forks: each job's sandbox is a child process
//! (`cloister-runner run`), see `job::exec`.

pub mod api;
pub mod readiness;
pub mod scheduler;

use crate::config::{Config, resolve_group};
use crate::job::store::JobStore;
use crate::toolchains::Toolchains;
use scheduler::Scheduler;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};

/// Errors starting or running the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::job::store::StoreError),
    #[error("api {0}")]
    Socket(#[source] cloister_socket::BindError),
    #[error("cannot set the socket group: {0}")]
    Group(String),
    #[error(transparent)]
    Toolchain(#[from] crate::toolchains::ToolchainError),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> DaemonError + 'a {
    move |source| DaemonError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Binds the API's Unix socket with mode 0660 and the configured group
/// through `cloister_socket`: a stale socket from a previous run is
/// replaced, a live one (another daemon) or anything that is not a socket is
/// refused and left alone.
fn bind_unix(path: &Path, group: Option<&str>) -> Result<UnixListener, DaemonError> {
    let gid = match group {
        Some(group) => Some(resolve_group(group).map_err(DaemonError::Group)?.as_raw()),
        None => None,
    };
    let listener = cloister_socket::bind_unix(path, 0o660, gid).map_err(DaemonError::Socket)?;
    UnixListener::from_std(listener).map_err(io("registering with the runtime", path))
}

fn notify(state: sd_notify::NotifyState<'_>) {
    if let Err(e) = sd_notify::notify(&[state]) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

/// How long the start-up sweep waits for a dead run's processes to leave
/// its cgroup.
const CGROUP_SWEEP_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// Removes the run cgroups a previous daemon's runs left (only those of
/// dead runs, only once empty): the killed runs' processes may still be
/// exiting at start, so a busy one is tried again for a while, then left
/// alone with a warning.
fn sweep_stale_cgroups() {
    let deadline = std::time::Instant::now() + CGROUP_SWEEP_FOR;
    loop {
        let sweep = cloister_sandbox::cgroup::remove_stale_runs(None);
        if !sweep.removed.is_empty() {
            let dirs: Vec<String> = sweep
                .removed
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            tracing::info!(cgroups = %dirs.join(","), "removed the cgroups of runs killed with the previous daemon");
        }
        if sweep.busy.is_empty() {
            return;
        }
        if std::time::Instant::now() >= deadline {
            let dirs: Vec<String> = sweep.busy.iter().map(|d| d.display().to_string()).collect();
            tracing::warn!(cgroups = %dirs.join(","), "cgroups of dead runs still hold processes; left alone");
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Runs the daemon until SIGTERM/SIGINT, then drains.
pub async fn serve(config: Config) -> Result<(), DaemonError> {
    let config = Arc::new(config);
    for dir in ["", "logs", "work", "artifacts"] {
        let p = config.state_dir.join(dir);
        std::fs::create_dir_all(&p).map_err(io("creating", &p))?;
    }
    std::fs::set_permissions(
        config.state_dir.join("work"),
        std::fs::Permissions::from_mode(0o700),
    )
    .map_err(io("chmod", &config.state_dir.join("work")))?;
    // Leftover workspaces of a previous run belong to jobs now marked failed.
    if let Ok(entries) = std::fs::read_dir(config.state_dir.join("work")) {
        for e in entries.flatten() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    let store = JobStore::open(&config.state_dir.join("jobs.db")).await?;
    // Sandboxes start through the front binary beside this one (`cloister-
    // runner`, which links only `run`: about 1 ms less per start than this
    // binary's own `run`); it must be there.
    let exe = std::env::current_exe()
        .map_err(io("locating", Path::new("/proc/self/exe")))?
        .with_file_name(crate::binaries::FRONT_BINARY);
    std::fs::metadata(&exe).map_err(io("locating the sandbox front binary", &exe))?;
    // Toolchains become store snapshots before the API opens: jobs only
    // ever see those immutable trees, never the live host directories.
    let toolchains = {
        let (store_root, configured) = (config.store.clone(), config.toolchains.clone());
        tokio::task::spawn_blocking(move || Toolchains::snapshot_all(&store_root, &configured))
            .await
            .map_err(|e| crate::toolchains::ToolchainError::Task(e.to_string()))??
    };
    let sched = Scheduler::new(config.clone(), store.clone(), exe, Arc::new(toolchains));
    let (failed, requeued) = sched.recover().await?;
    if failed > 0 || requeued > 0 {
        tracing::info!(failed, requeued, "recovered jobs from the previous run");
    }
    // The cgroups of runs killed with a previous daemon (SIGKILL gave them
    // no chance to remove their own), in the background.
    tokio::task::spawn_blocking(sweep_stale_cgroups);

    // The handlers are in place before any listener exists: a SIGTERM
    // sent as soon as the socket answers drains and removes the socket,
    // instead of killing the process (the default action) and leaving it.
    let mut term = signal(SignalKind::terminate()).map_err(io("signal", Path::new("SIGTERM")))?;
    let mut int = signal(SignalKind::interrupt()).map_err(io("signal", Path::new("SIGINT")))?;
    let mut hup = signal(SignalKind::hangup()).map_err(io("signal", Path::new("SIGHUP")))?;

    // TCP is bound (and its address published) before the Unix socket
    // appears: clients and supervisors that wait for the socket then find
    // every listener up.
    let tcp = match (config.api.tcp, config.api.token.clone()) {
        (Some(addr), Some(token)) => {
            let tcp = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(io("binding tcp", Path::new(&addr.to_string())))?;
            let local = tcp
                .local_addr()
                .map_err(io("tcp address", Path::new(&addr.to_string())))?;
            tracing::info!(%local, "api listening on tcp");
            // Tests bind port 0: publish the real port beside the state,
            // whole or not at all (temp file, then rename).
            let published = config.state_dir.join("tcp.addr");
            let temp = config.state_dir.join(".tcp.addr.tmp");
            std::fs::write(&temp, local.to_string())
                .and_then(|()| std::fs::rename(&temp, &published))
                .map_err(io("publishing the tcp address", &published))?;
            Some((tcp, token))
        }
        _ => None,
    };
    let unix = bind_unix(&config.api.socket, config.api.socket_group.as_deref())?;
    let state = api::AppState(sched.clone());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut servers = tokio::task::JoinSet::new();
    {
        let app = api::router(state.clone());
        let stop = shutdown.clone();
        servers.spawn(async move {
            axum::serve(unix, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
    }
    if let Some((tcp, token)) = tcp {
        let app = api::router_with_token(state.clone(), token);
        let stop = shutdown.clone();
        servers.spawn(async move {
            axum::serve(tcp, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
    }
    let dispatcher = tokio::spawn(sched.clone().dispatch());

    tracing::info!(socket = %config.api.socket.display(), concurrency = config.concurrency, "runner daemon ready");
    notify(sd_notify::NotifyState::Ready);
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: draining"); break }
            _ = int.recv() => { tracing::info!("SIGINT: draining"); break }
            _ = hup.recv() => {
                // Re-snapshot the toolchains in the background; jobs that
                // start afterwards get the new snapshots.
                tracing::info!("SIGHUP: re-snapshotting toolchains");
                let toolchains = sched.toolchains().clone();
                tokio::spawn(async move {
                    match toolchains.refresh().await {
                        Ok(now) => {
                            let list: Vec<String> =
                                now.iter().map(|t| format!("{}={}", t.name, t.digest)).collect();
                            tracing::info!(toolchains = %list.join(","), "toolchains re-snapshotted");
                        }
                        Err(e) => tracing::error!(error = %e, "re-snapshotting toolchains failed; the previous snapshots stay in use"),
                    }
                });
            }
        }
    }
    notify(sd_notify::NotifyState::Stopping);
    sched.drain().await;
    let _ = dispatcher.await;
    shutdown.cancel();
    // Open connections (a log follower of a queued job, say) get a few
    // seconds to finish; then the servers are dropped.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(r) = servers.join_next().await {
            if let Ok(Err(e)) = r {
                tracing::warn!(error = %e, "api server ended with an error");
            }
        }
    })
    .await;
    servers.abort_all();
    let _ = std::fs::remove_file(&config.api.socket);
    store.close().await;
    tracing::info!("runner daemon stopped");
    Ok(())
}
