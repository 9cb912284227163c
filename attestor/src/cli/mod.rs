//! The `cloister-attestor` command line: one module per subcommand, each with
//! its clap `Args` and an `exec` returning the process exit code.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod api_keys;
mod keygen;
mod keys;
mod serve;
mod sign;
mod tenants;
mod usage;
mod verify;

/// Cloister's attestor: signs SLSA provenance and verifies it.
#[derive(Debug, Parser)]
#[command(name = "cloister-attestor", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a signing key.
    Keygen(keygen::Args),
    /// Inspect and manage the keyring.
    #[command(subcommand)]
    Keys(keys::Command),
    /// Sign an in-toto statement into .intoto.jsonl and .sigstore.json.
    Sign(sign::Args),
    /// Verify provenance for an artifact.
    Verify(verify::Args),
    /// Run the attestor service (consumer API + signing socket).
    Serve(serve::Args),
    /// Manage tenants of the verification API.
    #[command(subcommand)]
    Tenants(tenants::Command),
    /// Issue, revoke and list tenants' API keys.
    #[command(subcommand, name = "api-keys")]
    ApiKeys(api_keys::Command),
    /// Show a tenant's metered usage.
    Usage(usage::Args),
}

/// Parses the command line and runs the chosen subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Keygen(args) => keygen::exec(args),
        Command::Keys(cmd) => keys::exec(cmd),
        Command::Sign(args) => sign::exec(args),
        Command::Verify(args) => verify::exec(args),
        Command::Serve(args) => serve::exec(args),
        Command::Tenants(cmd) => tenants::exec(cmd),
        Command::ApiKeys(cmd) => api_keys::exec(cmd),
        Command::Usage(args) => usage::exec(args),
    }
}

/// Runs an async CLI handler on a small current-thread runtime.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("start the async runtime")
        .block_on(f)
}
