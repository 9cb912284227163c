//! Options and helpers shared by the daemon's client subcommands (`build`,
//! `jobs`, `logs`, `cancel`): where the daemon listens, and a runtime.

use crate::client::Endpoint;
use std::path::PathBuf;

/// How to reach the runner daemon.
#[derive(Debug, Clone, clap::Args)]
pub struct Connect {
    /// The daemon's Unix socket.
    #[arg(long, env = "CLOISTER_RUNNER_SOCKET", default_value = crate::config::DEFAULT_API_SOCKET)]
    pub socket: PathBuf,
    /// Use the daemon's TCP API (HOST:PORT) instead of the socket.
    #[arg(long, env = "CLOISTER_RUNNER_ADDR")]
    pub addr: Option<String>,
    /// Bearer token for the TCP API.
    #[arg(long, env = "CLOISTER_RUNNER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl Connect {
    pub fn endpoint(&self) -> Endpoint {
        match &self.addr {
            Some(addr) => Endpoint::Tcp {
                addr: addr.clone(),
                token: self.token.clone(),
            },
            None => Endpoint::Unix(self.socket.clone()),
        }
    }
}

/// A small runtime for client commands.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Prints `cloister-runner: <error>` and returns exit code 1 (2 for usage).
pub fn fail(e: impl std::fmt::Display) -> std::process::ExitCode {
    eprintln!("cloister-runner: {e}");
    std::process::ExitCode::from(1)
}

/// A size flag (`512M`, `1GiB`, `4096`: `cloister_sandbox::parse_size`, the
/// one size syntax of every flag and config key).
pub fn size_arg(s: &str) -> Result<u64, String> {
    cloister_sandbox::parse_size(s).map_err(|e| e.to_string())
}

/// A size flag that must be more than 0 bytes (a limit).
pub fn positive_size_arg(s: &str) -> Result<u64, String> {
    match size_arg(s)? {
        0 => Err(format!("{s:?} must be more than 0 bytes")),
        n => Ok(n),
    }
}
