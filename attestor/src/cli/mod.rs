//! The `cloister-attestor` command line: one module per subcommand, each with
//! its clap `Args` and an `exec` returning the process exit code.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod api_keys;
mod attestations;
mod audit;
mod billing;
mod keygen;
mod keys;
mod pack;
mod policy;
mod portal;
mod serve;
mod sign;
mod tenants;
mod usage;
mod verify;
mod webhooks;

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
    /// Sign sandbox policies into a manifest; verify it; policy signature coverage.
    #[command(subcommand)]
    Policy(policy::Command),
    /// Audit engagements: frozen tag, auditor key, notes, sign-off pack.
    #[command(subcommand)]
    Audit(audit::Command),
    /// Evidence packs: build a procurement pack; verify any pack offline.
    #[command(subcommand)]
    Pack(pack::Command),
    /// Import provenance signed elsewhere (verified first, all or nothing).
    #[command(subcommand)]
    Attestations(attestations::Command),
    /// Close billing periods, list, show, void and verify invoices.
    #[command(subcommand)]
    Billing(billing::Command),
    /// Tenants' invoice.created webhook endpoints and deliveries.
    #[command(subcommand)]
    Webhooks(webhooks::Command),
    /// Manage the trust portal (`/portal/`).
    #[command(subcommand)]
    Portal(portal::Command),
}

/// Parses the command line and runs the chosen subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let (name, result) = match cli.command {
        // verify has its own exit codes (0 passed, 1 failed, 2 usage)
        Command::Verify(args) => return verify::exec(args),
        // close exits 1 when a tenant failed; verify 0/1/2
        Command::Billing(cmd) => return billing::exec(cmd),
        Command::Keygen(args) => ("keygen", keygen::run(args)),
        Command::Keys(cmd) => ("keys", keys::run(cmd)),
        Command::Sign(args) => ("sign", sign::run(args)),
        Command::Serve(args) => ("serve", serve::run(args)),
        Command::Tenants(cmd) => ("tenants", block_on(tenants::run(cmd))),
        Command::ApiKeys(cmd) => ("api-keys", block_on(api_keys::run(cmd))),
        Command::Usage(args) => ("usage", block_on(usage::run(args))),
        // pack verify has its own exit codes (0 passed, 1 failed, 2 usage)
        Command::Pack(pack::Command::Verify(args)) => return pack::exec_verify(args),
        Command::Pack(pack::Command::Procurement(args)) => ("pack", block_on(pack::run(args))),
        Command::Policy(cmd) => ("policy", block_on(policy::run(cmd))),
        Command::Audit(cmd) => ("audit", block_on(audit::run(cmd))),
        Command::Attestations(cmd) => ("attestations", block_on(attestations::run(cmd))),
        Command::Webhooks(cmd) => ("webhooks", block_on(webhooks::run(cmd))),
        Command::Portal(cmd) => ("portal", block_on(portal::run(cmd))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "cloister-attestor {name}: {}",
                cloister_report::Chain(e.as_ref())
            );
            ExitCode::FAILURE
        }
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
