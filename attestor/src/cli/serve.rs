//! `cloister-attestor serve`: loads and validates the config, sets up
//! logging, starts the service (consumer API + signing socket), tells
//! systemd it is ready, and drains on SIGTERM or Ctrl-C.
//!
//! Stdout gets two lines once both listeners are bound (`listening on URL`,
//! `signing socket PATH`) so scripts and tests can find a port chosen with
//! `--listen 127.0.0.1:0`; logs go to stderr.

use crate::clock::SystemClock;
use crate::config::{Config, LogFormat, Overrides, StateArgs};
use crate::server;
use anyhow::Context as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub state: StateArgs,
    /// Consumer API address (default 127.0.0.1:8450; port 0 picks one).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Read the keyring's passphrase (encrypted signing keys) from this file;
    /// default: key_passphrase_file in the config.
    #[arg(long, value_name = "FILE", conflicts_with = "passphrase_env")]
    pub passphrase_file: Option<PathBuf>,
    /// Read the keyring's passphrase from this environment variable;
    /// default: key_passphrase_env in the config.
    #[arg(long, value_name = "VAR")]
    pub passphrase_env: Option<String>,
}

pub(super) fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&Overrides {
        listen: args.listen,
        key_passphrase_file: args.passphrase_file,
        key_passphrase_env: args.passphrase_env,
        ..args.state.overrides()
    })?;
    init_logging(&config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(serve(config))
}

/// Installs the global `tracing` subscriber (text or JSON, to stderr).
pub fn init_logging(config: &Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .with_context(|| format!("log.level {:?}", config.log.level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let result = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // The handlers are in place before anything listens: a SIGTERM sent as
    // soon as the address is printed drains, instead of killing the process
    // (the default action) mid-start.
    let signals = Signals::install()?;
    let running = match server::start(config, Arc::new(SystemClock)).await {
        Ok(r) => r,
        Err(e @ server::ServeError::PassphraseRequired(_)) => {
            anyhow::bail!(
                "{e} (give --passphrase-file or --passphrase-env, or key_passphrase_file / key_passphrase_env in the config)"
            )
        }
        Err(e) => return Err(e.into()),
    };
    let scheme = if running.tls { "https" } else { "http" };
    tracing::info!(
        addr = %running.addr,
        tls = running.tls,
        sign_socket = %running.sign_socket.display(),
        storage = running.app.storage.backend(),
        "attestor serving"
    );
    // Best effort: a closed stdout (nobody reading) must not stop the server.
    {
        let mut out = std::io::stdout().lock();
        let printed = writeln!(out, "listening on {scheme}://{}", running.addr)
            .and_then(|()| writeln!(out, "signing socket {}", running.sign_socket.display()))
            .and_then(|()| out.flush());
        if let Err(e) = printed {
            tracing::warn!(error = %e, "cannot print the listening address to stdout");
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);

    let token = running.shutdown_token();
    tokio::spawn(async move {
        signals.wait().await;
        tracing::info!("shutting down: draining requests and usage commits");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        token.cancel();
    });
    running.wait().await?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM and SIGINT, both of which drain the server.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())
                .map_err(|e| anyhow::anyhow!("cannot install the SIGTERM handler: {e}"))?,
            int: signal(SignalKind::interrupt())
                .map_err(|e| anyhow::anyhow!("cannot install the SIGINT handler: {e}"))?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
